"""Flat-kernel mean-shift with bin seeding, for every class at once, in tensor operations.

PanoNet (section III-D) clusters the embedding of each thing class's pixels with mean-shift and
bin seeding. This follows scikit-learn's ``MeanShift(bin_seeding=True, min_bin_freq=1,
cluster_all=True)`` step for step, run for all classes together (points of different classes
never interact) and for all seeds in parallel:

1. seeds: the centres of the occupied bins of a grid of cell size ``bin_fraction *
   bandwidth`` (``round(x / size) * size``; scikit-learn: ``bin_fraction = 1``), or the points
   themselves when every point has a bin of its own (scikit-learn's fallback). In ``D``
   dimensions a bin centre lies up to ``sqrt(D) / 2`` cells from its points: with cells of one
   bandwidth and ``D = 12`` that is 1.7 bandwidths, so every seed of a tight cluster can miss
   all its points and the cluster is lost; cells of half a bandwidth keep every seed within
   ``sqrt(12) / 4 = 0.87`` bandwidths of a point of its bin;
2. every seed moves to the mean of the points within ``bandwidth`` (inclusive) until it moves
   by at most ``1e-3 bandwidth`` or ``max_iter`` iterations pass; a seed with no point in
   reach stops and is dropped; its intensity is the number of points of its last step;
3. near-duplicates: modes sorted by (intensity, coordinates), descending, each removing the
   later ones within ``bandwidth`` of it (a fixed point of that triangular rule, exact);
4. every point goes to its nearest remaining mode of its class (-1 if its class has none).

Classes have their own bandwidths: points are divided by their class's bandwidth, so every
radius is 1. Loops: at most ``max_iter`` shift iterations (all seeds at once; converged seeds
frozen), the duplicate rule's fixed point (at most the number of modes, a few in practice),
and chunks of ``budget`` seed-point distances. Each iteration costs ``O(M N D)`` for ``M``
seeds (occupied bins) and ``N`` points, as matrix products.
"""

from __future__ import annotations

import torch

DEFAULT_BUDGET = 1 << 22


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[A, B]`` squared distances of ``a [A, D]`` and ``b [B, D]`` as ``|a|^2 + |b|^2 - 2
    a.b``: one matrix product instead of an ``[A, B, D]`` difference tensor (float64 keeps
    the rounding near 1e-15 of the radius, far below the 1e-3 convergence tolerance)."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return d2.clamp(min=0)


def _pairwise_within(a: torch.Tensor, ca: torch.Tensor, b: torch.Tensor, cb: torch.Tensor,
                     radius2: float) -> torch.Tensor:
    """``[A, B] bool``: same class and squared distance <= ``radius2``."""
    return (_squared_distances(a, b) <= radius2) & (ca[:, None] == cb[None, :])


def bin_seeds(x: torch.Tensor, cls: torch.Tensor, size: float = 1.0,
              min_bin_freq: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 1 on scaled points ``x [N, D]`` (bandwidth 1) of classes ``cls [N]``, bins of
    ``size`` holding at least ``min_bin_freq`` points: seeds ``[M, D]`` and their classes
    ``[M]``."""
    bins = torch.round(x / size)
    key = torch.cat([cls[:, None].to(x.dtype), bins], 1)
    uniq, freq = torch.unique(key, dim=0, return_counts=True)
    uniq = uniq[freq >= min_bin_freq]
    n_bins = torch.bincount(uniq[:, 0].long(), minlength=int(cls.max()) + 1)
    n_pts = torch.bincount(cls, minlength=int(cls.max()) + 1)
    own = n_bins == n_pts                      # every point in a bin of its own: use points
    keep = ~own[uniq[:, 0].long()]
    seeds = torch.cat([uniq[keep, 1:] * size, x[own[cls]]])
    seed_cls = torch.cat([uniq[keep, 0].long(), cls[own[cls]]])
    return seeds, seed_cls


def mean_shift(x: torch.Tensor, cls: torch.Tensor, bandwidth: torch.Tensor, *,
               max_iter: int = 300, bin_fraction: float = 1.0, min_bin_freq: int = 1,
               budget: int = DEFAULT_BUDGET
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cluster points ``x [N, D]`` of classes ``cls [N] int64`` (``0..K-1``), class ``k``
    with ``bandwidth[k]``, seeds from bins of ``bin_fraction`` bandwidths holding at least
    ``min_bin_freq`` points (scikit-learn's parameter: fewer seeds, a cheaper frame).

    Returns:
        ``labels [N] int64`` (``0..M-1``; every point of a class with a mode is labelled, -1
        where its class has none, e.g. every bin under ``min_bin_freq``), ``centres [M, D]`` (in the
        input's units) and ``centre_cls [M] int64``; modes are numbered by class, then by
        decreasing intensity.
    """
    n, dim = x.shape
    device = x.device
    if n == 0:
        return (torch.zeros(0, dtype=torch.long, device=device), x.new_zeros((0, dim)),
                torch.zeros(0, dtype=torch.long, device=device))
    bw = bandwidth.to(device=device, dtype=torch.float64)[cls]
    xs = x.double() / bw[:, None]
    seeds, seed_cls = bin_seeds(xs, cls, bin_fraction, min_bin_freq)
    m = seeds.shape[0]
    step = max(1, budget // max(n, 1))
    mean = seeds.clone()
    active = torch.ones(m, dtype=torch.bool, device=device)
    count = torch.zeros(m, dtype=torch.long, device=device)
    for _ in range(max_iter + 1):
        idx = torch.nonzero(active).flatten()
        if idx.numel() == 0:
            break
        sums = torch.zeros(idx.numel(), dim, dtype=torch.float64, device=device)
        cnt = torch.zeros(idx.numel(), dtype=torch.long, device=device)
        for start in range(0, n, step):
            pts, pc = xs[start:start + step], cls[start:start + step]
            w = _pairwise_within(mean[idx], seed_cls[idx], pts, pc, 1.0).double()
            sums += w @ pts
            cnt += w.sum(1).long()
        empty = cnt == 0
        new = torch.where(empty[:, None], mean[idx], sums / cnt.clamp(min=1)[:, None])
        moved = (new - mean[idx]).norm(dim=1)
        count[idx] = cnt
        mean[idx] = new
        done = empty | (moved <= 1e-3)
        active[idx[done]] = False
    # the last iteration stops every seed still moving (scikit-learn's max_iter)
    found = count > 0
    mean, seed_cls, count = mean[found], seed_cls[found], count[found]
    # step 3: sort by (intensity, coordinates) descending (stable sorts from the last key)
    order = torch.arange(mean.shape[0], device=device)
    for key in [mean[:, d] for d in range(dim - 1, -1, -1)] + [count.double()]:
        order = order[torch.sort(key[order], descending=True, stable=True).indices]
    mean, seed_cls, count = mean[order], seed_cls[order], count[order]
    k = mean.shape[0]
    near = _pairwise_within(mean, seed_cls, mean, seed_cls, 1.0)
    near = torch.triu(near, diagonal=1)                     # i < j: i removes j
    keep = torch.ones(k, dtype=torch.bool, device=device)
    for _ in range(k):
        new = ~(near & keep[:, None]).any(0)
        if torch.equal(new, keep):
            break
        keep = new
    centres, centre_cls = mean[keep], seed_cls[keep]
    # number modes by class, keeping the intensity order within a class
    by_class = torch.sort(centre_cls, stable=True).indices
    centres, centre_cls = centres[by_class], centre_cls[by_class]
    # step 4: nearest mode of the point's class
    labels = torch.full((n,), -1, dtype=torch.long, device=device)
    if centres.shape[0] == 0:
        return labels, x.new_zeros((0, dim)), centre_cls
    step = max(1, budget // centres.shape[0])
    for start in range(0, n, step):
        pts, pc = xs[start:start + step], cls[start:start + step]
        d2 = _squared_distances(pts, centres)
        d2 = torch.where(pc[:, None] == centre_cls[None, :], d2, torch.full_like(d2, float('inf')))
        best, arg = d2.min(1)
        labels[start:start + step] = torch.where(torch.isfinite(best), arg,
                                                 torch.full_like(arg, -1))
    scale = bandwidth.to(device=device, dtype=torch.float64)[centre_cls][:, None]
    return labels, (centres * scale).to(x.dtype), centre_cls
