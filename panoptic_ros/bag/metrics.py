"""Quality and timing of a replay, accumulated frame by frame from the node's messages.

Quality goes through :class:`~panoptic_ros.evaluation.evaluate.PanopticEvaluator` with the
predicted segments of ``panoptic/segments`` and the label maps of ``panoptic/panoptic`` and
``panoptic/semantic``, so it equals ``panoptic eval`` on the same frames. Timing follows
ros2_benchmark's definitions: end-to-end latency from the moment a frame was sent to the
moment the last of its outputs arrived, jitter as the spread of that latency
and of the output spacing against the input spacing.

When the bag's ground truth carries track ids (``panoptic bag make`` of video), the answered
frames are also scored as one video (:mod:`panoptic_ros.evaluation.sequences`): STQ, VPQ and
id switches of the segments' ``track_id`` and, as the baseline, of their per-frame
``instance_id``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from panoptic_ros.evaluation.evaluate import PanopticEvaluator, ground_truth_from_panoptic
from panoptic_ros.evaluation.sequences import PER_FRAME, VideoScorer
from panoptic_ros.evaluation.video import VIDEO_DIVISOR
from panoptic_ros.labels import LabelSet
from panoptic_ros.ros.image_io import label_array

STAGES = ('queue', 'decode', 'preprocess', 'inference', 'postprocess', 'publish', 'total')


@dataclass
class FrameTiming:
    """When one frame was sent and when its last output came back (seconds, one clock)."""

    index: int
    sent: float
    done: float
    stages_ms: dict[str, float]
    transport_in_ms: float | None = None   # send to node reception (live only)


def percentiles(values) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    if not v.size:
        return {}
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {'p50': float(p50), 'p95': float(p95), 'p99': float(p99), 'max': float(v.max()),
            'mean': float(v.mean()), 'std': float(v.std())}


@dataclass
class ReplayMetrics:
    """Everything a report shows, filled as frames complete.

    Args:
        labels: the model's label set.
        gt_divisor: label divisor of the bag's ground truth.
        video: the ground truth's instance ids are track ids: score association too.
    """

    labels: LabelSet
    gt_divisor: int
    timings: list[FrameTiming] = field(default_factory=list)
    drops: Counter = field(default_factory=Counter)
    evaluated: int = 0
    send_times: list[float] = field(default_factory=list)
    video: bool = False

    def __post_init__(self) -> None:
        self.evaluator = PanopticEvaluator(self.labels)
        self.video_scores = {name: VideoScorer(self.labels, vpq=True)
                             for name in (PER_FRAME, 'tracker')} if self.video else {}

    @property
    def sent(self) -> int:
        return len(self.send_times)

    def on_sent(self, t: float) -> None:
        self.send_times.append(t)

    def on_done(self, timing: FrameTiming) -> None:
        self.timings.append(timing)

    def add_quality(self, name: str, gt: np.ndarray, segments, panoptic_msg,
                    semantic_msg) -> None:
        """One frame's PQ/mIoU from the node's messages and the bag's ground truth."""
        table, gt_semantic = ground_truth_from_panoptic(gt, self.labels, self.gt_divisor)
        ids = np.array([s.id for s in segments.segments], np.int64)
        classes = np.array([s.class_id for s in segments.segments], np.int64)
        pan = label_array(panoptic_msg)
        self.evaluator.add_maps(name, gt, table, gt_semantic, pan, ids, classes,
                                label_array(semantic_msg))
        self.evaluated += 1
        if self.video_scores:
            self._add_video(gt, segments, pan)

    def _add_video(self, gt: np.ndarray, segments, pan: np.ndarray) -> None:
        """The frame as video maps: ground-truth tracks, per-frame ids, the node's tracks."""
        d = self.gt_divisor
        gt = np.asarray(gt, np.int64)
        gt_video = np.where(gt < 0, -1, gt // d * VIDEO_DIVISOR + gt % d)
        pan = pan.astype(np.int64)
        div = int(segments.label_divisor)
        cls, inst = pan // div, pan % div
        ids = np.array([s.id for s in segments.segments], np.int64)
        tracks = np.array([s.track_id for s in segments.segments], np.int64)
        order = np.argsort(ids)
        ids, tracks = ids[order], tracks[order]
        track = np.zeros_like(pan)
        if len(ids):
            pos = np.clip(np.searchsorted(ids, pan), 0, len(ids) - 1)
            track = np.where(ids[pos] == pan, tracks[pos], 0)
        for name, ids_map in ((PER_FRAME, inst), ('tracker', track)):
            self.video_scores[name].add('bag', gt_video,
                                        np.where(pan < 0, -1, cls * VIDEO_DIVISOR + ids_map))

    def quality(self) -> dict | None:
        """``panoptic pq``'s layout plus ``miou``; ``None`` without ground truth."""
        if not self.evaluated:
            return None
        out = self.evaluator.summarize()
        out['frames'] = self.evaluated
        if self.video_scores:
            out['video'] = {name: s.summarize() for name, s in self.video_scores.items()}
        return out

    def latency(self) -> dict:
        """End-to-end and per-stage latency (ms), jitter, rates and drops."""
        t = sorted(self.timings, key=lambda f: f.index)
        e2e = [1e3 * (f.done - f.sent) for f in t]
        out: dict = {'end_to_end_ms': percentiles(e2e)}
        if len(t) > 1:
            d_in = np.diff([f.sent for f in t])
            d_out = np.diff([f.done for f in t])
            out['jitter_ms'] = {'latency_std': float(np.std(e2e)),
                                **{f'interval_{k}': v for k, v in
                                   percentiles(1e3 * np.abs(d_out - d_in)).items()
                                   if k in ('p50', 'p95', 'max', 'mean')}}
        out['stages_ms'] = {s: percentiles([f.stages_ms[s] for f in t if s in f.stages_ms])
                            for s in STAGES}
        transport = [f.transport_in_ms for f in t if f.transport_in_ms is not None]
        if transport:
            out['stages_ms']['transport_in'] = percentiles(transport)
        span_in = self.send_times[-1] - self.send_times[0] if len(self.send_times) > 1 else 0
        out['input_rate_hz'] = (len(self.send_times) - 1) / span_in if span_in > 0 else None
        span = (max(f.done for f in t) - self.send_times[0]) if t and self.send_times else 0
        out['throughput_hz'] = len(t) / span if span > 0 else None
        dropped = self.sent - len(t)
        out['frames'] = {'sent': self.sent, 'completed': len(t), 'dropped': dropped,
                         'drop_ratio': dropped / self.sent if self.sent else 0.0,
                         'drop_reasons': dict(self.drops)}
        return out

    def series(self) -> dict[str, list[float]]:
        """Per completed frame, in order: seconds since the first send, e2e ms, and stages."""
        t = sorted(self.timings, key=lambda f: f.index)
        t0 = self.send_times[0] if self.send_times else 0.0
        return {'time_s': [f.sent - t0 for f in t],
                'end_to_end_ms': [1e3 * (f.done - f.sent) for f in t],
                **{s: [f.stages_ms.get(s, 0.0) for f in t] for s in STAGES}}
