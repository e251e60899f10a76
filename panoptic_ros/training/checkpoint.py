"""Training checkpoints: everything a killed run needs to continue exactly, written atomically.

A checkpoint holds tensors, numbers, strings and containers only, so it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch

from panoptic_ros.errors import PanopticError
from panoptic_ros.fileio import atomic_write_bytes


def rng_state() -> dict:
    py_version, py_state, py_gauss = random.getstate()
    _, np_keys, np_pos, _, _ = np.random.get_state()
    state = {'torch': torch.get_rng_state(), 'python': list(py_state),
             'python_version': py_version, 'python_gauss': py_gauss,
             'numpy': np_keys.tolist(), 'numpy_pos': int(np_pos)}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state['torch'])
    random.setstate((state['python_version'], tuple(state['python']), state['python_gauss']))
    np.random.set_state(('MT19937', np.array(state['numpy'], dtype=np.uint32),
                         state['numpy_pos'], 0, 0.0))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def save_checkpoint(path: str | Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise PanopticError(f'checkpoint {path} does not exist')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/foreign files
        raise PanopticError(f'checkpoint {path} is not a panoptic training checkpoint '
                            f'(read with weights_only=True): {exc}') from exc
