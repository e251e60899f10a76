"""Losses of the contours model (section III-B, eq. 1-5).

``L = lambda_1 L_semantic + lambda_2 L_contour + lambda_3 L_center`` (eq. 4), with
``lambda = (1, 50, 0.1)`` (section III-B):

* ``L_semantic``: cross-entropy over the ``k`` classes (eq. 1), void ignored;
* ``L_contour = L_wBCE + L_Huber`` (eq. 5 without the NMS term: wBCE + Huber is the paper's
  best combination, Table I, and its choice for every other experiment);

  - ``L_wBCE`` (eq. 2): ``-[beta y log p + (1 - beta)(1 - y) log(1 - p)]`` with ``beta`` the
    share of non-edge pixels of the image (per image, over its non-void pixels), so that the
    rare edge pixels weigh ``beta`` and the many others ``1 - beta``;
  - ``L_Huber`` (eq. 3): Huber loss with ``delta = 0.3`` on the contour *probability*
    (``0.5 d^2`` for ``|d| <= delta``, else ``delta (|d| - 0.5 delta)``; the paper's
    ``delta (p - y)`` is read as ``delta |p - y|``);
* ``L_center``: Huber loss with ``delta = 1`` on the ``(x, y)`` offsets in pixels, on
  instance pixels.

The paper writes eq. 1-2 as sums over pixels; here every term is a mean (over non-void pixels,
over instance pixels for the offsets, summing the two coordinates), so that the weights of eq. 4
do not depend on the image size. The heads' 1/4 outputs are upsampled 4x (bilinear) to the
input size first, as the paper's heads do (section III-A).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from panoptic_ros.models.contours.targets import IGNORE, ContourTargets


@dataclass(frozen=True)
class LossConfig:
    """Weights and switches (defaults: the paper's)."""

    semantic_weight: float = 1.0        # lambda_1 (eq. 4)
    contour_weight: float = 50.0        # lambda_2
    center_weight: float = 0.1          # lambda_3
    contour_huber: bool = True          # eq. 5 with (True) or without the Huber term
    contour_delta: float = 0.3          # eq. 3
    center_delta: float = 1.0           # section III-B


def weighted_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Eq. 2, averaged over the valid pixels of the batch.

    Args:
        logits: ``[N, H, W]`` contour logits.
        target: ``[N, H, W]`` 0/1 edges.
        valid: ``[N, H, W] bool`` pixels that count (``beta`` is computed over them).

    Returns:
        Scalar ``-sum_i [beta y_i log p_i + (1 - beta)(1 - y_i) log(1 - p_i)] / n_valid`` with
        ``beta = (valid non-edge pixels) / (valid pixels)`` of each image.
    """
    v = valid.float()
    n = v.flatten(1).sum(1)
    beta = ((1 - target) * v).flatten(1).sum(1) / n.clamp(min=1)
    beta = beta[:, None, None]
    per_px = -(beta * target * F.logsigmoid(logits) +
               (1 - beta) * (1 - target) * F.logsigmoid(-logits))
    return (per_px * v).sum() / n.sum().clamp(min=1)


def huber(diff: torch.Tensor, delta: float) -> torch.Tensor:
    """Element-wise Huber loss of ``diff``: ``0.5 d^2`` if ``|d| <= delta`` else
    ``delta (|d| - 0.5 delta)``."""
    a = diff.abs()
    return torch.where(a <= delta, 0.5 * diff * diff, delta * (a - 0.5 * delta))


def contour_huber(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                  delta: float = 0.3) -> torch.Tensor:
    """Eq. 3 on ``p = sigmoid(logits)``, averaged over valid pixels (shapes of
    :func:`weighted_bce`)."""
    v = valid.float()
    return (huber(torch.sigmoid(logits) - target, delta) * v).sum() / v.sum().clamp(min=1)


def offset_huber(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                 delta: float = 1.0) -> torch.Tensor:
    """Huber loss on the centre offsets.

    Args:
        pred, target: ``[N, 2, H, W]`` offsets ``(x, y)`` in pixels.
        mask: ``[N, H, W] bool`` instance pixels.

    Returns:
        Scalar: ``sum over masked pixels of (huber(dx) + huber(dy))`` over their number (0,
        with a gradient path, when there is none).
    """
    m = mask.float()[:, None]
    return (huber(pred - target, delta) * m).sum() / m.sum().clamp(min=1)


def _upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


def contours_loss(raw: dict, targets: list[ContourTargets],
                  config: LossConfig = LossConfig()) -> dict[str, torch.Tensor]:
    """Every term and their weighted sum ``total`` (eq. 4) for a batch.

    Args:
        raw: model outputs: ``semantic [N, C, h, w]``, ``contour [N, 1, h, w]`` logits and
            ``offsets [N, 2, h, w]`` pixels, on the 1/4 grid.
        targets: ``N`` targets at the input size ``H x W``.
    """
    device = raw['semantic'].device
    size = tuple(targets[0].semantic.shape)
    sem_t = torch.stack([t.semantic for t in targets]).to(device)
    con_t = torch.stack([t.contour for t in targets]).to(device)
    valid = torch.stack([t.valid for t in targets]).to(device)
    off_t = torch.stack([t.offsets for t in targets]).to(device)
    inst = torch.stack([t.instance_mask for t in targets]).to(device)
    sem = _upsample(raw['semantic'].float(), size)
    con = _upsample(raw['contour'].float(), size)[:, 0]
    off = _upsample(raw['offsets'].float(), size)
    if bool((sem_t != IGNORE).any()):
        l_sem = F.cross_entropy(sem, sem_t, ignore_index=IGNORE)
    else:
        l_sem = sem.sum() * 0
    losses = {'semantic': l_sem, 'contour_wbce': weighted_bce(con, con_t, valid)}
    losses['contour_huber'] = (contour_huber(con, con_t, valid, config.contour_delta)
                               if config.contour_huber else torch.zeros((), device=device))
    losses['center'] = offset_huber(off, off_t, inst, config.center_delta)
    losses['total'] = (config.semantic_weight * losses['semantic'] +
                       config.contour_weight * (losses['contour_wbce'] +
                                                losses['contour_huber']) +
                       config.center_weight * losses['center'])
    return losses
