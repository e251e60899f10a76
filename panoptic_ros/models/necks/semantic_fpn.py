"""Semantic-FPN necks: a top-down pyramid at strides 4-32 and the Panoptic-FPN semantic branch.

:class:`TopDownFPN` is the feature pyramid of Lin et al. over the backbone maps ``c2..c5``
(strides 4, 8, 16, 32; no extra coarse levels), with GroupNorm after every conv as in
detectron2's ``FPN(norm='GN')``.

:class:`SemanticFPN` is the light-weight asymmetric decoder of Kirillov et al. (Panoptic FPN,
section 3.2): each pyramid level goes through ``log2(stride / 4)`` upsampling stages (conv,
GroupNorm, ReLU, 2x bilinear upsampling; the 1/4 level through one conv without upsampling), and
the levels, all at 1/4 now, are summed. Panoptic FPN uses 3x3 convs; "Panoptic segmentation from
semantic segmentation and instance contours" (section III-A) describes 1x1 convs and 128
channels, its defaults here (``kernel_size=1``).

:class:`SemanticFPNNecks` holds one shared neck or one neck per head (the choice of that paper's
Table V), so any architecture with several dense heads picks either by configuration.

Upsampling goes to the size of the next finer level (not by a fixed factor), so odd sizes work
and an ONNX export with static shapes is exact.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from panoptic_ros.errors import PanopticError
from panoptic_ros.models.necks.fpn import top_down

_INPUTS = ('c2', 'c3', 'c4', 'c5')


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with ``gcd(channels, groups)`` groups (32 for the usual 128/256 channels)."""
    return nn.GroupNorm(math.gcd(channels, groups), channels)


def conv_gn_relu(in_channels: int, out_channels: int, kernel_size: int,
                 groups: int = 32) -> nn.Sequential:
    """``kernel_size`` conv (no bias), GroupNorm, ReLU: ``[N, in, H, W] -> [N, out, H, W]``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        group_norm(out_channels, groups), nn.ReLU(inplace=True))


class TopDownFPN(nn.Module):
    """Feature pyramid ``P2..P5`` over ``c2..c5``.

    Args:
        in_channels: channels of ``'c2'``..``'c5'`` (a backbone's ``out_channels``).
        out_channels: channels of every level (256 in the contours paper, section III-A).
        groups: GroupNorm groups (32).

    ``forward`` takes ``{'c2': [N, C2, H/4, W/4], ..., 'c5': [N, C5, H/32, W/32]}`` and
    returns ``[P2, P3, P4, P5]``, level ``Pk`` ``[N, out_channels, H/2^k, W/2^k]`` (the sizes
    of the inputs), finest first.
    """

    strides = (4, 8, 16, 32)

    def __init__(self, in_channels: Mapping[str, int], out_channels: int = 256,
                 groups: int = 32) -> None:
        super().__init__()
        absent = [k for k in _INPUTS if k not in in_channels]
        if absent:
            raise PanopticError(f'TopDownFPN needs in_channels for {list(_INPUTS)}, '
                                f'missing {absent} in {dict(in_channels)}')
        self.out_channels = out_channels
        self.lateral = nn.ModuleList(nn.Sequential(
            nn.Conv2d(int(in_channels[k]), out_channels, 1, bias=False),
            group_norm(out_channels, groups)) for k in _INPUTS)
        self.output = nn.ModuleList(nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            group_norm(out_channels, groups)) for _ in _INPUTS)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)

    def forward(self, features: Mapping[str, Tensor]) -> list[Tensor]:
        laterals = [conv(features[k]) for conv, k in zip(self.lateral, _INPUTS)]
        return [conv(m) for conv, m in zip(self.output, top_down(laterals))]


class SemanticFPN(nn.Module):
    """Panoptic-FPN semantic branch: every level upsampled to the finest one and summed.

    Args:
        in_channels: channels of each pyramid level.
        channels: output channels (128 in both papers).
        strides: pyramid strides, finest first, each twice the previous (4, 8, 16, 32).
        kernel_size: conv size of the upsampling stages: 1 (contours paper, section III-A) or
            3 (Panoptic FPN).
        groups: GroupNorm groups.

    ``forward`` takes ``[P2, ..., P5]`` (``[N, in_channels, H/s, W/s]``, finest first) and
    returns ``[N, channels, H/4, W/4]`` (the size of the finest level).
    """

    def __init__(self, in_channels: int, channels: int = 128,
                 strides: Sequence[int] = (4, 8, 16, 32), kernel_size: int = 1,
                 groups: int = 32) -> None:
        super().__init__()
        if kernel_size not in (1, 3):
            raise PanopticError(f'SemanticFPN kernel_size must be 1 or 3, got {kernel_size!r}')
        strides = tuple(int(s) for s in strides)
        if any(b != 2 * a for a, b in zip(strides, strides[1:])):
            raise PanopticError(f'SemanticFPN strides must double level to level, got {strides}')
        self.channels = channels
        self.strides = strides
        # level k: max(1, k) stages (the finest level: one conv and no upsampling)
        self.levels = nn.ModuleList(
            nn.ModuleList(conv_gn_relu(in_channels if i == 0 else channels, channels,
                                       kernel_size, groups) for i in range(max(1, k)))
            for k in range(len(strides)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        if len(features) != len(self.levels):
            raise PanopticError(f'SemanticFPN expects {len(self.levels)} levels, got '
                                f'{len(features)}')
        out = None
        for k, (stages, x) in enumerate(zip(self.levels, features)):
            for i, stage in enumerate(stages):
                x = stage(x)
                if k > 0:          # stage i of level k brings it to level k - i - 1
                    x = F.interpolate(x, size=features[k - i - 1].shape[-2:], mode='bilinear',
                                      align_corners=False)
            out = x if out is None else out + x
        return out


class SemanticFPNNecks(nn.Module):
    """One :class:`SemanticFPN` shared by every head, or one per head.

    Args:
        heads: head names, e.g. ``('semantic', 'contour', 'center')``.
        shared: one neck for all heads (True) or one neck each.
        **neck: :class:`SemanticFPN` arguments.

    ``forward(features)`` returns ``{head: [N, channels, H/4, W/4]}`` (the same tensor for
    every head when shared).
    """

    def __init__(self, heads: Sequence[str], *, shared: bool, **neck) -> None:
        super().__init__()
        self.heads = tuple(heads)
        self.shared = shared
        names = ('shared',) if shared else self.heads
        self.necks = nn.ModuleDict({n: SemanticFPN(**neck) for n in names})
        self.channels = self.necks[names[0]].channels

    def forward(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        if self.shared:
            x = self.necks['shared'](features)
            return {h: x for h in self.heads}
        return {h: self.necks[h](features) for h in self.heads}
