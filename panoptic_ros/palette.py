"""Colours for label images: stuff in its class colour, each instance in its own shade."""

from __future__ import annotations

import numpy as np

from panoptic_ros.labels import LabelSet


def instance_colors(class_colors: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``[count, 3] uint8`` distinct shades around each instance's class colour.

    Args:
        class_colors: ``[count, 3] uint8`` class colour of each instance.
        count: number of instances.
        seed: instance k always gets the same shade for the same seed.
    """
    rng = np.random.default_rng(seed)
    # alternate lighter/darker steps with a random hue nudge, so neighbours differ
    offsets = rng.integers(-70, 71, size=(count, 3))
    steps = np.where(np.arange(count) % 2 == 0, 1, -1)[:, None] * 40
    return np.clip(class_colors.astype(np.int64) + offsets + steps, 0, 255).astype(np.uint8)


def colorize(semantic: np.ndarray, instance: np.ndarray, label_set: LabelSet,
             boundaries: bool = True) -> np.ndarray:
    """``[H, W, 3] uint8`` RGB panoptic colouring.

    Args:
        semantic: ``[H, W]`` class ids, ``label_set.void_id`` on void (drawn black).
        instance: ``[H, W]`` instance ids, 0 for stuff/void.
        label_set: classes and colours.
        boundaries: draw instance outlines in white.
    """
    lut = np.zeros((max(label_set.void_id, label_set.num_classes) + 1, 3), np.uint8)
    lut[:label_set.num_classes] = label_set.colors
    out = lut[semantic]
    inst = instance > 0
    if inst.any():
        ids = instance[inst]
        n = int(ids.max())
        cls_of = np.zeros(n + 1, np.int64)
        cls_of[ids] = semantic[inst]
        shades = instance_colors(label_set.colors[np.minimum(cls_of, label_set.num_classes - 1)],
                                 n + 1)
        out[inst] = shades[ids]
        if boundaries:
            edge = np.zeros(instance.shape, bool)
            edge[:, 1:] |= instance[:, 1:] != instance[:, :-1]
            edge[1:, :] |= instance[1:, :] != instance[:-1, :]
            out[edge & inst] = 255
    return out
