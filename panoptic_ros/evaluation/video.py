"""Video metrics for instance ids that persist across frames: STQ and VPQ.

Both read panoptic maps of label-set class ids, ``class * label_divisor + id`` with void -1,
where in the ground truth ``id`` is a track id (the same object keeps it in every frame of a
sequence; 0 on a thing class is crowd), and in a prediction it is whatever the tracker gives.

**STQ** (Weber et al., "STEP: Segmenting and Tracking Every Pixel", NeurIPS 2021 datasets
track, section 4): ``STQ = sqrt(AQ x SQ)``.

* ``SQ``: the mean IoU of the semantic classes over every pixel of every sequence (classes
  present in the ground truth or the prediction; ground-truth void pixels excluded).
* ``AQ``: for each ground-truth track ``g`` (thing classes, crowd excluded) of a sequence,
  ``1/|g| sum_p TPA(p, g) IoU(p, g)`` over the predicted tracks ``p`` it overlaps, where
  ``TPA`` is the number of pixels they share over the whole sequence and ``IoU`` their
  spatio-temporal IoU; AQ is the mean over every ground-truth track of every sequence.
  Predicted tracks are the predicted thing pixels outside ground-truth crowd regions, keyed
  by class and id. A track is judged over the whole sequence, so an id switch costs in every
  frame after it, and no frame-level matching threshold is involved.

**VPQ** (Kim et al., "Video Panoptic Segmentation", CVPR 2020, section 4): PQ of
spatio-temporal tubes. For a window of ``w`` frames, the ground-truth and predicted maps of
``w`` consecutive frames are concatenated side by side and scored as one image by the
project's PQ (IoU > 0.5 matching, crowd and void rules as COCO): an object whose id changes
inside the window is two predicted segments, one of which at most can match. Every window of
every sequence (stride 1) adds to the statistics of ``w``; ``VPQ`` is the mean of
``VPQ^w`` over the window sizes. Cityscapes-VPS annotates every fifth frame and uses ``k = 0,
5, 10, 15`` frames, i.e. windows of 1 to 4 annotated frames: ``windows=(1, 2, 3, 4)`` here,
over the frames that have ground truth.

**ID switches** (IDSW of the CLEAR MOT metrics, Bernardin and Stiefelhagen 2008): in every
frame, each ground-truth object is matched to the predicted segment of its class with IoU
above 0.5 (unique, as in PQ); a switch is a ground-truth track matched to another predicted id
than at its previous match. Reported per 100 ground-truth tracks that were matched at least
once ("tracked objects").
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Hashable, Sequence

import numpy as np

from panoptic_ros.evaluation.pq import PQAccumulator, SegmentTable
from panoptic_ros.labels import LabelSet

VPS_WINDOWS = (1, 2, 3, 4)
VIDEO_DIVISOR = 1 << 20    # label divisor of video maps: track ids of hours of video stay below


def _tracks(ids: np.ndarray) -> dict[int, int]:
    u, c = np.unique(ids, return_counts=True)
    return dict(zip(u.tolist(), c.tolist()))


class STQAccumulator:
    """STQ over frames added sequence by sequence (frames of one sequence in any order).

    Args:
        labels: the label set (class ids ``0..C-1``, ``is_thing``).
        label_divisor: of the panoptic maps.
    """

    def __init__(self, labels: LabelSet, label_divisor: int = 1000) -> None:
        self.num_classes = labels.num_classes
        self.is_thing = np.asarray(labels.is_thing, bool)
        self.divisor = int(label_divisor)
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.void_fn = np.zeros(self.num_classes, np.int64)   # void predicted on a class
        self._gt: dict[Hashable, dict[int, int]] = defaultdict(dict)
        self._pred: dict[Hashable, dict[int, int]] = defaultdict(dict)
        self._inter: dict[Hashable, dict[tuple[int, int], int]] = defaultdict(dict)

    @staticmethod
    def _merge(into: dict, counts: dict) -> None:
        for k, v in counts.items():
            into[k] = into.get(k, 0) + v

    def add(self, sequence: Hashable, gt: np.ndarray, pred: np.ndarray) -> None:
        """One frame: ``gt``, ``pred`` ``[H, W]`` panoptic maps (void -1)."""
        gt = np.asarray(gt, np.int64).ravel()
        pred = np.asarray(pred, np.int64).ravel()
        if gt.shape != pred.shape:
            raise ValueError(f'ground truth and prediction differ in size: {gt.shape} vs '
                             f'{pred.shape}')
        c = self.num_classes
        gt_cls = np.where(gt >= 0, gt // self.divisor, -1)
        pr_cls = np.where(pred >= 0, pred // self.divisor, -1)
        if (gt_cls >= c).any() or (pr_cls >= c).any():
            raise ValueError(f'a class id >= {c} in a panoptic map')
        known = gt_cls >= 0
        pc = np.where(pr_cls >= 0, pr_cls, 0)          # void predictions: counted as errors
        wrong_void = known & (pr_cls < 0)
        np.add.at(self.confusion, (gt_cls[known & ~wrong_void], pc[known & ~wrong_void]), 1)
        # a void prediction on a labelled pixel is a false negative of the true class only
        np.add.at(self.void_fn, gt_cls[wrong_void], 1)
        gt_thing = known & self.is_thing[np.clip(gt_cls, 0, c - 1)]
        crowd = gt_thing & (gt % self.divisor == 0)
        gt_track = gt_thing & ~crowd
        pr_track = (pr_cls >= 0) & self.is_thing[np.clip(pr_cls, 0, c - 1)] & ~crowd
        self._merge(self._gt[sequence], _tracks(gt[gt_track]))
        self._merge(self._pred[sequence], _tracks(pred[pr_track]))
        both = gt_track & pr_track
        pairs, counts = np.unique(np.stack([gt[both], pred[both]], 1), axis=0,
                                  return_counts=True)
        self._merge(self._inter[sequence], {(int(a), int(b)): int(n)
                                            for (a, b), n in zip(pairs, counts)})

    def summarize(self) -> dict:
        """``{'stq', 'aq', 'sq', 'tracks', 'per_sequence': {seq: {'aq', 'tracks'}}}``."""
        total_aq, n_tracks, per_seq = 0.0, 0, {}
        for seq, gts in self._gt.items():
            preds, inter = self._pred[seq], self._inter[seq]
            seq_aq = 0.0
            for (g, p), tpa in inter.items():
                iou = tpa / (gts[g] + preds[p] - tpa)
                seq_aq += tpa * iou / gts[g]
            per_seq[seq] = {'aq': seq_aq / len(gts) if gts else 0.0, 'tracks': len(gts)}
            total_aq += seq_aq
            n_tracks += len(gts)
        aq = total_aq / n_tracks if n_tracks else 0.0
        tp = np.diag(self.confusion).astype(np.float64)
        fn = self.confusion.sum(1) - tp + self.void_fn
        fp = self.confusion.sum(0) - tp
        union = tp + fp + fn
        sq = float((tp[union > 0] / union[union > 0]).mean()) if (union > 0).any() else 0.0
        return {'stq': float(np.sqrt(aq * sq)), 'aq': float(aq), 'sq': sq,
                'tracks': n_tracks, 'per_sequence': per_seq}


def _table(ids: np.ndarray, divisor: int, is_thing: np.ndarray, gt: bool) -> SegmentTable:
    u = np.unique(ids)
    u = u[u >= 0]
    cls = u // divisor
    crowd = gt & is_thing[cls] & (u % divisor == 0) if len(u) else np.zeros(0, bool)
    return SegmentTable(u.astype(np.int64), cls.astype(np.int64), np.asarray(crowd, bool))


class VPQAccumulator:
    """VPQ over frames added in order, sequence by sequence.

    Args:
        labels: the label set.
        windows: window sizes in frames (:data:`VPS_WINDOWS`: Cityscapes-VPS's k = 0, 5, 10,
            15 at its annotation spacing).
        label_divisor: of the panoptic maps.
    """

    def __init__(self, labels: LabelSet, windows: Sequence[int] = VPS_WINDOWS,
                 label_divisor: int = 1000) -> None:
        if not windows or any(int(w) < 1 for w in windows):
            raise ValueError(f'windows must be positive frame counts, got {windows!r}')
        self.windows = tuple(int(w) for w in windows)
        self.divisor = int(label_divisor)
        self.is_thing = np.asarray(labels.is_thing, bool)
        cats = {c: {'isthing': int(t), 'name': n}
                for c, (t, n) in enumerate(zip(labels.is_thing, labels.names))}
        self.acc = {w: PQAccumulator(cats) for w in self.windows}
        self._recent: dict[Hashable, deque] = {}

    def add(self, sequence: Hashable, gt: np.ndarray, pred: np.ndarray) -> None:
        """The next frame of ``sequence`` (frames of a sequence must come in order)."""
        gt, pred = np.asarray(gt, np.int64), np.asarray(pred, np.int64)
        if gt.shape != pred.shape:
            raise ValueError(f'ground truth and prediction differ in size: {gt.shape} vs '
                             f'{pred.shape}')
        recent = self._recent.setdefault(sequence, deque(maxlen=max(self.windows)))
        recent.append((gt, pred))
        for w in self.windows:
            if len(recent) >= w:
                frames = list(recent)[-w:]
                g = np.concatenate([f[0] for f in frames], axis=1)
                p = np.concatenate([f[1] for f in frames], axis=1)
                self.acc[w].add(g, _table(g, self.divisor, self.is_thing, True), p,
                                _table(p, self.divisor, self.is_thing, False), void=-1)

    def end(self, sequence: Hashable) -> None:
        """Forget the last frames of a finished sequence."""
        self._recent.pop(sequence, None)

    def summarize(self) -> dict:
        """``{'vpq': mean over windows, 'windows': {w: panoptic pq layout}}`` (PQ in 0-1)."""
        per = {w: a.summarize() for w, a in self.acc.items()}
        return {'vpq': float(np.mean([r['All']['pq'] for r in per.values()])),
                'windows': per}


class IdSwitchCounter:
    """ID switches over frames added in order, sequence by sequence.

    Args:
        labels: the label set (``is_thing``).
        label_divisor: of the panoptic maps.
    """

    def __init__(self, labels: LabelSet, label_divisor: int = 1000) -> None:
        self.is_thing = np.asarray(labels.is_thing, bool)
        self.divisor = int(label_divisor)
        self.switches = 0
        self._last: dict[tuple[Hashable, int], int] = {}

    def add(self, sequence: Hashable, gt: np.ndarray, pred: np.ndarray) -> None:
        """The next frame of ``sequence``: ``[H, W]`` panoptic maps (void -1)."""
        gt = np.asarray(gt, np.int64).ravel()
        pred = np.asarray(pred, np.int64).ravel()
        c = len(self.is_thing)
        gt_cls = np.where(gt >= 0, gt // self.divisor, -1)
        track = (gt_cls >= 0) & self.is_thing[np.clip(gt_cls, 0, c - 1)] & \
            (gt % self.divisor != 0)
        pr_cls = np.where(pred >= 0, pred // self.divisor, -1)
        pr_thing = (pr_cls >= 0) & self.is_thing[np.clip(pr_cls, 0, c - 1)]
        g_ids, g_area = np.unique(gt[track], return_counts=True)
        p_ids, p_area = np.unique(pred[pr_thing & (gt >= 0)], return_counts=True)
        both = track & pr_thing & (gt_cls == pr_cls)
        if not both.any():
            return
        pairs, inter = np.unique(np.stack([gt[both], pred[both]], 1), axis=0,
                                 return_counts=True)
        ga = g_area[np.searchsorted(g_ids, pairs[:, 0])]
        pa = p_area[np.searchsorted(p_ids, pairs[:, 1])]
        matched = inter / (ga + pa - inter) > 0.5
        for g, p in pairs[matched].tolist():
            last = self._last.get((sequence, g))
            if last is not None and last != p:
                self.switches += 1
            self._last[(sequence, g)] = p

    def summarize(self) -> dict:
        """``{'id_switches', 'tracked_objects', 'per_100'}``."""
        tracked = len(self._last)
        return {'id_switches': self.switches, 'tracked_objects': tracked,
                'per_100': 100.0 * self.switches / tracked if tracked else 0.0}
