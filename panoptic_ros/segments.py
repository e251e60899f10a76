"""Per-segment statistics of an id image, vectorised (no loop over segments or pixels)."""

from __future__ import annotations

import numpy as np


def segment_stats(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ids present in an image with their area, box and centroid.

    Args:
        ids: ``[H, W]`` non-negative integer id image (shift first if void is negative).

    Returns:
        ``uniq [S] int64`` ids in increasing order, ``area [S] int64`` pixels,
        ``bbox [S, 4] int64`` ``(x, y, width, height)``, ``centroid [S, 2] float64``
        ``(x, y)`` centre of mass in pixels.
    """
    h, w = ids.shape
    counts = np.bincount(ids.ravel())
    uniq = np.flatnonzero(counts)
    lut = np.zeros(len(counts), np.int64)
    lut[uniq] = np.arange(len(uniq))
    inverse = lut[ids]
    n = len(uniq)
    cols = np.bincount((inverse * w + np.arange(w)[None, :]).ravel(), minlength=n * w)
    rows = np.bincount((inverse * h + np.arange(h)[:, None]).ravel(), minlength=n * h)
    cols, rows = cols.reshape(n, w), rows.reshape(n, h)
    area = counts[uniq]
    x0, x1 = (cols > 0).argmax(1), w - 1 - (cols[:, ::-1] > 0).argmax(1)
    y0, y1 = (rows > 0).argmax(1), h - 1 - (rows[:, ::-1] > 0).argmax(1)
    bbox = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1)
    centroid = np.stack([cols @ np.arange(w), rows @ np.arange(h)], axis=1) / area[:, None]
    return uniq, area, bbox, centroid
