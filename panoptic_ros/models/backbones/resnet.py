"""ResNet-18/34/50 trunks returning the C3, C4 and C5 feature maps.

The module and parameter names follow torchvision's ``resnet`` (``conv1``, ``bn1``,
``layer1``..``layer4``, ``downsample.0``/``downsample.1``), so an ImageNet state dict such as
``resnet50-0676ba61.pth`` loads as is; its classifier (``fc.*``) is ignored because the trunk
has none. ResNet-50 uses the "v1.5" bottleneck (stride on the 3x3 conv).

The backbone of "Real-Time Panoptic Segmentation from Dense Detections" keeps batch norm
frozen, so :func:`build_resnet` replaces it by :class:`FrozenBatchNorm2d` by default.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from panoptic_ros.errors import PanopticError
from panoptic_ros.models.backbones.norm import (FrozenBatchNorm2d, read_state_dict,
                                                state_dict_problems)

_DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ('basic', (2, 2, 2, 2)),
    34: ('basic', (3, 4, 6, 3)),
    50: ('bottleneck', (3, 4, 6, 3)),
}

def _norm(channels: int, frozen: bool) -> nn.Module:
    return FrozenBatchNorm2d(channels) if frozen else nn.BatchNorm2d(channels)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34).

    Input ``[N, cin, H, W]``, output ``[N, planes, ceil(H/stride), ceil(W/stride)]``.
    """

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, frozen_bn: bool) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = _norm(planes, frozen_bn)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = _norm(planes, frozen_bn)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(_conv1x1(cin, planes, stride),
                                            _norm(planes, frozen_bn))

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, "v1.5"), 1x1 expand by 4, plus residual (ResNet-50).

    Input ``[N, cin, H, W]``, output ``[N, 4 * planes, ceil(H/stride), ceil(W/stride)]``.
    """

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, frozen_bn: bool) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = _norm(planes, frozen_bn)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = _norm(planes, frozen_bn)
        self.conv3 = _conv1x1(planes, cout)
        self.bn3 = _norm(cout, frozen_bn)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(_conv1x1(cin, cout, stride), _norm(cout, frozen_bn))

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


class ResNet(nn.Module):
    """ResNet trunk without the classifier: stem, ``layer1``..``layer4``.

    ``forward`` takes ``[N, 3, H, W]`` float32 (normalised RGB) and returns
    ``{'c2': [N, C2, H/4, W/4], 'c3': [N, C3, H/8, W/8], 'c4': [N, C4, H/16, W/16],
    'c5': [N, C5, H/32, W/32]}`` (sizes rounded up), the outputs of ``layer1`` .. ``layer4``;
    the channel counts are in :attr:`out_channels` and the strides in :attr:`strides`.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck],
                 layers: tuple[int, int, int, int], frozen_bn: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = _norm(64, frozen_bn)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        cin = 64
        stages = []
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            stage = []
            for j in range(blocks):
                stage.append(block(cin, planes, stride if j == 0 else 1, frozen_bn))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        e = block.expansion
        self.out_channels: dict[str, int] = {'c2': 64 * e, 'c3': 128 * e, 'c4': 256 * e,
                                             'c5': 512 * e}
        self.strides: dict[str, int] = {'c2': 4, 'c3': 8, 'c4': 16, 'c5': 32}
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def freeze(self, stages: int) -> None:
        """``requires_grad=False`` on the stem (``stages >= 1``) and on ``layer1`` ..
        ``layer{stages - 1}`` (so ``stages`` = k freezes what ends at output ``c{k}``)."""
        if stages >= 1:
            self.conv1.requires_grad_(False)
            self.bn1.requires_grad_(False)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4)[:max(stages - 1, 0)]:
            layer.requires_grad_(False)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              local_metadata: dict[str, Any], strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        # An ImageNet checkpoint carries the classifier, which the trunk does not have.
        for key in [k for k in state_dict if k.startswith(prefix + 'fc.')]:
            del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Map ``[N, 3, H, W]`` float32 to ``{'c2', 'c3', 'c4', 'c5'}`` at strides 4 to 32."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return {'c2': c2, 'c3': c3, 'c4': c4, 'c5': c5}


def _load_weights(model: ResNet, path: str | os.PathLike[str], depth: int) -> None:
    state = {k: v for k, v in read_state_dict(path, what='backbone weights').items() if not k.startswith('fc.')}
    problems = state_dict_problems(model.state_dict(), state)
    if problems:
        raise PanopticError(f'backbone weights file {os.fspath(path)!r} does not match '
                            f'ResNet-{depth}: ' + '; '.join(problems))
    model.load_state_dict(state, strict=False)


def build_resnet(depth: int, *, weights: str | os.PathLike[str] | None = None,
                 frozen_bn: bool = True, freeze_stem: bool = True) -> ResNet:
    """Build a ResNet-18, -34 or -50 trunk, optionally loading a torchvision-format state dict.

    Args:
        depth: 18, 34 or 50.
        weights: path of a state dict saved with ``torch.save`` (e.g. torchvision's
            ``resnet50-0676ba61.pth``). It is read with ``weights_only=True``; a leading
            ``module.`` on keys is stripped, ``fc.*`` and ``num_batches_tracked`` are ignored.
            ``None`` keeps the random (Kaiming) initialisation.
        frozen_bn: use :class:`FrozenBatchNorm2d` instead of ``nn.BatchNorm2d``.
        freeze_stem: set ``requires_grad=False`` on ``conv1`` and ``bn1``.

    Returns:
        The model; ``forward`` maps ``[N, 3, H, W]`` float32 to ``{'c2': [N, C, H/4, W/4],
        'c3': [N, C, H/8, W/8], 'c4': [N, C, H/16, W/16], 'c5': [N, C, H/32, W/32]}``.

    Raises:
        PanopticError: unknown depth, or a weights file that is missing, unreadable, not a
            tensor-only state dict, or does not match the architecture.
    """
    if depth not in _DEPTHS:
        raise PanopticError(f'ResNet depth must be one of {sorted(_DEPTHS)}, got {depth!r}')
    kind, layers = _DEPTHS[depth]
    model = ResNet(BasicBlock if kind == 'basic' else Bottleneck, layers, frozen_bn=frozen_bn)
    if weights is not None:
        _load_weights(model, weights, depth)
    if freeze_stem:
        model.freeze(1)
    return model
