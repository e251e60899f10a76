"""What every backbone uses: its input normalisation, frozen batch norm, reading tensor-only
state dicts and checking that one fits a module."""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from panoptic_ros.errors import PanopticError

# How many key names an error message lists before it says how many more there are.
_SHOWN_KEYS = 5


class PixelNormalize(nn.Module):
    """A backbone's input normalisation inside the graph: ``[N, 3, H, W]`` images (0-255, any
    dtype) to ``(x - mean) / std`` in the module's float dtype.

    The statistics are non-persistent buffers: they belong to the backbone (its
    :class:`~panoptic_ros.models.backbones.BackboneSpec`), not to a weights file.
    """

    def __init__(self, mean, std) -> None:
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return (images.to(self.mean.dtype) - self.mean) / self.std


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters, all stored as buffers.

    Computes ``(x - running_mean) / sqrt(running_var + eps) * weight + bias`` per channel,
    which is what ``nn.BatchNorm2d`` computes in eval mode, but nothing is trained or updated.
    The buffer names match ``nn.BatchNorm2d`` so its state dict loads; the
    ``num_batches_tracked`` entries of such a state dict are accepted and dropped.

    Input and output: ``[N, C, H, W]`` float32.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer('weight', torch.ones(num_features))
        self.register_buffer('bias', torch.zeros(num_features))
        self.register_buffer('running_mean', torch.zeros(num_features))
        self.register_buffer('running_var', torch.ones(num_features))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              local_metadata: dict[str, Any], strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        state_dict.pop(prefix + 'num_batches_tracked', None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` of shape ``[N, C, H, W]``; returns the same shape."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f'{self.num_features}, eps={self.eps}'


def key_list(keys: list[str]) -> str:
    """The first few of ``keys`` for an error message, and how many more there are."""
    shown = ', '.join(keys[:_SHOWN_KEYS])
    more = len(keys) - _SHOWN_KEYS
    return shown + (f' (and {more} more)' if more > 0 else '')


def state_dict_problems(own: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> list[str]:
    """What keeps ``state`` from loading exactly into a module whose state dict is ``own``:
    one phrase each for missing keys, unexpected keys and wrong shapes (``num_batches_tracked``
    entries, present or absent depending on the norm layer, are ignored); empty when it fits.
    """
    skip = 'num_batches_tracked'
    missing = [k for k in own if k not in state and not k.endswith(skip)]
    unexpected = [k for k in state if k not in own and not k.endswith(skip)]
    wrong = [f'{k} {tuple(state[k].shape)} != {tuple(v.shape)}'
             for k, v in own.items() if k in state and state[k].shape != v.shape]
    return [f'{len(keys)} {what}: {key_list(keys)}' for what, keys in (
        ('missing keys', missing), ('unexpected keys', unexpected),
        ('keys with a wrong shape (file != model)', wrong)) if keys]


def read_state_dict(path: str | os.PathLike[str], *, what: str) -> dict[str, Tensor]:
    """Read a tensor-only state dict (``torch.load(weights_only=True)``, so nothing is
    unpickled); a leading ``module.`` on keys (DataParallel) is stripped.

    Raises:
        PanopticError: naming ``what`` and the file, when it is missing, unreadable or not a
            mapping of name -> tensor.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PanopticError(f'{what} file {path!r} does not exist or is not a file')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch.load raises many types for corrupt or unsafe files.
        raise PanopticError(f'cannot read {what} file {path!r} as a tensor-only state dict '
                            f'(weights_only=True): {exc}') from exc
    if not isinstance(obj, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise PanopticError(f'{what} file {path!r} holds a {type(obj).__name__}, expected a '
                            'state dict of name -> tensor')
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in obj.items()}
