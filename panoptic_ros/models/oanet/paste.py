"""Pasting of fixed-size instance masks into their boxes on a feature grid, as two small
matrix products (exportable, static shapes): used inside the exported graph (the spatial
ranking module's input) and by the post-processing (panoptic fusion).
"""

from __future__ import annotations

import torch


def _axis_weights(lo: torch.Tensor, hi: torch.Tensor, positions: torch.Tensor,
                  m: int) -> torch.Tensor:
    """Bilinear weights ``[..., P, m]`` of mask cells ``0..m-1`` at pixel ``positions [P]``
    for boxes spanning ``lo..hi`` (``[...]``): zero outside the box (half a mask cell of
    fade at its border), as ``grid_sample`` with zero padding and ``align_corners=False``."""
    extent = (hi - lo).clamp(min=1e-3)
    u = (positions - lo[..., None]) / extent[..., None] * m - 0.5           # [..., P]
    cells = torch.arange(m, dtype=u.dtype, device=u.device)
    return (1 - (u[..., None] - cells).abs()).clamp(min=0)


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int],
                stride: int) -> torch.Tensor:
    """Paste masks into their boxes.

    Args:
        masks: ``[N, D, M, M]`` float mask probabilities (Mask R-CNN's 28 x 28).
        boxes: ``[N, D, 4]`` ``x1, y1, x2, y2`` in input pixels.
        size: ``(h, w)`` of the grid; cell ``(i, j)`` is input pixel
            ``(stride // 2 + j stride, stride // 2 + i stride)``.
        stride: of the grid.

    Returns:
        ``[N, D, h, w]`` the masks sampled bilinearly at the cells, 0 outside their boxes.
    """
    h, w = size
    m = masks.shape[-1]
    ys = torch.arange(h, device=masks.device, dtype=torch.float32) * stride + stride // 2
    xs = torch.arange(w, device=masks.device, dtype=torch.float32) * stride + stride // 2
    b = boxes.float()
    wy = _axis_weights(b[..., 1], b[..., 3], ys, m)                        # [N, D, h, M]
    wx = _axis_weights(b[..., 0], b[..., 2], xs, m)                        # [N, D, w, M]
    return wy @ masks.float() @ wx.transpose(-1, -2)
