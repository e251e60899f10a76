"""Model registry: architecture name -> builder.

Every entry point (CLIs, export, the node, tests) builds models through :func:`build_model`;
nothing branches on architecture names elsewhere. A builder takes keyword arguments only (what
its config's ``model:`` section maps to) and returns a ``torch.nn.Module`` whose ``forward``
returns raw tensors; post-processing lives beside it as pure functions.
"""

from __future__ import annotations

from typing import Callable

from panoptic_ros.errors import PanopticError

_BUILDERS: dict[str, Callable] = {}
_ARCHITECTURE_MODULES = ('panoptic_ros.models.dense_detections.model',)


def register_model(name: str) -> Callable[[Callable], Callable]:
    """Decorator registering ``builder`` under ``name``; a duplicate name raises."""
    def wrap(builder: Callable) -> Callable:
        if name in _BUILDERS:
            raise PanopticError(f'model {name!r} is already registered '
                                f'(by {_BUILDERS[name].__module__})')
        _BUILDERS[name] = builder
        return builder
    return wrap


def _load_architectures() -> None:
    import importlib

    for module in _ARCHITECTURE_MODULES:
        importlib.import_module(module)


def available_models() -> list[str]:
    _load_architectures()
    return sorted(_BUILDERS)


def build_model(name: str, **kwargs):
    """Build architecture ``name`` with its keyword arguments."""
    _load_architectures()
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise PanopticError(f'unknown model {name!r}; available: {sorted(_BUILDERS)}') from None
    try:
        return builder(**kwargs)
    except TypeError as exc:
        raise PanopticError(f'model {name!r}: bad config arguments: {exc}') from exc
