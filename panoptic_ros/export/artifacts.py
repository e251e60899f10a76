"""On-disk cache of exported ONNX files, keyed by the weights' content and the input shape."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from panoptic_ros.fileio import atomic_write_text


def cache_root(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base) / 'panoptic_ros'


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def cached_onnx(weights: str | Path, *, batch: int = 1, cache_dir: str | Path | None = None,
                size: tuple[int, int] | None = None) -> Path:
    """ONNX export of ``weights`` at its input size (or ``size``), made once per content."""
    from panoptic_ros.export.onnx_export import export_onnx
    from panoptic_ros.weights import load_model, read_card

    weights = Path(weights)
    digest = file_sha256(weights)[:16]
    h, w = size or read_card(weights)['spec'].input_size
    path = cache_root(cache_dir) / f'{weights.stem}-{digest}-{h}x{w}-b{batch}.onnx'
    if not path.is_file():                  # the tensors are read only to export
        model, _, card = load_model(weights)
        export_onnx(model, path, height=h, width=w, batch=batch, card=card)
        atomic_write_text(path.with_suffix('.source'), f'{weights.resolve()}\n')
    return path
