"""Feature pyramid with 5 levels, P3..P7 at strides 8, 16, 32, 64 and 128.

As in FCOS and "Real-Time Panoptic Segmentation from Dense Detections" (section 4): 1x1
lateral convs on C3, C4, C5, a top-down path (nearest upsampling + add), 3x3 output convs,
then P6 = 3x3 stride-2 conv on P5 and P7 = 3x3 stride-2 conv on ReLU(P6).
"""

from __future__ import annotations

from typing import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from panoptic_ros.errors import PanopticError

_INPUTS = ('c3', 'c4', 'c5')


def top_down(laterals: list[Tensor]) -> list[Tensor]:
    """The FPN top-down pathway: from the coarsest map down, each finer lateral plus the merged
    map above it upsampled (nearest) to the lateral's size. Upsampling to a size, not by a
    factor of 2, handles odd sizes and keeps an ONNX export with static shapes exact.

    Args:
        laterals: ``[N, C, H_i, W_i]`` maps, finest first.

    Returns:
        The merged maps, same shapes, finest first.
    """
    merged = [laterals[-1]]
    for lateral in reversed(laterals[:-1]):
        top = F.interpolate(merged[0], size=lateral.shape[-2:], mode='nearest')
        merged.insert(0, lateral + top)
    return merged


class FPN(nn.Module):
    """Feature pyramid over the backbone maps ``c3``, ``c4``, ``c5``.

    Args:
        in_channels: channels of ``'c3'``, ``'c4'`` and ``'c5'`` (e.g. a backbone's
            ``out_channels``).
        out_channels: channels of every pyramid level.

    ``forward`` takes ``{'c3': [N, C3, H/8, W/8], 'c4': [N, C4, H/16, W/16],
    'c5': [N, C5, H/32, W/32]}`` float32 and returns ``[P3, P4, P5, P6, P7]``, level ``Pk``
    of shape ``[N, out_channels, H/2^k, W/2^k]`` (sizes rounded up, as strided convs do).
    """

    strides = (8, 16, 32, 64, 128)

    def __init__(self, in_channels: Mapping[str, int], out_channels: int = 256) -> None:
        super().__init__()
        absent = [k for k in _INPUTS if k not in in_channels]
        if absent:
            raise PanopticError(f'FPN needs in_channels for {list(_INPUTS)}, '
                                f'missing {absent} in {dict(in_channels)}')
        self.in_channels = {k: int(in_channels[k]) for k in _INPUTS}
        self.out_channels = out_channels
        self.lateral_convs = nn.ModuleList(
            nn.Conv2d(self.in_channels[k], out_channels, kernel_size=1) for k in _INPUTS)
        self.output_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1) for _ in _INPUTS)
        self.p6 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=2, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, features: Mapping[str, Tensor]) -> list[Tensor]:
        """Build ``[P3, P4, P5, P6, P7]`` (strides 8..128) from ``{'c3', 'c4', 'c5'}``."""
        laterals = [conv(features[k]) for conv, k in zip(self.lateral_convs, _INPUTS)]
        outs = [conv(m) for conv, m in zip(self.output_convs, top_down(laterals))]
        p6 = self.p6(outs[-1])
        p7 = self.p7(F.relu(p6))
        return [*outs, p6, p7]
