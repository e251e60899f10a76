"""RoIAlign (Mask R-CNN, He et al. 2017) and its FPN level assignment, in plain torch.

Every RoI is cut into ``out x out`` bins; each bin is the mean of ``sampling_ratio ** 2``
bilinear samples on a regular grid inside it, with no rounding of the box or bin borders.
``aligned=True`` is detectron2's ROIAlignV2: the box is shifted by half a pixel so that a
continuous coordinate ``x`` in the input falls on feature cell ``x * scale - 0.5``
(``aligned=False`` is the original, whose box sides are also at least one cell).

The sampling is one ``grid_sample`` (bilinear, ``align_corners=True``) per call and an average
pool, so the graph exports to ONNX (opset 17) with shapes that depend only on the number of
RoIs: the images of a batch are stacked along the height, and every sample is clamped into its
own image first, as RoIAlign does, so a sample never reads a neighbouring image.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _sample_coords(start: Tensor, length: Tensor, output_size: int,
                   sampling_ratio: int) -> Tensor:
    """Sample positions along one axis: [K] start and length -> [K, output_size * ratio]."""
    steps = torch.arange(output_size * sampling_ratio, device=start.device, dtype=start.dtype)
    fraction = (steps + 0.5) / (output_size * sampling_ratio)
    return start[:, None] + fraction[None, :] * length[:, None]


def roi_align(feature: Tensor, rois: Tensor, output_size: int, spatial_scale: float,
              sampling_ratio: int = 2, aligned: bool = True) -> Tensor:
    """Pool a fixed-size map for every RoI from a feature map.

    Args:
        feature: [N, C, H, W] float features (float32; float16/bfloat16 are sampled in
            float32 and returned in their own dtype).
        rois: [K, 5] float, ``(batch index, x1, y1, x2, y2)`` in input-image pixels; RoIs of
            different images may be mixed.
        output_size: side of the pooled map.
        spatial_scale: feature cells per input pixel (``1 / stride``).
        sampling_ratio: samples per bin along each axis, >= 1. Mask R-CNN's adaptive ratio
            (0: ``ceil(roi side / output_size)``) gives shapes that depend on the data and does
            not export, so the ratio is fixed (2 by default).
        aligned: shift the box by half a cell (detectron2's ROIAlignV2) instead of clamping
            its sides to at least one cell.

    Returns:
        [K, C, output_size, output_size] in the dtype of ``feature``.
    """
    if sampling_ratio < 1:
        raise ValueError(f'sampling_ratio must be >= 1, got {sampling_ratio}')
    if feature.dim() != 4 or rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f'expected feature [N, C, H, W] and rois [K, 5], got '
                         f'{tuple(feature.shape)} and {tuple(rois.shape)}')
    n, c, h, w = feature.shape
    k = rois.shape[0]
    if k == 0:
        return feature.new_zeros(0, c, output_size, output_size)
    work = feature.float() if feature.dtype in (torch.float16, torch.bfloat16) else feature
    rois = rois.to(work.dtype)
    offset = 0.5 if aligned else 0.0
    x1, y1 = rois[:, 1] * spatial_scale - offset, rois[:, 2] * spatial_scale - offset
    roi_w = (rois[:, 3] - rois[:, 1]) * spatial_scale
    roi_h = (rois[:, 4] - rois[:, 2]) * spatial_scale
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    side = output_size * sampling_ratio                                   # samples per axis
    xs = _sample_coords(x1, roi_w, output_size, sampling_ratio)           # [K, side]
    ys = _sample_coords(y1, roi_h, output_size, sampling_ratio)           # [K, side]
    # samples more than one cell outside the map are 0; the rest are clamped into the map
    valid = (((ys >= -1.0) & (ys <= h))[:, :, None]
             & ((xs >= -1.0) & (xs <= w))[:, None, :])                    # [K, side, side]
    xs, ys = xs.clamp(0.0, w - 1), ys.clamp(0.0, h - 1)
    ys = ys + rois[:, :1] * h                                             # row in the stack
    gx = xs * (2.0 / max(w - 1, 1)) - 1.0
    gy = ys * (2.0 / max(n * h - 1, 1)) - 1.0
    grid = torch.stack((gx[:, None, :].expand(k, side, side),
                        gy[:, :, None].expand(k, side, side)), dim=-1)    # [K, side, side, 2]
    stacked = work.transpose(0, 1).reshape(1, c, n * h, w)
    samples = F.grid_sample(stacked, grid.reshape(1, k * side, side, 2), mode='bilinear',
                            padding_mode='zeros', align_corners=True)     # [1, C, K*side, side]
    samples = samples * valid.reshape(1, 1, k * side, side).to(work.dtype)
    pooled = F.avg_pool2d(samples, sampling_ratio)                        # [1, C, K*out, out]
    pooled = pooled.reshape(c, k, output_size, output_size).transpose(0, 1)
    return pooled.to(feature.dtype)


def roi_levels(boxes: Tensor, strides: Sequence[int], canonical_size: float = 224.0,
               canonical_level: int = 4) -> Tensor:
    """FPN level of every box (Lin et al. 2017, eq. 1).

    ``k = floor(canonical_level + log2(sqrt(w * h) / canonical_size + 1e-8))``, clamped to the
    levels present; the level of stride ``s`` is ``log2 s`` (the epsilon, as in detectron2,
    puts a box of exactly ``canonical_size`` on ``canonical_level``).

    Args:
        boxes: [K, 4] float ``x1, y1, x2, y2`` in input-image pixels (empty boxes go to the
            finest level).
        strides: strides of the pyramid levels, finest first, each twice the previous.

    Returns:
        [K] int64 index into ``strides`` (0 = finest).
    """
    levels = [math.log2(s) for s in strides]
    doubling = all(b - a == 1 for a, b in zip(levels, levels[1:]))
    if not levels or not doubling or not levels[0].is_integer():
        raise ValueError(f'strides must be powers of two, each twice the previous: {strides}')
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=0.0)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=0.0)
    k = torch.floor(canonical_level + torch.log2(torch.sqrt(w * h) / canonical_size + 1e-8))
    return (k.clamp(levels[0], levels[-1]) - levels[0]).to(torch.int64)


def multilevel_roi_align(features: Sequence[Tensor], strides: Sequence[int], rois: Tensor,
                         output_size: int, sampling_ratio: int = 2, static: bool = False,
                         canonical_size: float = 224.0, canonical_level: int = 4) -> Tensor:
    """RoIAlign of every RoI on its own FPN level (:func:`roi_levels`), aligned variant.

    Args:
        features: per level [N, C, H_l, W_l] (level ``l`` has stride ``strides[l]``).
        strides: the levels' strides, finest first, each twice the previous.
        rois: [K, 5] float ``(batch index, x1, y1, x2, y2)`` in input-image pixels.
        output_size, sampling_ratio: as in :func:`roi_align`.
        static: False pools on every level only the RoIs assigned to it (shapes depend on the
            data; for training). True pools every RoI on every level and keeps the one of its
            own level, so the shapes depend only on K and the graph exports to ONNX with static
            shapes, at L times the sampling cost. Both give the same numbers.
        canonical_size, canonical_level: as in :func:`roi_levels`.

    Returns:
        [K, C, output_size, output_size] in the dtype of the features.
    """
    if len(features) != len(strides):
        raise ValueError(f'{len(features)} feature maps for {len(strides)} strides')
    levels = roi_levels(rois[:, 1:], strides, canonical_size, canonical_level)
    if static:
        out = roi_align(features[0], rois, output_size, 1.0 / strides[0], sampling_ratio)
        for level in range(1, len(features)):
            pooled = roi_align(features[level], rois, output_size, 1.0 / strides[level],
                               sampling_ratio)
            out = torch.where((levels == level)[:, None, None, None], pooled, out)
        return out
    first = features[0]
    out = first.new_zeros(rois.shape[0], first.shape[1], output_size, output_size)
    for level, (feature, stride) in enumerate(zip(features, strides)):
        index = torch.nonzero(levels == level).squeeze(1)
        if index.numel():
            out = out.index_copy(0, index, roi_align(feature, rois[index], output_size,
                                                     1.0 / stride, sampling_ratio))
    return out
