"""Colours for label images and the overlay.

Stuff gets its class colour. Each instance gets its own shade of its class colour, a step in
lightness and hue (:func:`shade_table`); touching instances of a class get shades far apart.
Given track ids, an instance starts from the shade of its track, so that one object keeps its
colour from frame to frame.
Instance outlines are white or black, whichever stands out more on the instance's shade.
"""

from __future__ import annotations

import cv2
import numpy as np

from panoptic_ros.labels import LabelSet

# Shades of one class: entry k has the lightness (OpenCV's 8-bit HLS) a golden-ratio walk
# from the class's own lightness puts it at, wrapping around SHADE_LIGHTNESS, and the hue step
# SHADE_HUE[k] (HLS hue units of 2 degrees): entry 0 is the class colour itself, consecutive
# entries are at least 0.38 of the lightness range apart, and entries close in lightness get
# hue steps apart.
SHADE_COUNT = 8
SHADE_LIGHTNESS = (30, 205)
SHADE_HUE = np.array([0, -5, -8, 4, -4, 9, 6, 8], dtype=np.int64)
GOLDEN = (5 ** 0.5 - 1) / 2
TOUCHING_DISTANCE = 90.0         # RGB distance touching instances of a class should keep
OUTLINE_DARK = 150.0             # luminance above which an outline is black, not white
MID_GREY = 118.0                 # the camera brightness assumed behind a blended colour
WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def outline_px(height: int, width: int) -> int:
    """Instance outline thickness in image pixels: 2 at 512x1024, 4 at 1024x2048 (one per
    256 pixels of the shorter side, at least 1)."""
    return max(1, round(min(height, width) / 256))


def shade_table(class_color) -> np.ndarray:
    """``[SHADE_COUNT, 3] uint8`` RGB shades of one class colour; entry 0 is the colour."""
    hls = cv2.cvtColor(np.asarray(class_color, np.uint8).reshape(1, 1, 3),
                       cv2.COLOR_RGB2HLS).reshape(3).astype(np.float64)
    lo, hi = SHADE_LIGHTNESS
    start = (np.clip(hls[1], lo, hi) - lo) / (hi - lo)
    light = lo + (hi - lo) * ((start + GOLDEN * np.arange(SHADE_COUNT)) % 1.0)
    light[0] = hls[1]
    hue = (hls[0] + SHADE_HUE) % 180
    table = np.stack([hue, np.rint(light), np.full(SHADE_COUNT, hls[2])], -1)
    return cv2.cvtColor(table.astype(np.uint8).reshape(-1, 1, 3),
                        cv2.COLOR_HLS2RGB).reshape(-1, 3)


def _boundaries(instance: np.ndarray):
    """Where neighbouring pixels (4-neighbourhood) have different instance ids: ``[H, W-1]``
    and ``[H-1, W]`` bool, and the ``[P, 2]`` id pairs either side."""
    dx = instance[:, 1:] != instance[:, :-1]
    dy = instance[1:, :] != instance[:-1, :]
    pairs = np.concatenate([np.stack([instance[:, :-1][dx], instance[:, 1:][dx]], 1),
                            np.stack([instance[:-1, :][dy], instance[1:, :][dy]], 1)])
    return dx, dy, pairs


def _instance_classes(semantic: np.ndarray, instance: np.ndarray, n: int) -> np.ndarray:
    """``[n + 1] int64`` class of each instance id from the maps, -1 for ids not present."""
    inst = instance > 0
    cls_of = np.full(n + 1, -1, np.int64)
    cls_of[instance[inst]] = semantic[inst]
    return cls_of


def _assign_shades(cls_of: np.ndarray, pairs: np.ndarray, colors: np.ndarray,
                   shade_keys: np.ndarray | None = None) -> np.ndarray:
    """``[n + 1, 3] int64`` shade of each instance id (row 0 unused).

    In id order (or in ``shade_keys`` order, e.g. track ids), each instance takes the first
    shade of its class, starting at its rank among the instances of its class (or at its
    ``shade_keys`` entry), that keeps :data:`TOUCHING_DISTANCE` from the shades of the touching
    instances of its class already shaded (else the farthest one). With keys, the shades depend
    on the keys and on which objects touch, not on the frame's ids."""
    n = len(cls_of) - 1
    shades = np.zeros((n + 1, 3), np.int64)
    same = pairs[(pairs > 0).all(1)]
    same = same[cls_of[same[:, 0]] == cls_of[same[:, 1]]]
    touching: dict[int, set] = {}
    codes = np.unique(same.max(1).astype(np.int64) * (n + 1) + same.min(1))
    for a, b in zip((codes // (n + 1)).tolist(), (codes % (n + 1)).tolist()):
        touching.setdefault(a, set()).add(b)
        touching.setdefault(b, set()).add(a)
    ids = [i for i in np.flatnonzero(cls_of >= 0).tolist() if i]
    if shade_keys is not None:
        ids.sort(key=lambda i: (int(shade_keys[i]), i))
    tables: dict[int, np.ndarray] = {}
    rank: dict[int, int] = {}
    done: set[int] = set()
    for i in ids:
        c = int(cls_of[i])
        if c not in tables:
            tables[c] = shade_table(colors[min(c, len(colors) - 1)]).astype(np.int64)
        table = tables[c]
        start = rank.get(c, 0) if shade_keys is None else int(shade_keys[i])
        order = (start + np.arange(len(table))) % len(table)
        rank[c] = rank.get(c, 0) + 1
        near = sorted(touching.get(i, set()) & done)
        pick = order[0]
        if near:
            d = np.linalg.norm(table[order][:, None, :] - shades[near][None], axis=-1).min(1)
            ok = np.flatnonzero(d >= TOUCHING_DISTANCE)
            pick = order[ok[0]] if ok.size else order[int(d.argmax())]
        shades[i] = table[pick]
        done.add(i)
    return shades


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def panoptic_index(semantic: np.ndarray, instance: np.ndarray, label_set: LabelSet,
                   outline: int = 0, instance_classes: np.ndarray | None = None,
                   alpha: float = 1.0, shade_keys: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The panoptic colouring as an index image and its colour table.

    Args:
        semantic: ``[H, W]`` class ids; ``label_set.void_id`` (or any id not in the set) on
            void.
        instance: ``[H, W]`` instance ids, 0 for stuff and void.
        label_set: classes and colours.
        outline: instance outline thickness in pixels (inside the instance); 0: none.
        instance_classes: class of each instance id (``[n + 1]``, -1 unknown), when the caller
            knows them (saves reading them from the maps).
        alpha: weight the colours will be blended with over a camera image, to choose the
            outline colour that contrasts with what is seen.
        shade_keys: ``[n + 1]`` the shade each instance id starts from (track ids: colours
            that follow objects); None: its rank in its class.

    Returns:
        ``index`` (``[H, W] int32``) and ``table`` (``[N, 3] uint8``): the colours are
        ``table[index]``. Index 0 is void (black), ``1..n`` instance ids (their shades),
        ``n + 1 + c`` stuff of class ``c`` (class colour), ``N - 2`` and ``N - 1`` the white
        and black outline.
    """
    semantic = np.asarray(semantic)
    instance = np.asarray(instance).astype(np.int32, copy=False)
    num = label_set.num_classes
    n = int(instance.max(initial=0))
    cls_of = None
    if instance_classes is not None and len(instance_classes) >= n + 1:
        cls_of = np.asarray(instance_classes, np.int64)[:n + 1].copy()
        cls_of[0] = -1
        if (cls_of[1:] < 0).any():          # ids the caller does not know: read the maps
            cls_of = None
    if cls_of is None:
        cls_of = _instance_classes(semantic, instance, n)
    colors = label_set.colors
    table = np.zeros((n + 1 + num + 2, 3), np.uint8)
    table[n + 1:n + 1 + num] = colors
    table[-2], table[-1] = WHITE, BLACK
    index = np.where(instance > 0, instance,
                     (n + 1 + semantic.astype(np.int32, copy=False)))
    index[(semantic >= num) & (instance == 0)] = 0
    if n:
        dx, dy, pairs = _boundaries(instance)
        keys = None if shade_keys is None or len(shade_keys) < n + 1 else shade_keys
        table[1:n + 1] = _assign_shades(cls_of, pairs, colors, keys)[1:]
        if outline > 0:
            edge = np.zeros(instance.shape, np.uint8)
            edge[:, 1:] |= dx
            edge[:, :-1] |= dx
            edge[1:, :] |= dy
            edge[:-1, :] |= dy
            if outline > 1:
                edge = cv2.dilate(edge, np.ones((2 * outline - 1, 2 * outline - 1), np.uint8))
            edge = edge.view(bool) & (instance > 0)
            seen = alpha * _luminance(table[:n + 1]) + (1.0 - alpha) * MID_GREY
            ink = np.where(seen > OUTLINE_DARK, len(table) - 1, len(table) - 2)
            index[edge] = ink.astype(np.int32)[instance[edge]]
    return index, table


def colorize(semantic: np.ndarray, instance: np.ndarray, label_set: LabelSet,
             boundaries: bool = True, thickness: int | None = None) -> np.ndarray:
    """``[H, W, 3] uint8`` RGB panoptic colouring (the bag report's ground-truth column).

    Args:
        semantic: ``[H, W]`` class ids, ``label_set.void_id`` on void (drawn black).
        instance: ``[H, W]`` instance ids, 0 for stuff/void.
        label_set: classes and colours.
        boundaries: outline instances in white or black (whichever contrasts).
        thickness: outline thickness in pixels; None: :func:`outline_px` of the image size.
    """
    if thickness is None:
        thickness = outline_px(*np.shape(semantic)[:2])
    index, table = panoptic_index(semantic, instance, label_set,
                                  thickness if boundaries else 0)
    return np.take(table, index, axis=0)
