"""Probability maps brought to a finer grid and thresholded, as the mask stages need them.

A mask is ``bilinear_upsample(probability) > threshold``. Done on whole maps this costs
``J x H x W`` interpolations although a mask covers a small box: on the CPU, the node's default
model spends more of its post-processing upsampling its 60-odd mask probability maps to the
fusion grid than on anything else (docs/benchmarks.md, node overhead). Where the grid grows by
a whole factor ``f``, each map is interpolated only around the cells that pass the threshold
on the coarse grid, with the same result as the whole map:

- a bilinear value is a convex combination of its (at most 2x2) source cells, so it can only
  pass the threshold where one of them does; outside the passing cells' box grown by one
  cell, nothing passes;
- with ``align_corners=False`` and a whole factor, an output pixel's source coordinate inside
  a crop is the global one shifted by the crop's origin, so the crop's interpolation is the
  whole map's. Only the outermost output rows and columns of a crop inside the map read a
  cell beyond it (the crop repeats its edge instead); their source cells are all outside the
  passing box, below the threshold, so they fail it either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample_threshold(prob: torch.Tensor, passing: torch.Tensor, size: tuple[int, int],
                       threshold: float) -> torch.Tensor:
    """``interpolate(prob, size, bilinear, align_corners=False) > threshold``.

    Args:
        prob: ``[J, h, w]`` float probability maps.
        passing: ``[J, h, w] bool``, ``prob > threshold`` (the caller usually has it).
        size: ``(H, W)`` of the result.
        threshold: the mask threshold.

    Returns:
        ``[J, H, W] bool``. On the CPU with ``H / h == W / w`` a whole factor, computed crop by
        crop around each map's passing cells; otherwise on whole maps.
    """
    j, h, w = prob.shape
    factor = size[0] // h
    if (size[0], size[1]) == (h, w):
        return passing
    if j == 0:
        return torch.zeros((0, *size), dtype=torch.bool, device=prob.device)
    if prob.device.type != 'cpu' or size != (h * factor, w * factor):
        return F.interpolate(prob[None], size=size, mode='bilinear',
                             align_corners=False)[0] > threshold
    return _cropped(prob, passing, factor, threshold)


def _cropped(prob: torch.Tensor, passing: torch.Tensor, f: int,
             threshold: float) -> torch.Tensor:
    """:func:`upsample_threshold` crop by crop (CPU, whole factor ``f``)."""
    j, h, w = prob.shape
    out = torch.zeros((j, h * f, w * f), dtype=torch.bool)
    rows, cols = passing.any(2).numpy(), passing.any(1).numpy()      # [J, h], [J, w]
    present = rows.any(1)
    # the passing box grown by one cell, clipped to the map: [y0, y1) x [x0, x1)
    y0 = (rows.argmax(1) - 1).clip(0)
    y1 = (h - rows[:, ::-1].argmax(1) + 1).clip(max=h)
    x0 = (cols.argmax(1) - 1).clip(0)
    x1 = (w - cols[:, ::-1].argmax(1) + 1).clip(max=w)
    for k in present.nonzero()[0].tolist():
        a, b, c, d = int(y0[k]), int(y1[k]), int(x0[k]), int(x1[k])
        up = F.interpolate(prob[k, a:b, c:d][None, None], size=((b - a) * f, (d - c) * f),
                           mode='bilinear', align_corners=False)[0, 0]
        out[k, a * f:b * f, c * f:d * f] = up > threshold
    return out
