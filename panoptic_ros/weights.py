"""Deployable weights: one safetensors file carrying its model card.

The file's metadata holds ``panoptic_ros.card``: JSON with the model spec (architecture,
labels, input size, constructor and post-processing parameters; see
:class:`~panoptic_ros.config.ModelSpec`), the class names, the training recipe and the
measured metrics. A weights file alone rebuilds and describes its model; safetensors never
runs code while loading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from panoptic_ros.config import ModelSpec
from panoptic_ros.errors import PanopticError
from panoptic_ros.fileio import atomic_write_bytes
from panoptic_ros.share import data_dir

CARD_KEY = 'panoptic_ros.card'
# The architecture whose bundled model runs when no model is named.
DEFAULT_ARCHITECTURE = 'dense_detections'


def save_weights(path: str | Path, model: torch.nn.Module, spec: ModelSpec, card: dict,
                 half: bool = False) -> None:
    """Write ``model``'s parameters and buffers (fp16 when ``half``) with its card, atomically."""
    from safetensors.torch import save

    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu()
             for k, v in model.state_dict().items()}
    meta = {CARD_KEY: json.dumps({**card, 'model': spec.to_dict(),
                                  'classes': list(spec.label_set().names),
                                  'dtype': 'float16' if half else 'float32'})}
    atomic_write_bytes(path, save(state, metadata=meta))


def read_card(path: str | Path) -> dict:
    """The card of a weights file, without reading the tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise PanopticError(f'weights file {path} does not exist')
    try:
        with safe_open(str(path), framework='pt') as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise PanopticError(f'weights file {path} is not a safetensors file written by '
                            f'panoptic train ({exc})') from exc
    if CARD_KEY not in meta:
        raise PanopticError(f'weights file {path} has no {CARD_KEY!r} metadata: expected a '
                            f'file written by panoptic train')
    try:
        card = json.loads(meta[CARD_KEY])
        card['spec'] = ModelSpec.from_dict(card['model'])
    except (json.JSONDecodeError, KeyError, PanopticError) as exc:
        raise PanopticError(f'weights file {path}: unreadable model card: {exc}') from exc
    return card


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors (floating ones as float32) and the card of a weights file."""
    from safetensors.torch import load_file

    card = read_card(path)
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise PanopticError(f'weights file {path}: cannot read tensors ({exc})') from exc
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, card


def load_model(path: str | Path, device: str | torch.device = 'cpu'
               ) -> tuple[torch.nn.Module, ModelSpec, dict[str, Any]]:
    """Model (eval mode, float32, on ``device``), spec and card of a weights file."""
    from panoptic_ros.models.backbones.norm import state_dict_problems

    state, card = read_weights(path)
    spec = card['spec']
    model = spec.build(initial_weights=False)
    problems = state_dict_problems(model.state_dict(), state)
    if problems:
        raise PanopticError(f'weights file {path} does not fit a {spec.architecture} model '
                            f'with {spec.params}: ' + '; '.join(problems))
    model.load_state_dict(state, strict=False)      # num_batches_tracked may be absent
    return model.to(device).eval(), spec, card


def models_dir() -> Path:
    """Folder of the bundled models: the source tree's ``models/`` or the installed share."""
    return data_dir('models')


def bundled_models() -> dict[str, Path]:
    """Architecture name -> its bundled weights file: ``models/<architecture>_*.safetensors``
    whose card names that architecture (one per registered architecture at most)."""
    from panoptic_ros.models.registry import available_models

    found: dict[str, Path] = {}
    for arch in available_models():
        files = sorted(models_dir().glob(f'{arch}_*.safetensors'))
        if len(files) > 1:
            raise PanopticError(f'several bundled models for {arch!r} in {models_dir()}: '
                                f'{[f.name for f in files]}; keep one')
        if files:
            found[arch] = files[0]
    return found


def resolve_model(model: str | None = None, weights: str | os.PathLike | None = None) -> Path:
    """The weights file a user means.

    Args:
        model: an architecture name (its bundled model), or the stem of a file in the bundled
            models folder; None: the bundled model of :data:`DEFAULT_ARCHITECTURE`.
        weights: a weights file path; it wins over ``model``.

    Raises:
        PanopticError: an unknown name, listing the architectures with a bundled model and
            the files there are.
    """
    if weights:
        return Path(weights)
    name = model or DEFAULT_ARCHITECTURE
    stem = models_dir() / f'{name}.safetensors'
    if stem.is_file():
        return stem
    bundled = bundled_models()
    if name in bundled:
        return bundled[name]
    from panoptic_ros.models.registry import available_models

    if name in available_models():
        raise PanopticError(f'architecture {name!r} has no bundled model in {models_dir()}; '
                            'pass a weights file (--weights, or the weights parameter)')
    files = sorted(p.stem for p in models_dir().glob('*.safetensors'))
    raise PanopticError(f'unknown model {name!r}: expected an architecture with a bundled '
                        f'model ({sorted(bundled)}) or a bundled file stem ({files})')
