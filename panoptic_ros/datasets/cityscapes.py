"""Cityscapes-layout datasets: real Cityscapes and ``panoptic synth`` output alike.

Ground truth is read either from ``gtFine/<split>/<city>/*_gtFine_instanceIds.png`` or from the
panoptic JSON + PNGs (``gtFine/cityscapes_panoptic_<split>.json``); both give the same sample.

Images are named ``<city>_<sequence>_<frame>``; frames of one sequence are consecutive in the
dataset's order (:meth:`CityscapesDataset.sequence`). Cityscapes' own stills are one
annotated frame per sequence; ``panoptic synth --sequence-length`` writes several, whose
objects keep their segment ids (:attr:`~panoptic_ros.datasets.sample.Sample.track` with
``tracks=True``), as video datasets such as Cityscapes-VPS do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from panoptic_ros.datasets.sample import Sample, sample_from_panoptic
from panoptic_ros.encoding import read_id_png
from panoptic_ros.errors import PanopticError
from panoptic_ros.fileio import read_json
from panoptic_ros.labels import LabelSet, cityscapes


def read_rgb(path: Path) -> np.ndarray:
    """``[H, W, 3] uint8`` RGB image; :class:`PanopticError` if it cannot be read."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise PanopticError(f'cannot read image {path}')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class CityscapesDataset:
    """Indexable dataset of :class:`Sample`.

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val``, ...
        source: ``'instanceIds'`` or ``'panoptic'``: which ground-truth files to read.
        label_set: classes (default: the 19 Cityscapes evaluation classes).
        tracks: fill :attr:`Sample.track` (the objects' ids, for video metrics).
    """

    def __init__(self, root: str | Path, split: str, source: str = 'panoptic',
                 label_set: LabelSet | None = None, tracks: bool = False) -> None:
        self.root, self.split, self.source = Path(root), split, source
        self.tracks = tracks
        self.label_set = label_set or cityscapes()
        if source not in ('panoptic', 'instanceIds'):
            raise PanopticError(f"source must be 'panoptic' or 'instanceIds', got {source!r}")
        self.images = sorted((self.root / 'leftImg8bit' / split).glob('*/*_leftImg8bit.png'))
        if not self.images:
            raise PanopticError(f'no images in {self.root / "leftImg8bit" / split} (expected '
                                '<city>/<name>_leftImg8bit.png, the Cityscapes layout)')
        self.stems = [p.name[:-len('_leftImg8bit.png')] for p in self.images]
        if source == 'panoptic':
            path = self.root / 'gtFine' / f'cityscapes_panoptic_{split}.json'
            data = read_json(path, 'panoptic JSON')
            self._anns = {a['image_id']: a for a in data['annotations']}
            missing = [s for s in self.stems if s not in self._anns]
            if missing:
                raise PanopticError(f'{path} has no annotation for {missing[:3]} '
                                    f'({len(missing)} images)')
            # category ids are labelIds, as createPanopticImgs writes by default
            self._pan_dir = self.root / 'gtFine' / f'cityscapes_panoptic_{split}'
        # labelId image -> class id lookup (labels not evaluated -> void)
        self._label_lut = np.full(256, self.label_set.void_id, np.uint16)
        d2c = self.label_set.dataset_to_class
        self._label_lut[:min(256, len(d2c))] = d2c[:256]

    def __len__(self) -> int:
        return len(self.images)

    def sequence(self, index: int) -> tuple[str, int]:
        """``(sequence, frame)`` of an image: ``('alderley_000004', 19)`` for
        ``alderley_000004_000019``."""
        seq, _, frame = self.stems[index].rpartition('_')
        try:
            return seq, int(frame)
        except ValueError:
            raise PanopticError(f'{self.images[index]}: not a Cityscapes name '
                                '(<city>_<sequence>_<frame>_leftImg8bit.png)') from None

    def __getitem__(self, index: int) -> Sample:
        stem = self.stems[index]
        image = read_rgb(self.images[index])
        if self.source == 'panoptic':
            ann = self._anns[stem]
            ids = read_id_png(self._pan_dir / ann['file_name'])
            return sample_from_panoptic(image, ids, ann['segments_info'], self.label_set, stem,
                                        self.tracks)
        return self._from_instance_ids(image, stem)

    def _from_instance_ids(self, image: np.ndarray, stem: str) -> Sample:
        import cv2

        city = stem.split('_')[0]
        path = self.root / 'gtFine' / self.split / city / f'{stem}_gtFine_instanceIds.png'
        inst = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if inst is None:
            raise PanopticError(f'cannot read {path}')
        inst = inst.astype(np.int32)
        label = np.where(inst >= 1000, inst // 1000, inst)
        semantic = self._label_lut[np.clip(label, 0, 255)]
        # instances 1..N in increasing instanceIds order, for thing classes only
        is_inst = (inst >= 1000) & self.label_set.is_thing[np.minimum(
            semantic, self.label_set.num_classes - 1)] & (semantic != self.label_set.void_id)
        uniq = np.unique(inst[is_inst])
        lut = np.zeros(int(inst.max()) + 1, np.int32)
        lut[uniq] = np.arange(1, len(uniq) + 1)
        instance = np.where(is_inst, lut[inst], 0)
        track = np.where(is_inst, inst, 0).astype(np.int64) if self.tracks else None
        return Sample.from_maps(image, semantic, instance, self.label_set, stem, track)
