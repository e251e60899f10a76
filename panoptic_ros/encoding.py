"""Panoptic id encodings, both ways, vectorised.

* Label-divisor ids (Cityscapes, detectron2, our ROS output): ``class_id * label_divisor +
  instance_id`` in an ``int32`` image; void pixels are ``PANOPTIC_VOID`` (-1) because class 0
  stuff is a valid id 0.
* COCO panoptic RGB ids: ``id = R + 256 * G + 256**2 * B`` in an RGB PNG; void is id 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from panoptic_ros.errors import PanopticError

LABEL_DIVISOR = 1000
PANOPTIC_VOID = -1


def encode_panoptic(semantic: np.ndarray, instance: np.ndarray, void_id: int,
                    label_divisor: int = LABEL_DIVISOR) -> np.ndarray:
    """Semantic and instance images to a panoptic id image.

    Args:
        semantic: ``[H, W]`` integer class ids; ``void_id`` marks void.
        instance: ``[H, W]`` integer instance ids, 0 for stuff and crowd regions,
            ``< label_divisor``.
        void_id: semantic value of void pixels.
        label_divisor: multiplier of the class id.

    Returns:
        ``[H, W] int32``: ``class * label_divisor + instance``, ``PANOPTIC_VOID`` on void.
    """
    if semantic.shape != instance.shape:
        raise PanopticError(f'semantic {semantic.shape} and instance {instance.shape} images '
                            'must have the same shape')
    pan = semantic.astype(np.int32) * np.int32(label_divisor)
    pan += instance.astype(np.int32, copy=False)
    pan[semantic == void_id] = PANOPTIC_VOID
    return pan


def decode_panoptic(panoptic: np.ndarray, void_id: int,
                    label_divisor: int = LABEL_DIVISOR) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_panoptic`.

    Returns:
        ``semantic [H, W] int32`` (``void_id`` on void) and ``instance [H, W] int32``
        (0 on void).
    """
    void = panoptic < 0
    semantic = panoptic // label_divisor
    instance = panoptic - semantic * label_divisor
    semantic[void] = void_id
    instance[void] = 0
    return semantic.astype(np.int32, copy=False), instance.astype(np.int32, copy=False)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic colour image to ids.

    Args:
        rgb: ``[H, W, 3] uint8`` in RGB channel order.

    Returns:
        ``[H, W] uint32`` ids ``R + 256 G + 65536 B``.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise PanopticError(f'expected an [H, W, 3] uint8 colour image, got {rgb.shape} '
                            f'{rgb.dtype}')
    rgbx = np.empty(rgb.shape[:2] + (4,), dtype=np.uint8)
    rgbx[..., :3] = rgb
    rgbx[..., 3] = 0
    return rgbx.view('<u4')[..., 0]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Ids to a COCO panoptic colour image, ``[H, W] -> [H, W, 3] uint8`` (RGB order)."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise PanopticError('COCO panoptic ids must be in [0, 2^24)')
    return ids.astype('<u4')[..., None].view(np.uint8)[..., :3].copy()


def id_to_bgr(ids: np.ndarray) -> np.ndarray:
    """Ids to ``[H, W, 3] uint8`` in OpenCV's BGR order, ready for ``cv2.imwrite``."""
    import cv2

    ids = np.ascontiguousarray(ids, dtype='<u4')
    if ids.size and int(ids.max()) >= 1 << 24:
        raise PanopticError('COCO panoptic ids must be in [0, 2^24)')
    return cv2.cvtColor(ids[..., None].view(np.uint8), cv2.COLOR_RGBA2BGR)


def read_id_png(path: str | Path) -> np.ndarray:
    """Read a COCO panoptic PNG into ``[H, W] uint32`` ids (OpenCV decode, no PIL)."""
    import cv2

    # IMREAD_UNCHANGED skips OpenCV's colour handling: about 30% faster than IMREAD_COLOR.
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise PanopticError(f'cannot read panoptic PNG {path} (missing or not an image)')
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8:
        raise PanopticError(f'panoptic PNG {path} must be 8-bit RGB, got shape {img.shape} '
                            f'{img.dtype}')
    code = cv2.COLOR_BGR2RGBA if img.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
    ids = cv2.cvtColor(img, code).view('<u4')[..., 0]
    np.bitwise_and(ids, 0xFFFFFF, out=ids)  # drop alpha
    return ids


def write_id_png(path: str | Path, ids: np.ndarray) -> None:
    """Write ``[H, W]`` ids as a COCO panoptic PNG."""
    import cv2

    if not cv2.imwrite(str(path), id_to_bgr(ids)):
        raise PanopticError(f'cannot write {path}')
