"""Model registry: architecture name -> builder, post-processing and training objective.

Every entry point (CLIs, export, the node, tests) goes through :func:`build_model` and
:func:`get_architecture`; nothing branches on architecture names elsewhere. An architecture
registers three things:

- ``build(**kwargs) -> torch.nn.Module``: keyword arguments only (what a config's ``model:``
  section maps to, see :mod:`panoptic_ros.config`); ``forward(images)`` returns raw tensors,
  ``decode(raw)`` the static-shape engine outputs named by ``output_names`` (the part of
  inference that is exported), ``infer(images) = decode(forward(images))``;
- ``postprocess(**params)``: a callable ``(outputs, thing_classes, is_thing, out_size) ->
  list[PanopticResult]`` of pure torch functions, shared by every engine;
- ``objective(num_classes=, thing_classes=, **params)``: training targets (``targets(semantic,
  instance)``) and losses (``__call__(raw, targets) -> dict`` with a ``total``);
- ``small``: builder keyword arguments of a small instance (a few hundred thousand
  parameters), what the registry-parametrised tests build and train for every architecture.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from panoptic_ros.errors import PanopticError

_ARCHITECTURES: dict[str, 'Architecture'] = {}
_ARCHITECTURE_MODULES = ('panoptic_ros.models.dense_detections',
                         'panoptic_ros.models.contours', 'panoptic_ros.models.casnet',
                         'panoptic_ros.models.panonet', 'panoptic_ros.models.oanet')


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable
    postprocess: Callable
    objective: Callable
    small: dict


def register_model(name: str, *, postprocess: Callable, objective: Callable,
                   small: dict | None = None) -> Callable[[Callable], Callable]:
    """Decorator registering a builder under ``name``; a duplicate name raises."""
    def wrap(builder: Callable) -> Callable:
        if name in _ARCHITECTURES:
            raise PanopticError(f'model {name!r} is already registered '
                                f'(by {_ARCHITECTURES[name].build.__module__})')
        _ARCHITECTURES[name] = Architecture(name, builder, postprocess, objective,
                                            dict(small or {}))
        return builder
    return wrap


def _load_architectures() -> None:
    for module in _ARCHITECTURE_MODULES:
        importlib.import_module(module)


def available_models() -> list[str]:
    _load_architectures()
    return sorted(_ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    _load_architectures()
    try:
        return _ARCHITECTURES[name]
    except KeyError:
        raise PanopticError(f'unknown model {name!r}; available: '
                            f'{sorted(_ARCHITECTURES)}') from None


def _call(what: str, name: str, fn: Callable, kwargs: dict):
    try:
        return fn(**kwargs)
    except (TypeError, ValueError) as exc:
        raise PanopticError(f'model {name!r}: bad {what} arguments: {exc}') from exc


def build_model(name: str, **kwargs):
    """Build architecture ``name`` with its keyword arguments."""
    return _call('config', name, get_architecture(name).build, kwargs)


def build_postprocess(name: str, **kwargs):
    return _call('postprocess', name, get_architecture(name).postprocess, kwargs)


def build_objective(name: str, **kwargs):
    return _call('training objective', name, get_architecture(name).objective, kwargs)
