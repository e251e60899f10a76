"""Box geometry shared by the architectures: IoU, exact greedy NMS, feature-map locations,
distance-to-border boxes, boxes of index images and of instance maps. Pure torch on the
inputs' device, vectorised.
"""

from __future__ import annotations

import torch

_EPS = 1e-6


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU. ``a [..., K, 4]``, ``b [..., M, 4]`` as ``x1, y1, x2, y2`` ->
    ``[..., K, M]`` (leading dimensions broadcast: a batch of box sets at once)."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter).clamp(min=_EPS)


def nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
        iou_threshold: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy non-maximum suppression per class, exactly, in tensor operations.

    Args:
        boxes: ``[K, 4]`` ``x1, y1, x2, y2``.
        scores: ``[K]``.
        classes: ``[K]`` integer class of each box; boxes of different classes never
            suppress each other.
        iou_threshold: a box is suppressed by a kept, higher-scoring box of its class with
            IoU above this.
        valid: ``[K] bool`` candidates (others are neither kept nor suppress).

    Returns:
        ``[K] bool`` kept, in the input order.
    """
    k = boxes.shape[0]
    if k == 0:
        return torch.zeros(0, dtype=torch.bool, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    b, c = boxes[order], classes[order]
    ok = torch.ones(k, dtype=torch.bool, device=boxes.device) if valid is None else valid[order]
    # suppress[i, j]: i (higher score) would suppress j
    suppress = (box_iou(b, b) > iou_threshold) & (c[:, None] == c[None, :])
    suppress = torch.triu(suppress, diagonal=1) & ok[:, None]
    keep = ok.clone()
    for _ in range(k):
        new = ok & ~(suppress & keep[:, None]).any(dim=0)
        if torch.equal(new, keep):
            break
        keep = new
    out = torch.empty_like(keep)
    out[order] = keep
    return out


def locations(height: int, width: int, stride: int, device=None) -> torch.Tensor:
    """Image coordinates of feature-map cells (section 4.1): ``[2, h, w]`` (x, y)."""
    ys = torch.arange(height, device=device, dtype=torch.float32) * stride + stride // 2
    xs = torch.arange(width, device=device, dtype=torch.float32) * stride + stride // 2
    return torch.stack(torch.meshgrid(xs, ys, indexing='xy'), dim=0)


def decode_boxes(offsets: torch.Tensor, stride: int) -> torch.Tensor:
    """Offsets ``(l, t, r, b)`` to boxes (eq. 8 inverted).

    Args:
        offsets: ``[N, 4, h, w]`` non-negative distances in pixels.
        stride: of the feature map.

    Returns:
        ``[N, 4, h, w]`` boxes ``x1, y1, x2, y2`` in image pixels.
    """
    loc = locations(offsets.shape[-2], offsets.shape[-1], stride, offsets.device)
    return torch.cat([loc - offsets[:, :2], loc + offsets[:, 2:]], dim=1)


def index_boxes(index: torch.Tensor, n: int) -> torch.Tensor:
    """Bounding box of every value of an index image.

    Args:
        index: ``[H, W]`` integer image with values in ``0..n-1``.
        n: number of values.

    Returns:
        ``[n, 4] int64`` ``x0, y0, x1, y1`` (inclusive) on ``index``'s device; values absent
        from the image get ``x0 = y0 = max(H, W)``, ``x1 = y1 = 0``.
    """
    h, w = index.shape
    flat = index.flatten().long()
    xs = torch.arange(w, device=index.device).repeat(h)
    ys = torch.arange(h, device=index.device).repeat_interleave(w)
    big = torch.full((n,), max(h, w), dtype=torch.int64, device=index.device)
    zero = torch.zeros_like(big)
    return torch.stack([big.scatter_reduce(0, flat, xs, 'amin'),
                        big.scatter_reduce(0, flat, ys, 'amin'),
                        zero.scatter_reduce(0, flat, xs, 'amax'),
                        zero.scatter_reduce(0, flat, ys, 'amax')], 1)


def instance_boxes(instance: torch.Tensor) -> torch.Tensor:
    """``[K + 1, 4]`` float boxes ``x1, y1, x2, y2`` (x2, y2 exclusive) of ids ``1..K``."""
    k = int(instance.max()) if instance.numel() else 0
    boxes = index_boxes(instance, k + 1)
    boxes[:, 2:] += 1
    return boxes.float()
