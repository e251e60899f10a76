"""Engine interface and the factory that picks one by name."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from panoptic_ros.errors import PanopticError

ENGINES = ('torch', 'onnxruntime', 'tensorrt')


class Engine(Protocol):
    name: str
    device: torch.device
    input_size: tuple[int, int]
    output_names: tuple[str, ...]

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[N, 3, H, W] uint8`` on ``device`` -> engine outputs on ``device``."""


def create_engine(name: str, weights: str | Path, *, device: str = 'cpu',
                  precision: str = 'fp32', batch: int = 1, cache_dir: str | Path | None = None,
                  size: tuple[int, int] | None = None
                  ) -> tuple[Engine, 'ModelSpec', dict]:  # noqa: F821
    """An engine by name for a weights file; also returns the model spec and card.

    ``size`` overrides the network input size of the card (fully convolutional models run at
    any multiple of 128; accuracy is best at the size they were trained for).

    ``onnxruntime`` and ``tensorrt`` export (and build) what they need on first use and cache it
    under ``cache_dir`` (default: ``~/.cache/panoptic_ros``), keyed by the weights' hash.
    """
    if name not in ENGINES:
        raise PanopticError(f'unknown engine {name!r}; expected one of {list(ENGINES)}')
    if precision not in ('fp32', 'fp16'):
        raise PanopticError(f'precision must be fp32 or fp16, got {precision!r}')
    if name == 'torch':
        from panoptic_ros.engines.torch_engine import TorchEngine
        from panoptic_ros.weights import load_model

        model, spec, card = load_model(weights)
        engine = TorchEngine(model, size or spec.input_size, device=device, precision=precision)
        return engine, spec, card
    from panoptic_ros.export.artifacts import cached_onnx
    from panoptic_ros.weights import read_card

    card = read_card(weights)
    spec = card['spec']
    onnx_path = cached_onnx(weights, batch=batch, cache_dir=cache_dir, size=size)
    if name == 'onnxruntime':
        from panoptic_ros.engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(onnx_path, device=device), spec, card
    from panoptic_ros.engines.tensorrt_engine import TensorRTEngine
    from panoptic_ros.export.tensorrt import build_engine

    plan = build_engine(onnx_path, fp16=precision == 'fp16', cache_dir=cache_dir)
    return TensorRTEngine(plan, device=device), spec, card
