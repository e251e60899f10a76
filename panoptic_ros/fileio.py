"""Atomic file writes: a reader never sees a half-written file, a crash leaves the old one."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from panoptic_ros.errors import PanopticError


def read_json(path: str | Path, what: str) -> Any:
    """Parsed JSON of ``path``; :class:`PanopticError` naming ``what`` and the file if the
    file is missing, unreadable or not JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as exc:
        raise PanopticError(f'cannot read {what} {path}: {exc.strerror}') from exc
    except json.JSONDecodeError as exc:
        raise PanopticError(f'{what} {path} is not valid JSON: {exc}') from exc


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A failure (full disk, read-only folder, quota) removes the temporary file, leaves any
    earlier ``path`` as it was and raises :class:`PanopticError` naming the file and the
    reason."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # not mkstemp, whose files are 0600: the result gets the user's umask as any file
        tmp = str(path.parent / f'.{path.name}.{secrets.token_hex(6)}.tmp')
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            kept = 'the earlier file is unchanged' if path.exists() else 'nothing was written'
            raise PanopticError(f'cannot write {path}: {exc.strerror or exc}; {kept}') from exc
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode('utf-8'))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + '\n')
