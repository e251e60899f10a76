"""Training augmentation on :class:`Sample`: geometry moves image and labels together.

Labels are resized with nearest neighbour, padded with void (semantic) and 0 (instance), and
segments are recomputed after each geometric step, so they always describe the label images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from panoptic_ros.datasets.sample import Sample


@dataclass(frozen=True)
class RandomScale:
    """Resize by a factor drawn uniformly from ``[low, high]``."""

    low: float = 0.5
    high: float = 2.0

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        import cv2

        f = rng.uniform(self.low, self.high)
        h, w = s.semantic.shape
        size = (max(1, round(w * f)), max(1, round(h * f)))
        return s.with_maps(cv2.resize(s.image, size, interpolation=cv2.INTER_LINEAR),
                           cv2.resize(s.semantic, size, interpolation=cv2.INTER_NEAREST),
                           cv2.resize(s.instance, size, interpolation=cv2.INTER_NEAREST))


@dataclass(frozen=True)
class RandomCrop:
    """Crop ``height x width`` at a random place, padding with void when smaller."""

    height: int
    width: int

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        h, w = s.semantic.shape
        ph, pw = max(self.height - h, 0), max(self.width - w, 0)
        image, sem, inst = s.image, s.semantic, s.instance
        if ph or pw:
            image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
            sem = np.pad(sem, ((0, ph), (0, pw)), constant_values=s.void_id)
            inst = np.pad(inst, ((0, ph), (0, pw)))
        y = int(rng.integers(0, sem.shape[0] - self.height + 1))
        x = int(rng.integers(0, sem.shape[1] - self.width + 1))
        win = (slice(y, y + self.height), slice(x, x + self.width))
        return s.with_maps(np.ascontiguousarray(image[win]), np.ascontiguousarray(sem[win]),
                           np.ascontiguousarray(inst[win]))


@dataclass(frozen=True)
class RandomHorizontalFlip:
    p: float = 0.5

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return s
        return s.with_maps(np.ascontiguousarray(s.image[:, ::-1]),
                           np.ascontiguousarray(s.semantic[:, ::-1]),
                           np.ascontiguousarray(s.instance[:, ::-1]))


@dataclass(frozen=True)
class PhotometricDistortion:
    """Brightness, contrast, saturation and hue jitter (image only)."""

    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    hue_degrees: float = 8.0

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        import cv2

        img = s.image.astype(np.float32)
        img = (img - img.mean()) * rng.uniform(1 - self.contrast, 1 + self.contrast) + \
            img.mean() + 255 * rng.uniform(-self.brightness, self.brightness)
        hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
        hsv = hsv.astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-1, 1) * self.hue_degrees / 2) % 180
        hsv[..., 1] *= rng.uniform(1 - self.saturation, 1 + self.saturation)
        hsv = np.clip(hsv, 0, 255).astype(np.uint8)
        return Sample(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), s.semantic, s.instance, s.void_id,
                      s.label_set, s.name, s.segments)


@dataclass(frozen=True)
class Compose:
    transforms: Sequence

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        for t in self.transforms:
            s = t(s, rng)
        return s


def training_transforms(crop: tuple[int, int], scale: tuple[float, float]) -> Compose:
    """Random scale, crop, flip and photometric distortion (the usual panoptic recipe)."""
    return Compose([RandomScale(*scale), RandomCrop(*crop), RandomHorizontalFlip(),
                    PhotometricDistortion()])
