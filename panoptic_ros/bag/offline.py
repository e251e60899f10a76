"""``--mode offline``: the node's per-frame work in this process, frame by frame, no DDS.

Each bag message becomes the same ``rclpy`` message the node would receive, then goes through
the node's own steps: :func:`~panoptic_ros.ros.image_io.to_rgb`, the predictor, and
:mod:`panoptic_ros.ros.outputs` for the label images and segments.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from panoptic_ros.bag import types
from panoptic_ros.bag.metrics import FrameTiming, ReplayMetrics
from panoptic_ros.bag.source import BagSource, Frame

OUTPUTS = ('semantic', 'panoptic', 'overlay')


class OfflinePipeline:
    """Model and engine as the node loads them (bundled model by default)."""

    def __init__(self, weights: str | None, engine: str = 'torch', device: str = 'cpu',
                 precision: str = 'fp32', warmup: int = 2) -> None:
        from panoptic_ros.engines import create_engine
        from panoptic_ros.inference import Predictor
        from panoptic_ros.tracking import InstanceTracker
        from panoptic_ros.weights import resolve_model

        self.weights = resolve_model(weights=weights)
        eng, spec, _ = create_engine(engine, self.weights, device=device, precision=precision)
        self.predictor = Predictor(eng, spec)
        blank = np.zeros((*eng.input_size, 3), np.uint8)
        for _ in range(warmup):      # as the node does during configure
            self.predictor([blank])
        self.labels = self.predictor.labels
        self.tracker = InstanceTracker()     # the node's default: tracking on
        self.description = (f'{spec.architecture} ({self.weights.name}) on {eng.name} '
                            f'{eng.device} {eng.input_size[0]}x{eng.input_size[1]}')


def run_offline(source: BagSource, pipeline: OfflinePipeline, metrics: ReplayMetrics,
                on_frame: Callable[[Frame, dict, FrameTiming], None]) -> None:
    """Process every frame; ``on_frame(frame, outputs, timing)`` gets the output messages by
    name (``semantic``, ``panoptic``, ``overlay``, ``segments``); bad images are counted in
    ``metrics.drops`` as ``bad_input.<kind>``."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    from panoptic_ros_msgs.msg import FrameTimings
    from panoptic_ros.ros import outputs
    from panoptic_ros.ros.image_io import BadImage, to_rgb

    msg_class = CompressedImage if source.msgtype == types.COMPRESSED_IMAGE else Image
    for frame in source.frames():
        t0 = time.perf_counter()
        metrics.on_sent(t0)
        msg = deserialize_message(frame.raw, msg_class)
        try:
            rgb = to_rgb(msg)
        except BadImage as exc:
            metrics.drops[f'bad_input.{exc.kind}'] += 1
            continue
        t1 = time.perf_counter()
        result = pipeline.predictor([rgb])[0]
        t_track = time.perf_counter()
        track_ids = pipeline.tracker.update(result)
        result.timings_ms['postprocess'] += (time.perf_counter() - t_track) * 1e3
        t2 = time.perf_counter()
        out = dict(outputs.label_messages(msg.header, rgb, result, pipeline.labels, OUTPUTS,
                                          track_ids=track_ids))
        stages = {'queue': 0.0, 'decode': (t1 - t0) * 1e3, **result.timings_ms,
                  'publish': (time.perf_counter() - t2) * 1e3}
        stages['total'] = (time.perf_counter() - t0) * 1e3
        out['segments'] = outputs.segments_message(
            msg.header, result, pipeline.labels,
            FrameTimings(**{f'{k}_ms': v for k, v in stages.items()}), track_ids)
        timing = FrameTiming(frame.index, t0, time.perf_counter(), stages)
        metrics.on_done(timing)
        on_frame(frame, out, timing)
