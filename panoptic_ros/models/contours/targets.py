"""Training targets of the contours model (sections III-B and IV-A), at the network input size.

* semantic: class ids, ``IGNORE`` on void (eq. 1);
* contour: the instance contours "from a contour detection algorithm on instance masks",
  dilated (section IV-A, Table II). The contour of an instance is its inner boundary: its
  pixels with a 4-neighbour outside it (another instance, stuff, crowd or void; the image
  border is not a boundary, so crops do not teach contours along image edges). Dilation rate
  ``r`` grows it by ``r - 1`` 3x3 dilations: rate 1 is the 1-pixel boundary (2 pixels between
  two touching instances), the paper's default rate 2 is 3 pixels wide (4 between touching
  instances);
* centre offsets: ``(x, y)`` from each instance pixel to its instance's centre of mass, in
  input pixels (section III-B, "offsets from instance center in x and y"), on instance pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = 255


@dataclass
class ContourTargets:
    """Targets of one image of ``H x W`` pixels.

    Attributes:
        semantic: ``[H, W] int64`` class ids, ``IGNORE`` on void.
        contour: ``[H, W] float32`` 1 on contour pixels, 0 elsewhere.
        valid: ``[H, W] bool`` pixels the contour loss sees (not void).
        offsets: ``[2, H, W] float32`` ``(x, y)`` centre minus pixel, 0 outside instances.
        instance_mask: ``[H, W] bool`` pixels of an instance (where the offset loss applies).
    """

    semantic: torch.Tensor
    contour: torch.Tensor
    valid: torch.Tensor
    offsets: torch.Tensor
    instance_mask: torch.Tensor


def instance_boundaries(instance: torch.Tensor) -> torch.Tensor:
    """``[H, W] bool``: instance pixels (id > 0) with a 4-neighbour of another id.

    Args:
        instance: ``[H, W]`` integer instance ids, 0 for no instance.
    """
    inst = instance.long()
    edge = torch.zeros(inst.shape, dtype=torch.bool, device=inst.device)
    vert = inst[1:] != inst[:-1]
    horiz = inst[:, 1:] != inst[:, :-1]
    edge[1:] |= vert
    edge[:-1] |= vert
    edge[:, 1:] |= horiz
    edge[:, :-1] |= horiz
    return edge & (inst > 0)


def contour_target(instance: torch.Tensor, dilation_rate: int = 2) -> torch.Tensor:
    """``[H, W] float32`` contour ground truth: boundaries grown by ``dilation_rate - 1``
    3x3 dilations (a loop of that many steps)."""
    if dilation_rate < 1:
        raise ValueError(f'dilation_rate must be >= 1, got {dilation_rate!r}')
    c = instance_boundaries(instance).float()[None, None]
    for _ in range(dilation_rate - 1):
        c = F.max_pool2d(c, 3, stride=1, padding=1)
    return c[0, 0]


def centre_offsets(instance: torch.Tensor) -> torch.Tensor:
    """``[2, H, W] float32``: ``(x, y)`` offsets from every instance pixel to the centre of
    mass of its instance (pixel-index coordinates), 0 outside instances."""
    inst = instance.long()
    h, w = inst.shape
    n = int(inst.max()) + 1 if inst.numel() else 1
    flat = inst.flatten()
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=inst.device),
                            torch.arange(w, dtype=torch.float64, device=inst.device),
                            indexing='ij')
    area = torch.bincount(flat, minlength=n).clamp(min=1).double()
    cx = torch.bincount(flat, weights=xs.flatten(), minlength=n) / area
    cy = torch.bincount(flat, weights=ys.flatten(), minlength=n) / area
    off = torch.stack([cx[inst] - xs, cy[inst] - ys]).float()
    return torch.where(inst[None] > 0, off, torch.zeros_like(off))


def compute_targets(semantic: torch.Tensor, instance: torch.Tensor, *, void_id: int = 255,
                    dilation_rate: int = 2) -> ContourTargets:
    """Targets of one sample.

    Args:
        semantic: ``[H, W]`` class ids, ``void_id`` on void.
        instance: ``[H, W]`` instance ids ``1..K``; 0 for stuff, void and crowd.
        dilation_rate: contour thickness (section IV-B2: 2).
    """
    semantic = semantic.long()
    instance = instance.long()
    void = semantic == void_id
    return ContourTargets(
        semantic=torch.where(void, torch.full_like(semantic, IGNORE), semantic),
        contour=contour_target(instance, dilation_rate),
        valid=~void,
        offsets=centre_offsets(instance),
        instance_mask=instance > 0)
