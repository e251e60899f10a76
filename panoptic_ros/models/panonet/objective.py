"""Training objective of PanoNet: targets and the losses of :mod:`.losses`.

Targets of one ``H x W`` sample: the semantic map at the input size (void ``IGNORE``) for the
cascade loss, and instance ids on the 1/4 grid (cell ``(i, j)`` takes the id of the pixel it
looks at, :func:`~panoptic_ros.models.geometry.locations`; 0 for stuff, void and crowd) for
the discriminative loss on the 1/4 embedding (no cascade guidance on the embedding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from panoptic_ros.models.geometry import locations
from panoptic_ros.models.panonet.losses import (IGNORE, LossConfig, cascade_semantic_loss,
                                                discriminative_loss)

STRIDE = 4


@dataclass
class PanoNetTargets:
    """``semantic [H, W] int64`` (``IGNORE`` on void); ``instance [H/4, W/4] int64``."""

    semantic: torch.Tensor
    instance: torch.Tensor


def compute_targets(semantic: torch.Tensor, instance: torch.Tensor, *,
                    void_id: int = 255) -> PanoNetTargets:
    semantic, instance = semantic.long(), instance.long()
    hh, ww = semantic.shape
    loc = locations(-(-hh // STRIDE), -(-ww // STRIDE), STRIDE, semantic.device).long()
    cell = instance[loc[1].clamp(max=hh - 1), loc[0].clamp(max=ww - 1)]
    return PanoNetTargets(
        semantic=torch.where(semantic == void_id, torch.full_like(semantic, IGNORE), semantic),
        instance=cell)


@dataclass
class PanoNetObjective:
    """Targets and losses.

    Args:
        num_classes, thing_classes: the label set's (the instance targets come from the
            instance map).
        void_id: semantic value of void pixels in the samples.
        loss: :class:`~.losses.LossConfig` fields.
    """

    num_classes: int
    thing_classes: Sequence[int]
    void_id: int = 255
    loss: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        kw = dict(self.loss)
        if 'cascade_weights' in kw:
            kw['cascade_weights'] = tuple(kw['cascade_weights'])
        self.loss_config = LossConfig(**kw)

    def targets(self, semantic: torch.Tensor, instance: torch.Tensor) -> PanoNetTargets:
        return compute_targets(semantic, instance, void_id=self.void_id)

    def __call__(self, raw: dict, targets: list[PanoNetTargets]) -> dict[str, torch.Tensor]:
        c = self.loss_config
        device = raw['semantic'].device
        sem_t = torch.stack([t.semantic for t in targets]).to(device)
        inst_t = torch.stack([t.instance for t in targets]).to(device)
        losses = {'semantic': cascade_semantic_loss(
            [raw['semantic'], raw['semantic_8'], raw['semantic_16']], sem_t,
            c.cascade_weights)}
        disc = discriminative_loss(raw['embedding'].float(), inst_t, delta_v=c.delta_v,
                                   delta_d=c.delta_d, delta_r=c.delta_r)
        losses.update({f'instance_{k}': v for k, v in disc.items()})
        losses['total'] = losses['semantic'] + c.instance_weight * (
            c.alpha * disc['var'] + c.beta * disc['dist'] + c.gamma * disc['reg'])
        return losses
