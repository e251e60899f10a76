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
radius is 1. Loops: at most ``max_iter`` shift iterations (converged seeds frozen), in each
the thing classes that still have seeds moving (all of a class's seeds at once), the
duplicate rule's fixed point (at most the number of modes, a few in practice), chunks of
``budget`` seed-point distances per class, and the merged-path chains (at most ``M``). Seeds
and points are grouped by class, and each class's seeds still moving (``M'_k``) meet only its
own points (``N_k``): an iteration costs ``O(sum_k M'_k N_k D)``, as two matrix products:
distances screened in float32 (pairs within ``SCREEN`` of the radius decided in float64, so
the neighbourhoods are the float64 ones) and neighbourhood sums. Seeds whose
means become equal follow one path from then on, as they would in scikit-learn, and only one
of them is iterated: on a street scene's ~3000 thing cells the ~450 seeds are halved after 5
iterations of ~25.
"""

from __future__ import annotations

import torch

DEFAULT_BUDGET = 1 << 22
SCREEN = 1e-3      # float32 distances this close to the radius are decided in float64


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


_HASH = torch.randint(1, 1 << 62, (64,), generator=torch.Generator().manual_seed(0)) | 1


def _first_equal_row(rows: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """``[S]``: for every row of ``rows [S, D]`` (float64) of class ``cls [S]``, the index of
    the first row with bitwise the same values and class (itself if none): rows hashed
    through their bits, then compared, so a hash collision never merges different rows."""
    s, d = rows.shape
    mult = _HASH[:d + 1].to(rows.device)
    h = (rows.contiguous().view(torch.int64) * mult[:d]).sum(1) + cls * mult[d]
    _, inverse = torch.unique(h, return_inverse=True)
    order = torch.arange(s, device=rows.device)
    first = torch.full((s,), s, device=rows.device).scatter_reduce(
        0, inverse, order, 'amin')[inverse]
    same = (rows == rows[first]).all(1) & (cls == cls[first])
    return torch.where(same, first, order)


def _unique_rows(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(key, dim=0, return_counts=True)`` (rows in ascending lexicographic
    order) from one stable sort per column: ``unique`` with ``dim`` compares rows one by one
    and cost 9 ms on the 3000 x 13 keys of a frame, these sorts well under 1 ms."""
    order = torch.arange(key.shape[0], device=key.device)
    for col in range(key.shape[1] - 1, -1, -1):
        order = order[torch.sort(key[order, col], stable=True).indices]
    rows = key[order]
    first = torch.ones(rows.shape[0], dtype=torch.bool, device=key.device)
    first[1:] = (rows[1:] != rows[:-1]).any(1)
    group = torch.cumsum(first.long(), 0) - 1
    return rows[first], torch.bincount(group)


def bin_seeds(x: torch.Tensor, cls: torch.Tensor, size: float = 1.0,
              min_bin_freq: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 1 on scaled points ``x [N, D]`` (bandwidth 1) of classes ``cls [N]``, bins of
    ``size`` holding at least ``min_bin_freq`` points: seeds ``[M, D]`` and their classes
    ``[M]``."""
    bins = torch.round(x / size)
    key = torch.cat([cls[:, None].to(x.dtype), bins], 1)
    uniq, freq = _unique_rows(key)
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
    by_cls = torch.sort(seed_cls, stable=True).indices     # seeds grouped by class
    seeds, seed_cls = seeds[by_cls], seed_cls[by_cls]
    m = seeds.shape[0]
    # Neighbourhoods of the shift: points grouped by class, and a class's seeds meet only its
    # points (a contiguous range). Distances are screened in float32, on coordinates centred
    # per class (the [seeds, points] matrices at half the bytes), and the pairs within SCREEN
    # of the radius are decided again in float64: the neighbourhoods are exactly the float64
    # ones.
    n_cls = int(cls.max()) + 1
    n_of = torch.bincount(cls, minlength=n_cls)
    centre = torch.zeros(n_cls, dim, dtype=torch.float64, device=device).index_add_(0, cls, xs)
    centre /= n_of.clamp(min=1)[:, None]
    pt_order = torch.sort(cls, stable=True).indices
    pt_end = torch.cumsum(n_of, 0).tolist()
    pt_start = [e - c for e, c in zip(pt_end, n_of.tolist())]
    pts64 = xs[pt_order] - centre[cls[pt_order]]                                # [N, D]
    # squared distance minus the radius as one product: [q, |q|^2 - 1, 1] . [-2p, 1, |p|^2]
    p32 = pts64.float()
    pts_aug = torch.cat([-2.0 * p32, torch.ones_like(p32[:, :1]),
                         (p32 * p32).sum(1, keepdim=True)], 1).T.contiguous()  # [D+2, N]
    # neighbourhood sums (of the class-centred coordinates, a few bandwidths at most) and
    # counts in one float32 product: the means come out within about 1e-7 bandwidths of
    # float64 ones, far inside the 1e-3 convergence tolerance
    pts_one = torch.cat([p32, torch.ones_like(p32[:, :1])], 1)
    mean = seeds.clone()
    active = torch.ones(m, dtype=torch.bool, device=device)
    count = torch.zeros(m, dtype=torch.long, device=device)
    path = torch.arange(m, device=device)         # the seed whose path each seed follows
    for _ in range(max_iter + 1):
        idx = torch.nonzero(active).flatten()
        if idx.numel() == 0:
            break
        q64 = mean[idx] - centre[seed_cls[idx]]
        q32 = q64.float()
        q_aug = torch.cat([q32, (q32 * q32).sum(1, keepdim=True) - 1.0,
                           torch.ones_like(q32[:, :1])], 1)                     # [M', D+2]
        sums_cnt = torch.zeros(idx.numel(), dim + 1, dtype=torch.float64, device=device)
        seeds_of = torch.bincount(seed_cls[idx], minlength=n_cls).tolist()
        first = 0                                   # the active seeds of class k: a slice
        for k, mk in enumerate(seeds_of):
            if not mk:
                continue
            rows = slice(first, first + mk)
            first += mk
            step = max(1, budget // mk)             # points per chunk: seeds x step <= budget
            for start in range(pt_start[k], pt_end[k], step):
                end = min(pt_end[k], start + step)
                excess = q_aug[rows] @ pts_aug[:, start:end]   # squared distance - 1, float32
                w = excess <= 0.0
                qi, pj = torch.nonzero(excess.abs_() <= SCREEN, as_tuple=True)
                if qi.numel():
                    w[qi, pj] = ((q64[rows][qi] - pts64[start + pj]) ** 2).sum(1) <= 1.0
                sums_cnt[rows] += (w.float() @ pts_one[start:end]).double()
        sums, cnt = sums_cnt[:, :dim], sums_cnt[:, dim].round().long()
        empty = cnt == 0
        new = torch.where(empty[:, None], mean[idx],
                          centre[seed_cls[idx]] + sums / cnt.clamp(min=1)[:, None])
        moved = (new - mean[idx]).norm(dim=1)
        count[idx] = cnt
        mean[idx] = new
        done = empty | (moved <= 1e-3)
        active[idx[done]] = False
        # seeds of a class whose means are now equal have one path from here on (as in
        # scikit-learn, where a mean is a function of the previous one): the later ones stop
        # and take the first one's end
        going = idx[~done]
        if going.numel() > 1:
            first = _first_equal_row(mean[going], seed_cls[going])
            dup = first != torch.arange(going.numel(), device=device)
            path[going[dup]] = going[first[dup]]
            active[going[dup]] = False
    for _ in range(m):                              # follow the chains of merged paths
        nxt = path[path]
        if torch.equal(nxt, path):
            break
        path = nxt
    mean, count = mean[path], count[path]
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
