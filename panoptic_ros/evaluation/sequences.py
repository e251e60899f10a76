"""``panoptic eval --video``: a model and the tracker over the sequences of a dataset.

Frames go through the model one by one in sequence order; every tracker configuration gets
the same results (so one pass over the data compares or tunes several), and the model's own
per-frame instance ids are scored beside them as the baseline a tracker must beat. Each
scorer sees video maps, ``class * VIDEO_DIVISOR + id`` with void -1:

- ground truth: ``id`` is the object's track, its dataset segment id renumbered ``1..`` per
  class (:class:`~panoptic_ros.datasets.sample.TrackNumbering`; 0 on crowd regions);
- per-frame ids: ``id`` is the result's instance id;
- a tracker: ``id`` is the track id :class:`~panoptic_ros.tracking.InstanceTracker` gives.

Trackers are reset where a sequence starts, as the node's is on a new stream.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from panoptic_ros.datasets.sample import TrackNumbering
from panoptic_ros.errors import PanopticError
from panoptic_ros.evaluation.evaluate import PanopticEvaluator
from panoptic_ros.evaluation.video import (VIDEO_DIVISOR, IdSwitchCounter, STQAccumulator,
                                           VPQAccumulator)
from panoptic_ros.labels import LabelSet
from panoptic_ros.tracking import InstanceTracker, TrackerConfig, track_lut

PER_FRAME = 'per_frame_ids'


def result_video_map(result, track_ids: torch.Tensor | None = None) -> np.ndarray:
    """``[H, W] int64`` video map of a result: its instance ids, or the ``[S]`` track ids of
    its segments."""
    pan = result.panoptic.cpu().numpy().astype(np.int64)
    div = result.label_divisor
    cls, inst = pan // div, np.where(pan >= 0, pan % div, 0)
    if track_ids is not None:
        inst = track_lut(result, track_ids)[inst]
    return np.where(pan < 0, -1, cls * VIDEO_DIVISOR + inst)


class VideoScorer:
    """STQ, VPQ (optional: the costly one) and id switches of one way of numbering."""

    def __init__(self, labels: LabelSet, vpq: bool) -> None:
        self.stq = STQAccumulator(labels, VIDEO_DIVISOR)
        self.vpq = VPQAccumulator(labels, label_divisor=VIDEO_DIVISOR) if vpq else None
        self.switches = IdSwitchCounter(labels, VIDEO_DIVISOR)

    def add(self, sequence, gt: np.ndarray, pred: np.ndarray) -> None:
        self.stq.add(sequence, gt, pred)
        if self.vpq is not None:
            self.vpq.add(sequence, gt, pred)
        self.switches.add(sequence, gt, pred)

    def end(self, sequence) -> None:
        if self.vpq is not None:
            self.vpq.end(sequence)

    def summarize(self) -> dict:
        stq = self.stq.summarize()
        out = {'stq': stq['stq'], 'aq': stq['aq'], 'sq': stq['sq'], 'tracks': stq['tracks'],
               **self.switches.summarize()}
        if self.vpq is not None:
            vpq = self.vpq.summarize()
            out['vpq'] = vpq['vpq']
            out['vpq_windows'] = {w: r['All']['pq'] for w, r in vpq['windows'].items()}
        return out


def evaluate_sequences(predict: Callable[[list[np.ndarray]], list], dataset,
                       labels: LabelSet, trackers: Mapping[str, TrackerConfig], *,
                       num: int | None = None, vpq: bool = True,
                       on_frame: Callable[[], None] | None = None) -> dict:
    """Run ``predict`` (a :class:`~panoptic_ros.inference.Predictor`) over the first ``num``
    frames of ``dataset`` (a :class:`~panoptic_ros.datasets.cityscapes.CityscapesDataset`
    opened with ``tracks=True``).

    Returns:
        ``{'image': PanopticEvaluator.summarize(), 'sequences', 'frames', 'video': {name:
        scores}}`` with one entry per tracker and :data:`PER_FRAME`; scores are ``stq``,
        ``aq``, ``sq``, ``tracks``, ``id_switches``, ``tracked_objects``, ``per_100`` and, with
        ``vpq``, ``vpq`` and ``vpq_windows``.
    """
    if PER_FRAME in trackers:
        raise PanopticError(f'{PER_FRAME!r} names the per-frame baseline, not a tracker')
    num = len(dataset) if num is None else min(num, len(dataset))
    image_eval = PanopticEvaluator(labels)
    scorers = {name: VideoScorer(labels, vpq) for name in (PER_FRAME, *trackers)}
    live = {name: InstanceTracker(cfg) for name, cfg in trackers.items()}
    numbering = TrackNumbering(VIDEO_DIVISOR)
    current, sequences = None, 0
    for i in range(num):
        sequence, _ = dataset.sequence(i)
        if sequence != current:
            if current is not None:
                for s in scorers.values():
                    s.end(current)
            for t in live.values():
                t.reset()
            current = sequence
            sequences += 1
        sample = dataset[i]
        result = predict([sample.image])[0]
        image_eval.add(sample, result)
        gt = numbering.panoptic(sample, sequence)
        scorers[PER_FRAME].add(sequence, gt, result_video_map(result))
        for name, tracker in live.items():
            scorers[name].add(sequence, gt, result_video_map(result, tracker.update(result)))
        if on_frame:
            on_frame()
    return {'image': image_eval.summarize(), 'sequences': sequences, 'frames': num,
            'video': {name: s.summarize() for name, s in scorers.items()}}


def format_video_table(video: dict) -> str:
    """One line per way of numbering: STQ, AQ, SQ, VPQ and id switches (percent)."""
    lines = [f'{"ids":22s}|   STQ    AQ    SQ   VPQ | id switches (per 100 objects)',
             '-' * 76]
    for name, r in video.items():
        vpq = f'{100 * r["vpq"]:5.1f}' if 'vpq' in r else '    -'
        lines.append(f'{name:22s}| {100 * r["stq"]:5.1f} {100 * r["aq"]:5.1f} '
                     f'{100 * r["sq"]:5.1f} {vpq} | {r["id_switches"]} '
                     f'({r["per_100"]:.1f}) of {r["tracked_objects"]}')
    return '\n'.join(lines)
