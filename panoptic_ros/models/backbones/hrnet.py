"""HRNet (Wang et al., "Deep High-Resolution Representation Learning for Visual Recognition",
TPAMI 2020): four parallel branches at strides 4, 8, 16 and 32 with repeated multi-resolution
fusion, the backbone CASNet uses (section III-A).

Layout (section 3 of the HRNet paper): a stem of two stride-2 3x3 convs (64 channels); stage 1
of bottleneck blocks at stride 4 (256 channels out); then stages 2, 3, 4 with 2, 3, 4 branches
of ``W, 2W, 4W, 8W`` channels, each stage a sequence of modules (basic blocks per branch, then
every branch fused into every other: 1x1 conv + bilinear upsampling from coarser branches,
chains of stride-2 3x3 convs from finer ones, summed, ReLU). A transition before each stage
adapts the branches and opens the new, coarser one from the coarsest existing branch.

The four branch outputs are ``c2..c5`` (``W, 2W, 4W, 8W`` channels), so every neck works on
HRNet; HRNetV2's own fusion (upsample and concatenate) is
:class:`~panoptic_ros.models.necks.concat.ConcatNeck`.

Module and parameter names follow the official implementation (``conv1``, ``bn1``,
``conv2``, ``bn2``, ``layer1``, ``transition1..3``, ``stage2..4`` with ``branches`` and
``fuse_layers``), so a state dict of the official ImageNet or Cityscapes models loads, their
heads (``incre_modules``, ``downsamp_modules``, ``final_layer``, ``classifier``,
``last_layer``) ignored. None ships with any installable package here: train from scratch or
give a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from panoptic_ros.errors import PanopticError
from panoptic_ros.models.backbones.norm import (FrozenBatchNorm2d, read_state_dict,
                                                state_dict_problems)
from panoptic_ros.models.backbones.resnet import BasicBlock, Bottleneck

# What the official checkpoints carry besides the trunk.
_HEAD_PREFIXES = ('incre_modules.', 'downsamp_modules.', 'final_layer.', 'classifier.',
                  'last_layer.', 'aux_head.', 'cls_head.')


@dataclass(frozen=True)
class HRNetConfig:
    """Width ``W`` and depth of each stage (modules, blocks per branch)."""

    width: int
    stage1_blocks: int = 4
    modules: tuple[int, int, int] = (1, 4, 3)      # stages 2, 3, 4
    blocks: int = 4                                 # basic blocks per branch and module


CONFIGS = {
    'hrnet_w18': HRNetConfig(18),
    'hrnet_w18_small': HRNetConfig(18, stage1_blocks=2, modules=(1, 3, 2), blocks=2),  # v2
    'hrnet_w48': HRNetConfig(48),
}


def _norm(channels: int, frozen: bool) -> nn.Module:
    return FrozenBatchNorm2d(channels) if frozen else nn.BatchNorm2d(channels)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, frozen: bool,
             relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                               _norm(cout, frozen)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Basic blocks on every branch, then every branch fused into every other.

    ``forward`` takes and returns a list of ``[N, C_i, H_i, W_i]``, finest first.
    """

    def __init__(self, channels: list[int], blocks: int, frozen: bool) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c, c, 1, frozen) for _ in range(blocks)))
            for c in channels)
        n = len(channels)
        fuse = []
        for i in range(n):
            row: list[nn.Module | None] = []
            for j in range(n):
                if j > i:            # coarser: 1x1 conv, upsampled in forward
                    row.append(_conv_bn(channels[j], channels[i], 1, 1, frozen, relu=False))
                elif j == i:
                    row.append(None)
                else:                # finer: i - j stride-2 3x3 convs
                    steps = [_conv_bn(channels[j], channels[j], 3, 2, frozen, relu=True)
                             for _ in range(i - j - 1)]
                    steps.append(_conv_bn(channels[j], channels[i], 3, 2, frozen, relu=False))
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                z = layer(xs[j])
                if j > i:
                    z = F.interpolate(z, size=xs[i].shape[-2:], mode='bilinear',
                                      align_corners=False)
                y = y + z
            out.append(self.relu(y))
        return out


def _transition(before: list[int], after: list[int], frozen: bool) -> nn.ModuleList:
    """Adapt existing branches (3x3 conv where the width changes) and open new ones from the
    coarsest existing branch by stride-2 3x3 convs."""
    layers: list[nn.Module | None] = []
    for i, c in enumerate(after):
        if i < len(before):
            layers.append(None if before[i] == c else
                          _conv_bn(before[i], c, 3, 1, frozen, relu=True))
        else:
            steps = i + 1 - len(before)
            layers.append(nn.Sequential(*(
                _conv_bn(before[-1], c if k == steps - 1 else before[-1], 3, 2, frozen,
                         relu=True) for k in range(steps))))
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """HRNet trunk.

    ``forward`` takes ``[N, 3, H, W]`` float32 (normalised RGB) and returns ``{'c2': [N, W,
    H/4, W/4], 'c3': [N, 2W, H/8, W/8], 'c4': [N, 4W, H/16, W/16], 'c5': [N, 8W, H/32,
    W/32]}`` (sizes rounded up), the four branches after stage 4.
    """

    def __init__(self, config: HRNetConfig, frozen_bn: bool = False) -> None:
        super().__init__()
        w = config.width
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = _norm(64, frozen_bn)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = _norm(64, frozen_bn)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(*(Bottleneck(64 if k == 0 else 256, 64, 1, frozen_bn)
                                      for k in range(config.stage1_blocks)))
        widths = [[w, 2 * w], [w, 2 * w, 4 * w], [w, 2 * w, 4 * w, 8 * w]]
        before = [256]
        for s, (chans, modules) in enumerate(zip(widths, config.modules), start=2):
            setattr(self, f'transition{s - 1}', _transition(before, chans, frozen_bn))
            setattr(self, f'stage{s}', nn.Sequential(*(
                HighResolutionModule(chans, config.blocks, frozen_bn) for _ in range(modules))))
            before = chans
        self.out_channels = {f'c{k + 2}': c for k, c in enumerate(widths[-1])}
        self.strides = {'c2': 4, 'c3': 8, 'c4': 16, 'c5': 32}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

    def freeze(self, stages: int) -> None:
        """``requires_grad=False`` on the stem (``stages >= 1``) and on ``layer1`` (``>= 2``)
        and stages 2.. (``>= 3``: through stage ``stages - 1``): HRNet's branches run side by
        side, so what ends at ``c{k}`` is everything up to stage ``k - 1``."""
        if stages >= 1:
            for m in (self.conv1, self.bn1, self.conv2, self.bn2):
                m.requires_grad_(False)
        if stages >= 2:
            self.layer1.requires_grad_(False)
        for s in range(2, min(stages, 5)):
            getattr(self, f'transition{s - 1}').requires_grad_(False)
            getattr(self, f'stage{s}').requires_grad_(False)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              local_metadata: dict[str, Any], strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        for key in [k for k in state_dict if k[len(prefix):].startswith(_HEAD_PREFIXES)]:
            del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for s in (2, 3, 4):
            transition = getattr(self, f'transition{s - 1}')
            xs = [xs[i] if t is None else t(xs[min(i, len(xs) - 1)])
                  for i, t in enumerate(transition)]
            xs = getattr(self, f'stage{s}')(xs)
        return dict(zip(('c2', 'c3', 'c4', 'c5'), xs))


def build_hrnet(name: str, *, weights: str | os.PathLike[str] | None = None,
                frozen_bn: bool = False) -> HRNet:
    """Build ``hrnet_w18``, ``hrnet_w18_small`` (v2) or ``hrnet_w48``, optionally loading a
    state dict in the official layout (read with ``weights_only=True``; heads ignored).

    Raises:
        PanopticError: unknown name, or a weights file that is missing, unreadable or does not
            match the architecture (naming the keys).
    """
    if name not in CONFIGS:
        raise PanopticError(f'unknown HRNet {name!r}; available: {sorted(CONFIGS)}')
    model = HRNet(CONFIGS[name], frozen_bn=frozen_bn)
    if weights is not None:
        state = {k: v for k, v in read_state_dict(weights, what='backbone weights').items()
                 if not k.startswith(_HEAD_PREFIXES)}
        problems = state_dict_problems(model.state_dict(), state)
        if problems:
            raise PanopticError(f'backbone weights file {os.fspath(weights)!r} does not match '
                                f'{name}: ' + '; '.join(problems))
        model.load_state_dict(state, strict=False)
    return model
