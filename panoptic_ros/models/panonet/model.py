"""The PanoNet network (section III-A, Fig. 2): two independent ICNets.

* semantic branch: an ICNet (:class:`~panoptic_ros.models.backbones.icnet.ICNet`) predicting
  class logits at 1/4, with its cascade outputs at 1/8 and 1/16 for the label guidance of
  section III-E;
* instance branch: an ICNet of its own (no shared weights, section IV-e) predicting a
  ``embedding_dim``-channel (12) position-sensitive embedding at 1/4. With ``coordinates``,
  its input also carries normalised ``x, y`` maps (``[-1, 1]`` over the image, CoordConv):
  they enter through a 1x1 conv (``coord_weight``) added to the normalised image,
  zero-initialised, so that stage 2 of the schedule (section III-C) starts exactly where
  stage 1 ended.

``forward`` returns the raw maps; :meth:`PanoNet.decode` (the end of the exported graph) the
semantic argmax and probabilities and the embedding at 1/4.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from panoptic_ros.models.backbones import get_backbone
from panoptic_ros.models.backbones.icnet import ICNet
from panoptic_ros.models.backbones.norm import PixelNormalize


def coordinate_maps(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``[1, 2, h, w]`` ``(x, y)`` from -1 (first pixel) to 1 (last pixel)."""
    xs = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype)
    ys = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(xs, ys, indexing='xy'))[None]


class PanoNet(nn.Module):
    """Semantic logits and a pixel embedding; normalisation in the graph.

    Args:
        num_classes: semantic classes ``C``.
        thing_classes: class ids with instances (kept for the registry interface).
        backbone: trunk of both ICNets (PSPNet-50 layers in ICNet).
        backbone_weights, pretrained, frozen_bn, frozen_stages: the trunks (see
            :func:`~panoptic_ros.models.backbones.build_backbone`).
        channels: ICNet's CFF width (128).
        embedding_dim: instance embedding size (12, section III-A).
        coordinates: feed the instance branch the ``x, y`` maps (stage 2).
    """

    output_names = ('semantic', 'semantic_prob', 'embedding')

    def __init__(self, *, num_classes: int, thing_classes: Sequence[int] = (),
                 backbone: str = 'resnet50', backbone_weights: str | None = None,
                 pretrained: bool = False, frozen_bn: bool | None = None,
                 frozen_stages: int | None = None, channels: int = 128,
                 embedding_dim: int = 12, coordinates: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.thing_classes = tuple(int(c) for c in thing_classes)
        self.coordinates = bool(coordinates)
        spec = get_backbone(backbone)
        self.normalize = PixelNormalize(spec.pixel_mean, spec.pixel_std)
        trunk = dict(backbone=backbone, backbone_weights=backbone_weights,
                     pretrained=pretrained, frozen_bn=frozen_bn, frozen_stages=frozen_stages,
                     channels=channels)
        self.semantic_branch = ICNet(num_classes, **trunk)
        self.instance_branch = ICNet(embedding_dim, **trunk)
        if self.coordinates:
            # [3, 2]: a 1x1 conv from the x, y maps to the 3 input channels, zero at start
            self.coord_weight = nn.Parameter(torch.zeros(3, 2))

    def forward(self, images: torch.Tensor) -> dict:
        """
        Args:
            images: ``[N, 3, H, W]`` RGB, 0-255 (any float or uint8 dtype).

        Returns:
            ``semantic``, ``semantic_8``, ``semantic_16``: ``[N, C, H/4, W/4]``, ``[N, C,
            H/8, W/8]``, ``[N, C, H/16, W/16]`` logits (the cascade); ``embedding``: ``[N, D,
            H/4, W/4]``.
        """
        x = self.normalize(images)
        sem, sem8, sem16 = self.semantic_branch(x)
        xi = x
        if self.coordinates:
            xy = coordinate_maps(int(x.shape[-2]), int(x.shape[-1]), x.device, x.dtype)
            xi = x + (self.coord_weight.view(1, 3, 2, 1, 1) * xy[:, None]).sum(2)
        emb = self.instance_branch(xi)[0]
        return {'semantic': sem, 'semantic_8': sem8, 'semantic_16': sem16, 'embedding': emb}

    def decode(self, raw: dict) -> dict:
        """The exportable part of inference, on the 1/4 grid.

        Returns:
            ``semantic``: ``[N, h, w] int64`` argmax class; ``semantic_prob``: ``[N, C, h,
            w]`` softmax; ``embedding``: ``[N, D, h, w]``.
        """
        prob = raw['semantic'].float().softmax(1)
        return {'semantic': prob.argmax(1), 'semantic_prob': prob,
                'embedding': raw['embedding'].float()}

    def infer(self, images: torch.Tensor) -> dict:
        """``decode(forward(images))``: what every engine computes."""
        return self.decode(self(images))
