"""HRNetV2's representation: every resolution upsampled to the finest and concatenated.

Wang et al. (HRNet, TPAMI 2020, section 3.3, "HRNetV2"): the four branch outputs at strides 4,
8, 16 and 32 are bilinearly upsampled to stride 4, concatenated, and mixed by a 1x1 conv with
batch norm and ReLU. Works over any backbone's ``c2..c5``, so an architecture written for
HRNet (CASNet) runs on another trunk with the same neck.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from panoptic_ros.errors import PanopticError

_INPUTS = ('c2', 'c3', 'c4', 'c5')


class ConcatNeck(nn.Module):
    """``{'c2': [N, C2, H/4, W/4], ..., 'c5': [N, C5, H/32, W/32]}`` -> ``[N, channels, H/4,
    W/4]``.

    Args:
        in_channels: channels of ``c2..c5`` (a backbone's ``out_channels``).
        channels: output channels (HRNetV2 keeps the sum of the inputs': 0 means that).
    """

    def __init__(self, in_channels: Mapping[str, int], channels: int = 0) -> None:
        super().__init__()
        absent = [k for k in _INPUTS if k not in in_channels]
        if absent:
            raise PanopticError(f'ConcatNeck needs in_channels for {list(_INPUTS)}, missing '
                                f'{absent} in {dict(in_channels)}')
        total = sum(int(in_channels[k]) for k in _INPUTS)
        self.channels = channels or total
        self.mix = nn.Sequential(nn.Conv2d(total, self.channels, 1, bias=False),
                                 nn.BatchNorm2d(self.channels), nn.ReLU(inplace=True))

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        size = features['c2'].shape[-2:]
        maps = [features['c2']] + [F.interpolate(features[k], size=size, mode='bilinear',
                                                 align_corners=False) for k in _INPUTS[1:]]
        return self.mix(torch.cat(maps, 1))
