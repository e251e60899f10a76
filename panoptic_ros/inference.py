"""Image in, :class:`~panoptic_ros.models.result.PanopticResult` out, with stage timings.

The stages (preprocess, inference, post-process) are what the node, ``panoptic eval``,
``panoptic bench`` and the bag tools share.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import torch

from panoptic_ros.config import ModelSpec
from panoptic_ros.models.result import PanopticResult


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class Predictor:
    """Engine plus post-processing for one model.

    Args:
        engine: see :mod:`panoptic_ros.engines`.
        spec: the model's spec (labels, input size, post-processing parameters).
        postprocess: overrides of the spec's post-processing parameters.
    """

    def __init__(self, engine, spec: ModelSpec, **postprocess) -> None:
        self.engine = engine
        self.spec = spec
        self.labels = spec.label_set()
        self.postprocess = spec.postprocessor(**postprocess)
        self.thing_classes = torch.as_tensor(self.labels.thing_ids, device=engine.device)
        self.is_thing = torch.as_tensor(self.labels.is_thing, device=engine.device)

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        """``[H, W, 3] uint8`` RGB images -> ``[N, 3, h, w] uint8`` at the input size, on
        the engine's device."""
        h, w = self.engine.input_size
        batch = np.stack([img if img.shape[:2] == (h, w) else
                          cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA
                                     if img.shape[0] > h else cv2.INTER_LINEAR)
                          for img in images])
        return torch.from_numpy(batch).to(self.engine.device).permute(0, 3, 1, 2)

    def __call__(self, images: list[np.ndarray]) -> list[PanopticResult]:
        """Results at each image's own size, with ``timings_ms`` (preprocess, inference,
        postprocess; the batch's times)."""
        dev = self.engine.device
        t0 = time.perf_counter()
        x = self.preprocess(images)
        _sync(dev)
        t1 = time.perf_counter()
        outputs = self.engine(x)
        _sync(dev)
        t2 = time.perf_counter()
        sizes = {img.shape[:2] for img in images}
        if len(sizes) == 1:
            results = self.postprocess(outputs, self.thing_classes, self.is_thing, sizes.pop())
        else:
            results = [self.postprocess({k: v[i:i + 1] for k, v in outputs.items()},
                                        self.thing_classes, self.is_thing, img.shape[:2])[0]
                       for i, img in enumerate(images)]
        _sync(dev)
        t3 = time.perf_counter()
        timings = {'preprocess': (t1 - t0) * 1e3, 'inference': (t2 - t1) * 1e3,
                   'postprocess': (t3 - t2) * 1e3}
        for r in results:
            r.timings_ms.update(timings)
        return results
