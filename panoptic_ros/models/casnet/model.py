"""The CASNet network (section III-A, Fig. 2): backbone, neck at stride 4, three FCN heads.

Backbone (a name from :mod:`panoptic_ros.models.backbones`; HRNet in the paper, "any
mainstream CNN" allowed) -> a neck fusing ``c2..c5`` at stride 4: ``concat`` (HRNetV2's
representation, :class:`~panoptic_ros.models.necks.concat.ConcatNeck`) or ``fpn`` (a top-down
FPN and the Panoptic-FPN semantic branch, as the contours model) -> three heads of
``head_convs`` x (3x3 conv, GroupNorm, ReLU) and a 1x1 conv (the paper: "configured the same as
FCN"; it gives no sizes):

* semantic: ``C`` class logits;
* common attribute: 4 distances ``(l, t, r, b)`` from the cell's pixel to its instance's box
  borders, in strides (eq. 2), non-negative by a ReLU;
* box probability: one logit per thing class (class-specific, FCOS style).

Training modes (section IV, Tab. II): ``semantic_branch='shared'`` trains all three heads on one
backbone ("joint"); ``'separate'`` gives the semantic head its own backbone and neck, a plain
semantic segmentation network that the separated recipe initialises from a semantic-only run
and keeps fixed (``freeze_semantic``), as the paper's "separated" mode takes its semantics from
a separately trained HRNet.

``forward`` returns the raw maps on the stride-4 grid; :meth:`CASNet.decode` (the end of the
exported graph) turns them into probabilities and per-cell boxes in input pixels.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from panoptic_ros.errors import PanopticError
from panoptic_ros.models.backbones import build_backbone, get_backbone
from panoptic_ros.models.backbones.norm import PixelNormalize
from panoptic_ros.models.geometry import locations
from panoptic_ros.models.necks.concat import ConcatNeck
from panoptic_ros.models.necks.semantic_fpn import SemanticFPN, TopDownFPN, conv_gn_relu

STRIDE = 4


def _head(in_channels: int, channels: int, convs: int, out: int, groups: int) -> nn.Sequential:
    layers = [conv_gn_relu(in_channels if i == 0 else channels, channels, 3, groups)
              for i in range(convs)]
    last = nn.Conv2d(channels if convs else in_channels, out, 1)
    nn.init.normal_(last.weight, std=0.01)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class CASNet(nn.Module):
    """Semantics, common attributes and box probabilities; normalisation in the graph.

    Args:
        num_classes: semantic classes ``C``.
        thing_classes: class ids with instances, ``T`` of them: the box-probability channels,
            in this order.
        backbone: backbone name (``hrnet_w48`` for the paper's recipe).
        backbone_weights, pretrained, frozen_bn, frozen_stages: see
            :func:`~panoptic_ros.models.backbones.build_backbone`.
        neck: ``concat`` (HRNetV2) or ``fpn``.
        neck_channels: the neck's output channels (``concat``: 0 keeps the inputs' sum).
        head_convs, head_channels: the heads' 3x3 conv stages and their width.
        distance_scale: the common-attribute head's output is multiplied by this (a
            reparametrisation of the unit: 1 in the paper); its bias starts at 1, so every
            distance starts at ``distance_scale`` strides and the ReLU passes gradients.
        prior_prob: initial box probability (the bias of that head, as RetinaNet/FCOS).
        gn_groups: GroupNorm groups.
        semantic_branch: ``shared`` (joint training) or ``separate`` (own backbone and neck).
        freeze_semantic: with ``separate``: the semantic branch is not trained and stays in
            eval mode (its batch-norm statistics do not move).
    """

    output_names = ('semantic', 'semantic_prob', 'box_prob', 'boxes')
    stride = STRIDE

    def __init__(self, *, num_classes: int, thing_classes: Sequence[int] = (),
                 backbone: str = 'resnet50', backbone_weights: str | None = None,
                 pretrained: bool = False, frozen_bn: bool | None = None,
                 frozen_stages: int | None = None, neck: str = 'concat',
                 neck_channels: int = 0, head_convs: int = 2, head_channels: int = 256,
                 distance_scale: float = 1.0, prior_prob: float = 0.01,
                 gn_groups: int = 32, semantic_branch: str = 'shared',
                 freeze_semantic: bool = False) -> None:
        super().__init__()
        if len(thing_classes) == 0:
            raise PanopticError('CASNet needs thing_classes (the box-probability channels)')
        if neck not in ('concat', 'fpn'):
            raise PanopticError(f"neck must be 'concat' or 'fpn', got {neck!r}")
        if semantic_branch not in ('shared', 'separate'):
            raise PanopticError(f"semantic_branch must be 'shared' or 'separate', got "
                                f"{semantic_branch!r}")
        if freeze_semantic and semantic_branch != 'separate':
            raise PanopticError("freeze_semantic needs semantic_branch: separate (a shared "
                                "backbone is trained by every head)")
        self.num_classes = num_classes
        self.thing_classes = tuple(int(c) for c in thing_classes)
        self.distance_scale = float(distance_scale)
        spec = get_backbone(backbone)
        self.normalize = PixelNormalize(spec.pixel_mean, spec.pixel_std)
        def trunk():
            bb = build_backbone(backbone, weights=backbone_weights, pretrained=pretrained,
                                frozen_bn=frozen_bn, frozen_stages=frozen_stages)
            if neck == 'concat':
                nk = ConcatNeck(bb.out_channels, neck_channels)
                return bb, nk, nk.channels
            ch = neck_channels or 128
            return bb, nn.Sequential(TopDownFPN(bb.out_channels, ch, gn_groups),
                                     SemanticFPN(ch, ch, TopDownFPN.strides, 3, gn_groups)), ch

        self.backbone, self.neck, channels = trunk()
        self.separate = semantic_branch == 'separate'
        self.freeze_semantic = bool(freeze_semantic)
        if self.separate:
            self.semantic_backbone, self.semantic_neck, _ = trunk()
        t = len(self.thing_classes)
        self.semantic_head = _head(channels, head_channels, head_convs, num_classes, gn_groups)
        self.distance_head = _head(channels, head_channels, head_convs, 4, gn_groups)
        self.box_head = _head(channels, head_channels, head_convs, t, gn_groups)
        nn.init.ones_(self.distance_head[-1].bias)
        nn.init.constant_(self.box_head[-1].bias,
                          float(torch.logit(torch.tensor(prior_prob))))
        if self.freeze_semantic:
            for m in self._semantic_modules():
                m.requires_grad_(False)

    def _semantic_modules(self) -> tuple[nn.Module, ...]:
        return (self.semantic_backbone, self.semantic_neck, self.semantic_head)

    def train(self, mode: bool = True) -> 'CASNet':
        super().train(mode)
        if self.freeze_semantic:
            for m in self._semantic_modules():
                m.eval()
        return self

    def forward(self, images: torch.Tensor) -> dict:
        """
        Args:
            images: ``[N, 3, H, W]`` RGB, 0-255 (any float or uint8 dtype).

        Returns:
            ``semantic``: ``[N, C, H/4, W/4]`` logits; ``distances``: ``[N, 4, H/4, W/4]``
            ``(l, t, r, b)`` in strides, >= 0; ``box_logits``: ``[N, T, H/4, W/4]``.
        """
        x = self.normalize(images)
        feats = self.neck(self.backbone(x))
        sem_feats = self.semantic_neck(self.semantic_backbone(x)) if self.separate else feats
        return {'semantic': self.semantic_head(sem_feats),
                'distances': torch.relu(self.distance_head(feats)) * self.distance_scale,
                'box_logits': self.box_head(feats)}

    def decode(self, raw: dict) -> dict:
        """The exportable part of inference, on the stride-4 grid ``h x w``.

        Returns:
            ``semantic``: ``[N, h, w] int64`` argmax class;
            ``semantic_prob``: ``[N, C, h, w]`` softmax;
            ``box_prob``: ``[N, T, h, w]`` sigmoid of the box-probability logits;
            ``boxes``: ``[N, 4, h, w]`` ``x1, y1, x2, y2`` in input pixels, the box every
            cell predicts for its instance (section III-C step 2).
        """
        sem = raw['semantic'].float()
        dist = raw['distances'].float() * self.stride
        loc = locations(sem.shape[-2], sem.shape[-1], self.stride, sem.device)[None]
        prob = sem.softmax(1)
        return {'semantic': prob.argmax(1), 'semantic_prob': prob,
                'box_prob': torch.sigmoid(raw['box_logits'].float()),
                'boxes': torch.cat([loc - dist[:, :2], loc + dist[:, 2:]], 1)}

    def infer(self, images: torch.Tensor) -> dict:
        """``decode(forward(images))``: what every engine computes."""
        return self.decode(self(images))
