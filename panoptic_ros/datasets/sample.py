"""The one sample type every dataset returns."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from panoptic_ros.encoding import LABEL_DIVISOR, PANOPTIC_VOID, encode_panoptic
from panoptic_ros.errors import PanopticError
from panoptic_ros.labels import LabelSet
from panoptic_ros.segments import segment_stats


@dataclass(frozen=True)
class Segment:
    """One ground-truth segment of a sample."""

    id: int               # panoptic id: class_id * LABEL_DIVISOR + instance_id
    class_id: int         # LabelSet class id
    is_thing: bool
    iscrowd: bool         # a thing region without instances (a group)
    area: int             # pixels
    bbox: tuple[int, int, int, int]  # x, y, width, height


@dataclass(frozen=True)
class Sample:
    """An image with its panoptic ground truth.

    Attributes:
        image: ``[H, W, 3] uint8`` RGB.
        semantic: ``[H, W] uint16`` class ids of the label set; ``void_id`` on void.
        instance: ``[H, W] int32`` instance ids ``1..N`` unique in the image for thing
            instances; 0 for stuff, void and crowd regions.
        void_id: semantic value of void.
        label_set: the classes.
        name: image identifier (file stem).
        segments: every segment, in increasing panoptic id.
        track: ``[H, W] int64`` the dataset's own id of each thing instance's pixels (its
            segment id, which video datasets keep for an object through a sequence), 0
            elsewhere; ``None`` unless the dataset was asked for it.
    """

    image: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    void_id: int
    label_set: LabelSet = field(repr=False)
    name: str = ''
    segments: tuple[Segment, ...] = ()
    track: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_maps(cls, image, semantic, instance, label_set: LabelSet,
                  name: str = '', track: np.ndarray | None = None) -> 'Sample':
        """Build a sample and compute its segments from the label images."""
        if image.shape[:2] != semantic.shape or semantic.shape != instance.shape:
            raise PanopticError(f'{name}: image {image.shape}, semantic {semantic.shape} and '
                                f'instance {instance.shape} sizes differ')
        sample = cls(image, semantic.astype(np.uint16, copy=False),
                     instance.astype(np.int32, copy=False), label_set.void_id, label_set, name,
                     track=track)
        return replace(sample, segments=sample._compute_segments())

    def panoptic(self, label_divisor: int = LABEL_DIVISOR) -> np.ndarray:
        """``[H, W] int32`` panoptic ids, ``PANOPTIC_VOID`` on void."""
        return encode_panoptic(self.semantic, self.instance, self.void_id, label_divisor)

    def with_maps(self, image, semantic, instance) -> 'Sample':
        """Same sample with transformed images (segments recomputed)."""
        return Sample.from_maps(image, semantic, instance, self.label_set, self.name)

    def _compute_segments(self) -> tuple[Segment, ...]:
        pan = self.panoptic()
        if self.instance.size and int(self.instance.max()) >= LABEL_DIVISOR:
            raise PanopticError(f'{self.name}: more than {LABEL_DIVISOR - 1} instances')
        uniq, area, bbox, _ = segment_stats(pan - PANOPTIC_VOID)  # void -> 0
        uniq = uniq + PANOPTIC_VOID
        keep = uniq >= 0
        is_thing = self.label_set.is_thing
        out = []
        for pid, a, b in zip(uniq[keep], area[keep], bbox[keep]):
            cls_id, inst = divmod(int(pid), LABEL_DIVISOR)
            thing = bool(is_thing[cls_id])
            out.append(Segment(int(pid), cls_id, thing, thing and inst == 0, int(a),
                               tuple(int(v) for v in b)))
        return tuple(out)


class TrackNumbering:
    """Track ids ``1..`` per class for the objects of video samples (:attr:`Sample.track`), in
    order of first appearance; an object is its sequence and its dataset id, so objects of
    different sequences get different ids.

    Args:
        label_divisor: of the maps :meth:`panoptic` returns; at most ``label_divisor - 1``
            objects per class.
    """

    def __init__(self, label_divisor: int) -> None:
        self.divisor = int(label_divisor)
        self.ids: dict[tuple[str, int], int] = {}
        self.count: dict[int, int] = {}

    def panoptic(self, sample: 'Sample', sequence: str) -> np.ndarray:
        """``[H, W] int64`` ``class_id * label_divisor + track id`` (0 on stuff and crowd),
        void -1."""
        if sample.track is None:
            raise PanopticError(f'{sample.name}: the dataset gives no object ids (open it with '
                                'tracks=True)')
        sem = sample.semantic.astype(np.int64)
        out = np.where(sem == sample.void_id, -1, sem * self.divisor)
        inst = sample.track > 0
        if inst.any():
            raw, first = np.unique(sample.track[inst], return_index=True)
            cls = sem[inst][first]
            tracks = np.empty(len(raw), np.int64)
            for k, (r, c) in enumerate(zip(raw.tolist(), cls.tolist())):
                if (sequence, r) not in self.ids:
                    self.count[c] = self.count.get(c, 0) + 1
                    if self.count[c] >= self.divisor:
                        raise PanopticError(f'more than {self.divisor - 1} objects of class {c} '
                                            f'(label divisor {self.divisor}) by {sequence!r}: '
                                            'use fewer sequences')
                    self.ids[(sequence, r)] = self.count[c]
                tracks[k] = self.ids[(sequence, r)]
            out[inst] += tracks[np.searchsorted(raw, sample.track[inst])]
        return out


def sample_from_panoptic(image: np.ndarray, ids: np.ndarray, segments_info: Sequence[Mapping],
                         label_set: LabelSet, name: str = '', track: bool = False) -> Sample:
    """A sample from a COCO-format panoptic id image and its ``segments_info``.

    Category ids are dataset ids of ``label_set``; thing segments that are not crowd get
    instance ids 1..N in the order listed; ids not listed are void. ``track``: also fill
    :attr:`Sample.track` with those segments' ids.
    """
    n = len(segments_info)
    seg_ids = np.empty(n, np.int64)
    cls_ids = np.empty(n, np.int64)
    inst_ids = np.zeros(n, np.int64)
    next_inst = 1
    for k, s in enumerate(segments_info):
        seg_ids[k] = s['id']
        cls_ids[k] = label_set.class_of_dataset_id(int(s['category_id']))
        if label_set.is_thing[cls_ids[k]] and not s.get('iscrowd', 0):
            inst_ids[k] = next_inst
            next_inst += 1
    hi = int(ids.max()) if ids.size else 0
    sem_lut = np.full(max(hi, int(seg_ids.max(initial=0))) + 1, label_set.void_id, np.uint16)
    inst_lut = np.zeros(len(sem_lut), np.int32)
    sem_lut[seg_ids] = cls_ids
    inst_lut[seg_ids] = inst_ids
    tracks = None
    if track:
        track_lut = np.zeros(len(sem_lut), np.int64)
        track_lut[seg_ids] = np.where(inst_ids > 0, seg_ids, 0)
        tracks = track_lut[ids]
    return Sample.from_maps(image, sem_lut[ids], inst_lut[ids], label_set, name, tracks)
