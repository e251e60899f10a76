"""ICNet (Zhao et al., "ICNet for Real-Time Semantic Segmentation on High-Resolution Images",
ECCV 2018) over any registered trunk: the image cascade PanoNet builds both its branches from.

Three inputs of one image (section 3.2 of ICNet, Fig. 2):

* full resolution: a light branch of three stride-2 3x3 convs (32, 32, 64 channels) -> 1/8;
* 1/2 resolution: the trunk's ``c3`` (stride 8 of that input) -> 1/16 of the image;
* 1/4 resolution: ICNet continues the 1/2 branch's trunk on its 2x-downsampled features; with
  a trunk taken whole, that is the same pass's ``c4`` (stride 16 of the 1/2 input) -> 1/32 of
  the image, followed by a pyramid pooling module.

Cascade feature fusion units (CFF, section 3.3) merge 1/32 into 1/16 and that into 1/8: the
coarser map upsampled 2x and through a dilated 3x3 conv, the finer one through a 1x1 conv,
summed, ReLU; each CFF also gives an auxiliary output of the coarser map for cascade label
guidance (section 3.4). The 1/8 result is upsampled 2x and classified at 1/4.

The pyramid pooling uses fixed average-pooling windows computed from the feature size (for a
bin count ``b`` over a length ``L``: stride ``L // b``, window ``L - (b - 1)(L // b)``), so
the exported graph has static AveragePool ops at any input size; adaptive pooling with bins
that do not divide the size does not export.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from panoptic_ros.models.backbones import build_backbone

PPM_BINS = (1, 2, 3, 6)


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1,
                  relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride,
                                         dilation * (kernel // 2), dilation, bias=False),
                               nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def static_pool(x: Tensor, bins: int) -> Tensor:
    """``[N, C, H, W] -> [N, C, bins, bins]`` average pooling with fixed windows covering the
    whole map (equal to adaptive pooling when ``bins`` divides the size)."""
    # Python ints: the windows are constants of an exported graph (static shapes)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    bh, bw = min(bins, h), min(bins, w)
    sh, sw = h // bh, w // bw
    return F.avg_pool2d(x, (h - (bh - 1) * sh, w - (bw - 1) * sw), (sh, sw))


class PyramidPooling(nn.Module):
    """ICNet's PPM: the map plus its average pools at ``PPM_BINS`` upsampled back, summed,
    then a 1x1 conv: ``[N, C, h, w] -> [N, out, h, w]``."""

    def __init__(self, channels: int, out: int) -> None:
        super().__init__()
        self.proj = _conv_bn_relu(channels, out, 1)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        y = x
        for b in PPM_BINS:
            y = y + F.interpolate(static_pool(x, b), size=size, mode='bilinear',
                                  align_corners=False)
        return self.proj(y)


class CascadeFeatureFusion(nn.Module):
    """CFF: ``coarse [N, Cc, h, w]``, ``fine [N, Cf, 2h, 2w]`` -> ``[N, out, 2h, 2w]`` and the
    auxiliary output ``[N, classes, 2h, 2w]`` of the upsampled coarse map."""

    def __init__(self, coarse: int, fine: int, out: int, classes: int) -> None:
        super().__init__()
        self.coarse = _conv_bn_relu(coarse, out, 3, dilation=2, relu=False)
        self.fine = _conv_bn_relu(fine, out, 1, relu=False)
        self.aux = nn.Conv2d(coarse, classes, 1)

    def forward(self, coarse: Tensor, fine: Tensor) -> tuple[Tensor, Tensor]:
        up = F.interpolate(coarse, size=fine.shape[-2:], mode='bilinear', align_corners=False)
        return torch.relu(self.coarse(up) + self.fine(fine)), self.aux(up)


class ICNet(nn.Module):
    """The cascade over a trunk from :mod:`panoptic_ros.models.backbones`.

    Args:
        out_channels: channels of the outputs (classes, or the embedding size).
        backbone, backbone_weights, pretrained, frozen_bn, frozen_stages: the trunk (see
            :func:`~panoptic_ros.models.backbones.build_backbone`).
        channels: CFF width (128 in ICNet); the PPM projects to ``2 * channels``.

    ``forward`` takes ``[N, 3, H, W]`` (normalised as the trunk expects) and returns
    ``[out_1/4, aux_1/8, aux_1/16]``: ``[N, out, H/4, W/4]``, ``[N, out, H/8, W/8]``, ``[N,
    out, H/16, W/16]`` (sizes rounded up; the auxiliary outputs are the cascade guidance).
    """

    def __init__(self, out_channels: int, *, backbone: str = 'resnet50',
                 backbone_weights: str | None = None, pretrained: bool = False,
                 frozen_bn: bool | None = None, frozen_stages: int | None = None,
                 channels: int = 128) -> None:
        super().__init__()
        self.trunk = build_backbone(backbone, weights=backbone_weights, pretrained=pretrained,
                                    frozen_bn=frozen_bn, frozen_stages=frozen_stages)
        c3, c4 = self.trunk.out_channels['c3'], self.trunk.out_channels['c4']
        self.light = nn.Sequential(_conv_bn_relu(3, 32, 3, 2), _conv_bn_relu(32, 32, 3, 2),
                                   _conv_bn_relu(32, 64, 3, 2))
        self.ppm = PyramidPooling(c4, 2 * channels)
        self.cff_24 = CascadeFeatureFusion(2 * channels, c3, channels, out_channels)
        self.cff_12 = CascadeFeatureFusion(channels, 64, channels, out_channels)
        self.classifier = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        h, w = x.shape[-2:]
        half = F.interpolate(x, size=(-(-h // 2), -(-w // 2)), mode='bilinear',
                             align_corners=False)
        feats = self.trunk(half)
        f32 = self.ppm(feats['c4'])                       # 1/32 of the image
        f16, aux16 = self.cff_24(f32, feats['c3'])        # 1/16
        f8, aux8 = self.cff_12(f16, self.light(x))        # 1/8
        quarter = F.interpolate(f8, size=(-(-h // 4), -(-w // 4)), mode='bilinear',
                                align_corners=False)
        return [self.classifier(quarter), aux8, aux16]
