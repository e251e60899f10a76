"""Connected components in pure torch, on the tensors' device: graphs and 4-connected masks.

Graph components use the Awerbuch-Shiloach algorithm (B. Awerbuch and Y. Shiloach, "New
connectivity and MSF algorithms for shuffle-exchange network and PRAM", IEEE Trans. Computers
36(10), 1987): a forest of parent pointers, and per iteration conditional star hooking,
unconditional hooking of stagnant stars and one pointer-jumping step. It ends after O(log n)
iterations (their analysis: log_{3/2} n), unlike plain min-label propagation, which needs as
many rounds as the longest path in a component (a spiral of n pixels: about n / 2). Concurrent writes, arbitrary in
the PRAM model, are resolved here by ``scatter_reduce('amin')``, one of the allowed outcomes.

Mask components (:func:`label_components`) first merge each row's runs of foreground pixels (a
cumulative sum, no iteration), then join runs of consecutive rows that share a column, with the
graph algorithm on the runs: far fewer nodes than pixels. Labels come out in raster order of each
component's first pixel, as ``scipy.ndimage.label`` numbers them.
"""

from __future__ import annotations

import math

import torch

from panoptic_ros.errors import PanopticError


def iteration_bound(num_nodes: int) -> int:
    """Cap on Awerbuch-Shiloach iterations for ``num_nodes`` nodes:
    ``2 ceil(log_{3/2} n) + 2``, twice the ``log_{3/2} n`` of the analysis plus the iteration
    that observes convergence (a 2048x2048 mask has at most 2^21 runs: 74 iterations; spirals
    of 16k runs take 13)."""
    return 2 * math.ceil(math.log(max(num_nodes, 2)) / math.log(1.5)) + 2


def _stars(parent: torch.Tensor) -> torch.Tensor:
    """``[n] bool``: node in a tree of depth <= 1 (a star), from ``parent [n] int64``.

    A node whose grandparent is not its parent is not in a star, nor is that grandparent; then
    every node takes the flag of its grandparent (JaJa, "An Introduction to Parallel
    Algorithms", 1992, chapter 5).
    """
    grand = parent.index_select(0, parent)
    flag = (grand == parent).to(torch.int8)
    flag = flag.scatter_reduce(0, grand, flag, 'amin')
    return flag.index_select(0, grand).bool()


def graph_components(num_nodes: int, src: torch.Tensor,
                     dst: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Root of every node's component in an undirected graph.

    Args:
        num_nodes: ``n``; nodes are ``0..n-1``.
        src, dst: ``[E] int64`` edge end points (each edge once or both ways).

    Returns:
        ``roots [n] int64``: a representative node of each node's component (equal for two
        nodes exactly when they are connected), and the number of iterations that ran.

    The loop runs at most :func:`iteration_bound` ``(n)`` iterations (O(log n), see the module
    docstring); each costs O(n + E) work. Reaching the cap unconverged would contradict the
    analysis and raises.
    """
    device = src.device
    parent = torch.arange(num_nodes, device=device)
    if num_nodes == 0 or src.numel() == 0:
        return parent, 0
    u = torch.cat([src, dst]).long()
    v = torch.cat([dst, src]).long()
    big = torch.full((num_nodes,), num_nodes, dtype=torch.long, device=device)
    big_e = torch.full_like(u, num_nodes)
    bound = iteration_bound(num_nodes)
    # (index_select / scatter_reduce over whole edge lists rather than boolean indexing:
    # several times faster on a busy CPU, and no data-dependent shapes)
    for it in range(1, bound + 1):
        before = parent
        # 1. conditional star hooking: a star's root hooks under a smaller neighbouring parent
        star = _stars(parent)
        pu, pv = parent.index_select(0, u), parent.index_select(0, v)
        hook = star.index_select(0, u) & (pv < pu)
        parent = parent.scatter_reduce(0, pu, torch.where(hook, pv, big_e), 'amin')
        # 2. unconditional hooking of the stars step 1 left alone (they touch no other star)
        star = _stars(parent)
        pu, pv = parent.index_select(0, u), parent.index_select(0, v)
        hook = star.index_select(0, u) & (pv != pu)
        target = big.scatter_reduce(0, pu, torch.where(hook, pv, big_e), 'amin')
        parent = torch.where(target < num_nodes, target, parent)
        # 3. pointer jumping (stars are unchanged by it)
        parent = parent.index_select(0, parent)
        if torch.equal(parent, before):
            return parent, it
    raise PanopticError(f'connected components did not converge in {bound} iterations '
                        f'for {num_nodes} nodes (the Awerbuch-Shiloach bound): a bug')


def compact_labels(roots: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Group ids to labels ``0..K-1`` numbered in order of each group's first element.

    Args:
        roots: ``[n] int64`` non-negative group id of each element (e.g. component roots).

    Returns:
        ``[n] int64`` labels and ``K``.
    """
    n = roots.numel()
    if n == 0:
        return roots.clone(), 0
    size = int(roots.max()) + 1
    idx = torch.arange(n, device=roots.device)
    first = torch.full((size,), n, dtype=torch.long, device=roots.device).scatter_reduce(
        0, roots, idx, 'amin')
    first_of = first.index_select(0, roots)
    is_first = first_of == idx
    order = torch.cumsum(is_first.long(), 0) - 1
    return order.index_select(0, first_of), int(is_first.sum())


def label_components(mask: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """4-connected components of a binary mask (or a batch of them).

    Args:
        mask: ``[..., H, W] bool``; leading dimensions are separate images.

    Returns:
        ``labels [..., H, W] int64``: 0 background, components ``1..K`` numbered in raster
        order of their first pixel over the whole batch (what ``scipy.ndimage.label`` gives
        one image), ``K``, and the iterations :func:`graph_components` ran.

    Runs within rows need no iteration; the run graph has one node per run and one edge per
    pair of overlapping runs in consecutive rows; :func:`graph_components` on it runs at most
    ``iteration_bound(runs)`` iterations.
    """
    if mask.dim() < 2:
        raise PanopticError(f'label_components expects [..., H, W], got {tuple(mask.shape)}')
    shape = mask.shape
    h, w = shape[-2:]
    m = mask.reshape(-1, h, w).bool()
    if m.numel() == 0:
        out = torch.zeros(shape, dtype=torch.long, device=mask.device)
        return out, 0, 0
    left = torch.zeros_like(m)
    left[..., 1:] = m[..., :-1]
    start = m & ~left                                    # first pixel of each row run
    run = torch.cumsum(start.flatten().long(), 0).view(m.shape) - 1     # run id per pixel
    n_runs = int(run.flatten()[-1]) + 1 if m.any() else 0
    if n_runs == 0:
        out = torch.zeros(shape, dtype=torch.long, device=mask.device)
        return out, 0, 0
    # vertical neighbours inside one image; the first column of each stretch of them is the
    # one edge of that (upper run, lower run) pair: two runs overlap in one interval
    vert = m[:, :-1] & m[:, 1:]
    vert_left = torch.zeros_like(vert)
    vert_left[..., 1:] = vert[..., :-1]
    edge = vert & ~vert_left
    src = run[:, :-1][edge]
    dst = run[:, 1:][edge]
    roots, iterations = graph_components(n_runs, src, dst)
    comp, k = compact_labels(roots)
    labels = torch.where(m, comp[run.clamp(min=0)] + 1, torch.zeros_like(run)).view(shape)
    return labels, k, iterations
