"""On-disk cache of exported ONNX files and built TensorRT engines, keyed by the weights'
content and the input shape.

Every entry is sealed with a ``<name>.sha256`` file written after it; an entry whose content no
longer matches its seal (truncated by a full disk, damaged, edited) or that has none is not
loaded but rebuilt, with a warning on the ``panoptic_ros`` logger.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from panoptic_ros.fileio import atomic_write_text

log = logging.getLogger('panoptic_ros')


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


def _seal_path(path: Path) -> Path:
    return path.with_name(path.name + '.sha256')


def seal(path: str | Path) -> None:
    """Record the sha256 of the cache entry ``path`` beside it."""
    path = Path(path)
    atomic_write_text(_seal_path(path), f'{file_sha256(path)}\n')


def is_intact(path: str | Path) -> bool:
    """Whether cache entry ``path`` exists and matches its seal; a damaged or unsealed entry
    is reported on the ``panoptic_ros`` logger and removed (with its seal) for rebuilding."""
    path = Path(path)
    if not path.is_file():
        return False
    seal_path = _seal_path(path)
    try:
        want = seal_path.read_text().strip()
    except OSError:
        want = ''
    if want and file_sha256(path) == want:
        return True
    log.warning('cache entry %s %s; rebuilding it', path,
                'fails its checksum' if want else 'has no checksum')
    path.unlink(missing_ok=True)
    seal_path.unlink(missing_ok=True)
    return False


def cached_onnx(weights: str | Path, *, batch: int = 1, cache_dir: str | Path | None = None,
                size: tuple[int, int] | None = None) -> Path:
    """ONNX export of ``weights`` at its input size (or ``size``), made once per content."""
    from panoptic_ros.export.onnx_export import export_onnx
    from panoptic_ros.weights import load_model, read_card

    weights = Path(weights)
    digest = file_sha256(weights)[:16]
    h, w = size or read_card(weights)['spec'].input_size
    path = cache_root(cache_dir) / f'{weights.stem}-{digest}-{h}x{w}-b{batch}.onnx'
    if not is_intact(path):                 # the tensors are read only to export
        model, _, card = load_model(weights)
        export_onnx(model, path, height=h, width=w, batch=batch, card=card)
        atomic_write_text(path.with_suffix('.source'), f'{weights.resolve()}\n')
        seal(path)
    return path
