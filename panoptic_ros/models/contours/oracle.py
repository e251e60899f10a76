"""Perfect raw outputs made from the training targets: the ceiling of targets + inference.

:func:`oracle_outputs` gives the 1/4-grid maps (the layout of ``ContoursNet.forward``) that a
network reproducing its targets would produce: each cell's semantic logits say the cell's most
frequent class, its contour logit the share of contour pixels in it, its offsets point from the
cell to the centre of mass of the cell's most frequent instance. Fed through ``decode`` and the
post-processing, they show what the architecture can represent at an input size: objects that
contours swallow on the grid are lost for every trained model. Used by the tests and for timing
the post-processing on plausible inputs.
"""

from __future__ import annotations

import torch

from panoptic_ros.models.contours.targets import IGNORE, ContourTargets

# Logit magnitude of a certain decision.
_BIG = 20.0


def _cell_mode(labels: torch.Tensor, n: int, stride: int, skip_zero: bool) -> torch.Tensor:
    """``[h, w] int64`` most frequent value of ``labels [H, W]`` (``0..n-1``) in every
    ``stride x stride`` cell; with ``skip_zero`` 0 wins only in cells holding nothing else."""
    hh, ww = labels.shape
    h, w = -(-hh // stride), -(-ww // stride)
    ys = torch.arange(hh)[:, None] // stride
    xs = torch.arange(ww)[None, :] // stride
    cell = (ys * w + xs).flatten()
    counts = torch.bincount(cell * n + labels.flatten().long(), minlength=h * w * n).view(
        h * w, n)
    if skip_zero:
        counts[:, 0] = torch.where(counts[:, 1:].sum(1) > 0, 0, counts[:, 0])
    return counts.argmax(1).view(h, w)


def oracle_outputs(t: ContourTargets, instance: torch.Tensor, num_classes: int,
                   stride: int = 4) -> dict:
    """Raw outputs (batch 1) that the targets ``t`` of ``instance [H, W]`` call perfect.

    Returns:
        ``semantic [1, C, h, w]``, ``contour [1, 1, h, w]`` logits and ``offsets [1, 2, h,
        w]`` input pixels, ``h = ceil(H / stride)``.
    """
    hh, ww = t.semantic.shape
    sem = torch.where(t.semantic == IGNORE, torch.full_like(t.semantic, num_classes),
                      t.semantic)
    cell_sem = _cell_mode(sem, num_classes + 1, stride, skip_zero=False)
    onehot = torch.nn.functional.one_hot(cell_sem, num_classes + 1)[..., :num_classes]
    semantic = (onehot.permute(2, 0, 1).float() * 2 - 1) * _BIG
    share = torch.nn.functional.avg_pool2d(t.contour[None, None], stride, ceil_mode=True)[0]
    contour = torch.logit(share.clamp(1e-6, 1 - 1e-6))
    inst = instance.long()
    k = int(inst.max()) + 1 if inst.numel() else 1
    cell_inst = _cell_mode(inst, k, stride, skip_zero=True)
    ys, xs = torch.meshgrid(torch.arange(hh, dtype=torch.float64),
                            torch.arange(ww, dtype=torch.float64), indexing='ij')
    area = torch.bincount(inst.flatten(), minlength=k).clamp(min=1).double()
    cx = torch.bincount(inst.flatten(), weights=xs.flatten(), minlength=k) / area
    cy = torch.bincount(inst.flatten(), weights=ys.flatten(), minlength=k) / area
    h, w = cell_inst.shape
    loc = (stride - 1) / 2.0
    gx = torch.arange(w, dtype=torch.float64)[None, :] * stride + loc
    gy = torch.arange(h, dtype=torch.float64)[:, None] * stride + loc
    has = cell_inst > 0
    off = torch.stack([torch.where(has, cx[cell_inst] - gx, 0.0),
                       torch.where(has, cy[cell_inst] - gy, 0.0)]).float()
    return {'semantic': semantic[None], 'contour': contour[None], 'offsets': off[None]}
