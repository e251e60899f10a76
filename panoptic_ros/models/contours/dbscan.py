"""Fixed-radius neighbours, DBSCAN and nearest centres in pure torch, grouped and vectorised.

Points carry a group id (the instance they belong to, or a class); only points of one group
are ever neighbours, so one call clusters every instance of an image at once.

Neighbours are found by hashing points into square cells of side ``eps``: the points within
``eps`` of a point lie in its cell or the 8 around it. Candidate pairs are those of the 9 cells;
their number is ``sum_i (points in the 9 cells around i)``, linear in the points for the
post-processing's inputs (votes rounded to a lattice of spacing ``eps / k`` have at most ``k^2``
lattice points per cell and group). They are expanded and tested in chunks of at most
``budget`` pairs.
"""

from __future__ import annotations

import math

import torch

from panoptic_ros.models.contours.components import graph_components

DEFAULT_BUDGET = 1 << 22          # candidate pairs (or distances) held at once


def _chunks(total: int, budget: int) -> range:
    """Chunk indices for ``total`` items in chunks of ``budget``: ``ceil(total / budget)``."""
    return range(max(1, math.ceil(total / max(budget, 1))))


def radius_pairs(points: torch.Tensor, groups: torch.Tensor, eps: float,
                 budget: int = DEFAULT_BUDGET) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every ordered pair ``(i, j)``, ``i != j``, of one group with ``|p_i - p_j| <= eps``.

    Args:
        points: ``[P, 2]`` float coordinates.
        groups: ``[P] int64`` group ids (>= 0).
        eps: radius (> 0).
        budget: candidate pairs expanded at once.

    Returns:
        ``i [M] int64``, ``j [M] int64`` and ``d2 [M]`` squared distances (the points' dtype).

    The loop over chunks of candidates runs ``ceil(candidates / budget)`` times (once for the
    post-processing's usual inputs).
    """
    device = points.device
    p = points.shape[0]
    empty = torch.zeros(0, dtype=torch.long, device=device)
    if p < 2:
        return empty, empty, points.new_zeros(0)
    cell = torch.floor(points / eps).long()
    cell = cell - cell.min(0).values + 1                     # >= 1: neighbours stay >= 0
    width = int(cell[:, 0].max()) + 2
    height = int(cell[:, 1].max()) + 2
    key = (groups.long() * height + cell[:, 1]) * width + cell[:, 0]
    skey, order = torch.sort(key)
    offsets = torch.tensor([dy * width + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)],
                           device=device)
    query = (key[:, None] + offsets[None]).flatten()          # [P * 9]
    lo = torch.searchsorted(skey, query, side='left')
    count = torch.searchsorted(skey, query, side='right') - lo
    start = torch.cumsum(count, 0) - count                   # first candidate of each query
    total = int(start[-1] + count[-1])
    owner = torch.arange(p, device=device).repeat_interleave(9)
    eps2 = eps * eps
    out_i, out_j, out_d = [], [], []
    bounds = torch.searchsorted(start, torch.arange(len(_chunks(total, budget)) + 1,
                                                    device=device) * budget)
    for c in _chunks(total, budget):
        # the queries whose candidates start in [c * budget, (c + 1) * budget)
        first, last = int(bounds[c]), int(bounds[c + 1])
        if last <= first:
            continue
        seg = torch.repeat_interleave(torch.arange(first, last, device=device),
                                      count[first:last])
        pos = torch.arange(seg.numel(), device=device) - (start.index_select(0, seg) -
                                                          start[first])
        i = owner.index_select(0, seg)
        j = order.index_select(0, lo.index_select(0, seg) + pos)
        d2 = (points.index_select(0, i) - points.index_select(0, j)).square().sum(1)
        keep = (d2 <= eps2) & (i != j)
        out_i.append(i[keep])
        out_j.append(j[keep])
        out_d.append(d2[keep])
    if not out_i:
        return empty, empty, points.new_zeros(0)
    return torch.cat(out_i), torch.cat(out_j), torch.cat(out_d)


def dbscan(points: torch.Tensor, eps: float, min_samples: float,
           groups: torch.Tensor | None = None, weights: torch.Tensor | None = None,
           budget: int = DEFAULT_BUDGET) -> tuple[torch.Tensor, int]:
    """DBSCAN (Ester et al. 1996) of weighted points, separately within each group.

    A point is core when the weights of the points within ``eps`` (itself included) sum to at
    least ``min_samples`` (scikit-learn's rule with ``sample_weight``). Clusters are the
    connected components of core points within ``eps`` of each other; a non-core point within
    ``eps`` of a core point joins the cluster of its nearest one (ties: the lowest index;
    scikit-learn takes the first cluster that reaches it, the same wherever only one does);
    other points are noise.

    Args:
        points: ``[P, 2]`` float.
        eps, min_samples: as scikit-learn's ``DBSCAN``.
        groups: ``[P] int64`` group of each point (default: one group).
        weights: ``[P]`` sample weights (default: ones).

    Returns:
        ``labels [P] int64``: clusters ``0..K-1`` numbered in order of their lowest-index core
        point (scikit-learn's numbering), -1 for noise; and ``K``.

    Loops: :func:`radius_pairs`' chunks and :func:`graph_components`' O(log P) iterations.
    """
    device = points.device
    n = points.shape[0]
    if groups is None:
        groups = torch.zeros(n, dtype=torch.long, device=device)
    if weights is None:
        weights = torch.ones(n, dtype=points.dtype, device=device)
    weights = weights.to(points.dtype)
    i, j, d2 = radius_pairs(points, groups, eps, budget)
    density = weights + torch.zeros_like(weights).index_add_(0, i, weights.index_select(0, j))
    core = density >= min_samples
    ci, cj = core.index_select(0, i), core.index_select(0, j)
    both = ci & cj
    roots, _ = graph_components(n, i[both], j[both])
    # clusters numbered by their lowest core point: non-core points are their own roots and
    # are left out of the numbering
    node = torch.arange(n, device=device)
    roots_core = torch.where(core, roots, torch.full_like(roots, n))
    first = torch.full((n + 1,), n, dtype=torch.long, device=device).scatter_reduce(
        0, roots_core, node, 'amin')[:n]
    is_first = core & (first.index_select(0, roots) == node)
    rank = torch.cumsum(is_first.long(), 0) - 1
    k = int(is_first.sum())
    labels = torch.where(core, rank.index_select(0, first.index_select(0, roots).clamp(max=n - 1)),
                         torch.full_like(node, -1))
    # border points: nearest core neighbour (lowest index on ties)
    border = ~ci & cj
    bi, bj, bd = i[border], j[border], d2[border]
    if bi.numel():
        inf = torch.full((n,), float('inf'), dtype=bd.dtype, device=device)
        best = inf.scatter_reduce(0, bi, bd, 'amin')
        at_best = bd == best.index_select(0, bi)
        choice = torch.full((n,), n, dtype=torch.long, device=device).scatter_reduce(
            0, bi[at_best], bj[at_best], 'amin')
        has = choice < n
        labels = torch.where(has & ~core, labels.index_select(0, choice.clamp(max=n - 1)),
                             labels)
    return labels, k


def nearest_centres(points: torch.Tensor, point_groups: torch.Tensor, centres: torch.Tensor,
                    centre_groups: torch.Tensor,
                    budget: int = DEFAULT_BUDGET) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest centre of the same group for every point.

    Args:
        points: ``[P, 2]``; ``point_groups``: ``[P] int64``.
        centres: ``[K, 2]``; ``centre_groups``: ``[K] int64``.

    Returns:
        ``index [P] int64`` of the nearest centre of the point's group (lowest index on ties),
        -1 where the group has none; ``d2 [P]`` its squared distance (inf where none).

    The loop over chunks of points runs ``ceil(P K / budget)`` times.
    """
    p, k = points.shape[0], centres.shape[0]
    index = torch.full((p,), -1, dtype=torch.long, device=points.device)
    dist = torch.full((p,), float('inf'), dtype=points.dtype, device=points.device)
    if p == 0 or k == 0:
        return index, dist
    rows = max(1, budget // k)
    for c in range(math.ceil(p / rows)):
        sl = slice(c * rows, (c + 1) * rows)
        d2 = (points[sl, None, :] - centres[None, :, :].to(points.dtype)).square().sum(2)
        d2 = torch.where(point_groups[sl, None] == centre_groups[None, :], d2,
                         torch.full_like(d2, float('inf')))
        best = d2.min(1)
        ok = torch.isfinite(best.values)
        index[sl] = torch.where(ok, best.indices, torch.full_like(best.indices, -1))
        dist[sl] = best.values
    return index, dist

