"""Losses of CASNet (section III-B, eq. 1-4).

``L = alpha L_cls + beta L_common + gamma L_prob`` (eq. 4) with ``alpha = beta = gamma = 1``
(the values the paper uses, although it writes them in ``(0, 1)``):

* ``L_cls`` (eq. 1): pixel cross-entropy at the input size (the logits upsampled bilinearly),
  void ignored;
* ``L_common`` (eq. 2): ``mean |x_n - y_n|`` over the cells of instances and the 4 distances,
  in strides (L1 only where it applies: stuff, void and crowd cells have no box);
* ``L_prob`` (eq. 3): ``-w_n [y log sigma(x) + (1 - y) log(1 - sigma(x))]`` averaged over the
  valid cells and the thing channels, ``w_n = positive_weight`` on positives and 1 elsewhere
  (1 in the paper, which does not give ``w_n``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from panoptic_ros.models.casnet.targets import IGNORE, CASTargets


@dataclass(frozen=True)
class LossConfig:
    """Weights of eq. 4 and eq. 3 (defaults: the paper's)."""

    semantic_weight: float = 1.0       # alpha
    common_weight: float = 1.0         # beta
    prob_weight: float = 1.0           # gamma
    positive_weight: float = 1.0       # w_n of the centre-region cells


def common_attribute_l1(pred: torch.Tensor, target: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
    """Eq. 2: ``[N, 4, h, w]`` distances (strides), ``mask [N, h, w] bool`` -> scalar mean
    over masked cells and the 4 distances (0, with a gradient path, when nothing is masked)."""
    m = mask.float()[:, None]
    return ((pred - target).abs() * m).sum() / (4 * m.sum()).clamp(min=1)


def box_probability_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                        positive_weight: float = 1.0) -> torch.Tensor:
    """Eq. 3: ``logits``, ``target [N, T, h, w]``, ``valid [N, h, w] bool`` -> scalar."""
    per = F.binary_cross_entropy_with_logits(logits, target, reduction='none')
    w = torch.where(target > 0, positive_weight, 1.0) * valid.float()[:, None]
    return (per * w).sum() / (valid.float().sum() * logits.shape[1]).clamp(min=1)


def casnet_loss(raw: dict, targets: list[CASTargets],
                config: LossConfig = LossConfig()) -> dict[str, torch.Tensor]:
    """Every term and their weighted sum ``total`` (eq. 4) for a batch.

    Args:
        raw: model outputs: ``semantic [N, C, h, w]`` logits, ``distances [N, 4, h, w]``
            strides, ``box_logits [N, T, h, w]``, on the heads' grid.
        targets: ``N`` targets (semantic at the input size ``H x W``, the rest at ``h x w``).
    """
    device = raw['semantic'].device
    size = tuple(targets[0].semantic.shape)
    sem_t = torch.stack([t.semantic for t in targets]).to(device)
    sem = raw['semantic'].float()
    if tuple(sem.shape[-2:]) != size:
        sem = F.interpolate(sem, size=size, mode='bilinear', align_corners=False)
    if bool((sem_t != IGNORE).any()):
        l_sem = F.cross_entropy(sem, sem_t, ignore_index=IGNORE)
    else:
        l_sem = sem.sum() * 0
    dist_t = torch.stack([t.distances for t in targets]).to(device)
    inst = torch.stack([t.instance for t in targets]).to(device)
    prob_t = torch.stack([t.box_prob for t in targets]).to(device)
    valid = torch.stack([t.valid for t in targets]).to(device)
    losses = {'semantic': l_sem,
              'common': common_attribute_l1(raw['distances'].float(), dist_t, inst),
              'prob': box_probability_bce(raw['box_logits'].float(), prob_t, valid,
                                          config.positive_weight)}
    losses['total'] = (config.semantic_weight * losses['semantic'] +
                       config.common_weight * losses['common'] +
                       config.prob_weight * losses['prob'])
    return losses
