"""The contours network (section III-A, Fig. 3): backbone, FPN, semantic-FPN necks, 3 heads.

Backbone (a name from :mod:`panoptic_ros.models.backbones`, ResNet-50/101 in the paper) ->
top-down FPN at strides 4-32 with 256 channels -> necks of 1x1 convs, 128 channels, every
level upsampled to 1/4 and summed ([1] = Panoptic FPN) -> three 1x1-conv heads: semantic
logits (``k`` channels), instance-contour logit (1 channel, sigmoid), centre offsets (2
channels, no activation). GroupNorm in FPN and necks (section IV-A). One neck shared by the
heads or one each (Table V: separate necks are better).

``forward`` returns the heads' raw 1/4 maps; the paper's 4x upsampling happens in the losses
and in :meth:`ContoursNet.decode`, which upsamples to the grid of ``output_stride`` and is
what the exported graph ends with.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from panoptic_ros.errors import PanopticError
from panoptic_ros.models.backbones import build_backbone, get_backbone
from panoptic_ros.models.backbones.norm import PixelNormalize
from panoptic_ros.models.necks.semantic_fpn import SemanticFPNNecks, TopDownFPN

HEADS = ('semantic', 'contour', 'center')


class ContoursNet(nn.Module):
    """Semantic segmentation, instance contours and centre offsets; normalisation in the graph.

    Args:
        num_classes: semantic classes ``k``.
        thing_classes: class ids with instances (kept for the registry interface; the
            post-processing receives them as an argument).
        backbone: backbone name (ResNet-50 in the paper).
        backbone_weights, pretrained, frozen_bn, frozen_stages: see
            :func:`~panoptic_ros.models.backbones.build_backbone`.
        fpn_channels: FPN channels (256, section III-A).
        neck_channels: neck channels (128, section III-A).
        neck_kernel: neck conv size: 1 (section III-A) or 3 (Panoptic FPN).
        separate_necks: one neck per head (Table V) instead of one shared neck.
        gn_groups: GroupNorm groups (the paper does not say; 32 as Wu & He).
        output_stride: grid of :meth:`decode`'s outputs: 4 (the heads' grid), 2 or 1 (the
            paper's full resolution) by bilinear upsampling inside the graph.
        offset_scale: the offset head's output is multiplied by this (a reparametrisation:
            1 in the paper).
    """

    output_names = ('semantic', 'semantic_prob', 'contour_prob', 'votes')

    def __init__(self, *, num_classes: int, thing_classes: Sequence[int] = (),
                 backbone: str = 'resnet50', backbone_weights: str | None = None,
                 pretrained: bool = False, frozen_bn: bool | None = None,
                 frozen_stages: int | None = None, fpn_channels: int = 256,
                 neck_channels: int = 128, neck_kernel: int = 1, separate_necks: bool = True,
                 gn_groups: int = 32, output_stride: int = 4, offset_scale: float = 1.0) -> None:
        super().__init__()
        if output_stride not in (1, 2, 4):
            raise PanopticError(f'output_stride must be 1, 2 or 4, got {output_stride!r}')
        self.num_classes = num_classes
        self.thing_classes = tuple(int(c) for c in thing_classes)
        self.output_stride = output_stride
        self.offset_scale = float(offset_scale)
        spec = get_backbone(backbone)
        self.normalize = PixelNormalize(spec.pixel_mean, spec.pixel_std)
        self.backbone = build_backbone(backbone, weights=backbone_weights, pretrained=pretrained,
                                       frozen_bn=frozen_bn, frozen_stages=frozen_stages)
        self.fpn = TopDownFPN(self.backbone.out_channels, fpn_channels, gn_groups)
        self.necks = SemanticFPNNecks(HEADS, shared=not separate_necks,
                                      in_channels=fpn_channels, channels=neck_channels,
                                      strides=TopDownFPN.strides, kernel_size=neck_kernel,
                                      groups=gn_groups)
        self.semantic_head = nn.Conv2d(neck_channels, num_classes, 1)
        self.contour_head = nn.Conv2d(neck_channels, 1, 1)
        self.center_head = nn.Conv2d(neck_channels, 2, 1)
        for head in (self.semantic_head, self.contour_head, self.center_head):
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)

    def forward(self, images: torch.Tensor) -> dict:
        """
        Args:
            images: ``[N, 3, H, W]`` RGB, 0-255 (any float or uint8 dtype).

        Returns:
            ``semantic``: ``[N, k, H/4, W/4]`` logits; ``contour``: ``[N, 1, H/4, W/4]``
            logits; ``offsets``: ``[N, 2, H/4, W/4]`` ``(x, y)`` from the pixel to its
            instance centre, input pixels.
        """
        x = self.normalize(images)
        feats = self.necks(self.fpn(self.backbone(x)))
        return {'semantic': self.semantic_head(feats['semantic']),
                'contour': self.contour_head(feats['contour']),
                'offsets': self.center_head(feats['center']) * self.offset_scale}

    def decode(self, raw: dict) -> dict:
        """The exportable part of inference: raw maps to static-shape engine outputs on the
        grid of ``output_stride`` ``s`` (``h = 4 h_4 / s``, ``w = 4 w_4 / s``).

        Returns:
            ``semantic``: ``[N, h, w] int64`` argmax class (section III-A);
            ``semantic_prob``: ``[N, k, h, w]`` softmax;
            ``contour_prob``: ``[N, 1, h, w]`` sigmoid;
            ``votes``: ``[N, 2, h, w]`` ``(x, y)`` predicted instance centre of every cell in
            grid cells (cell ``(i, j)`` is at ``(j, i)``): ``j + offset_x / s``.
        """
        sem, con, off = raw['semantic'].float(), raw['contour'].float(), raw['offsets'].float()
        s = self.output_stride
        h, w = sem.shape[-2] * 4 // s, sem.shape[-1] * 4 // s
        if s != 4:
            sem, con, off = (F.interpolate(t, size=(h, w), mode='bilinear', align_corners=False)
                             for t in (sem, con, off))
        xs = torch.arange(w, dtype=off.dtype, device=off.device).view(1, 1, w).expand(1, h, w)
        ys = torch.arange(h, dtype=off.dtype, device=off.device).view(1, h, 1).expand(1, h, w)
        grid = torch.cat([xs, ys])[None]                             # [1, 2, h, w]
        prob = sem.softmax(1)
        return {'semantic': prob.argmax(1), 'semantic_prob': prob,
                'contour_prob': torch.sigmoid(con), 'votes': grid + off / s}

    def infer(self, images: torch.Tensor) -> dict:
        """``decode(forward(images))``: what every engine computes."""
        return self.decode(self(images))
