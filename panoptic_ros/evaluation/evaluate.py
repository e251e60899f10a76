"""Run a model over a dataset: PQ/SQ/RQ through the project's evaluator, and mIoU.

Category ids in the results are the label set's dataset ids (Cityscapes labelIds, COCO
category ids), as in the dataset's panoptic JSON, so ``--out`` has the layout of
``panoptic pq``; predictions can be written in COCO panoptic format for ``panoptic pq`` or the
official tools.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from panoptic_ros.datasets.sample import Sample
from panoptic_ros.encoding import decode_panoptic
from panoptic_ros.errors import PanopticError
from panoptic_ros.evaluation.pq import PQAccumulator, SegmentTable
from panoptic_ros.labels import LabelSet


class SemanticConfusion:
    """Pixel confusion of semantic maps; void ground truth is ignored, void predictions are
    errors."""

    def __init__(self, num_classes: int) -> None:
        self.c = num_classes
        self.matrix = np.zeros((num_classes, num_classes + 1), np.int64)

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """``gt``, ``pred``: ``[H, W]`` class ids; values ``>= num_classes`` are void."""
        valid = gt < self.c
        p = np.minimum(pred[valid].astype(np.int64), self.c)
        self.matrix += np.bincount(gt[valid].astype(np.int64) * (self.c + 1) + p,
                                   minlength=self.c * (self.c + 1)).reshape(self.c, self.c + 1)

    def iou(self) -> np.ndarray:
        """``[C]`` IoU per class; NaN where a class is in neither map."""
        tp = np.diag(self.matrix[:, :self.c]).astype(np.float64)
        union = self.matrix.sum(1) + self.matrix[:, :self.c].sum(0) - tp
        with np.errstate(invalid='ignore', divide='ignore'):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0


def categories(labels: LabelSet) -> dict[int, dict]:
    """Evaluator categories keyed by dataset id."""
    return {int(c['id']): c for c in labels.to_categories()}


def ground_truth_from_panoptic(panoptic: np.ndarray, labels: LabelSet,
                               label_divisor: int) -> tuple[SegmentTable, np.ndarray]:
    """Segments and semantic map of a ground-truth panoptic image (``class_id *
    label_divisor + instance_id``, void -1, as ``panoptic bag make`` writes it).

    A thing segment with instance 0 is a crowd region, as in Cityscapes.

    Returns:
        ``(table, semantic)``: the segment table (dataset ids) and ``[H, W] uint16`` class ids
        with ``labels.void_id`` on void.
    """
    ids = np.unique(panoptic)
    ids = ids[ids >= 0].astype(np.int64)
    classes = ids // label_divisor
    if classes.size and int(classes.max()) >= labels.num_classes:
        raise PanopticError(f'ground truth has class {int(classes.max())} but the label set '
                            f'{labels.name} has {labels.num_classes} classes (label divisor '
                            f'{label_divisor})')
    crowd = labels.is_thing[classes] & (ids % label_divisor == 0)
    table = SegmentTable.build(ids.tolist(), labels.dataset_ids[classes], crowd.tolist())
    semantic, _ = decode_panoptic(panoptic, labels.void_id, label_divisor)
    return table, semantic.astype(np.uint16)


class PanopticEvaluator:
    """Accumulates PQ and mIoU of predictions against samples."""

    def __init__(self, labels: LabelSet) -> None:
        self.labels = labels
        self.dataset_ids = labels.dataset_ids
        self.pq = PQAccumulator(categories(labels))
        self.semantic = SemanticConfusion(labels.num_classes)

    def add(self, sample: Sample, result) -> None:
        """``result``: a :class:`PanopticResult` at the sample's size (any device)."""
        gt = SegmentTable.build([g.id for g in sample.segments],
                                self.dataset_ids[[g.class_id for g in sample.segments]],
                                [g.iscrowd for g in sample.segments])
        self.add_maps(sample.name, sample.panoptic(result.label_divisor), gt, sample.semantic,
                      result.panoptic.cpu().numpy(), result.segment_ids.cpu().numpy(),
                      result.segment_classes.cpu().numpy(), result.semantic.cpu().numpy())

    def add_maps(self, name: str, gt_panoptic: np.ndarray, gt: SegmentTable,
                 gt_semantic: np.ndarray, pred_panoptic: np.ndarray, pred_ids: np.ndarray,
                 pred_classes: np.ndarray, pred_semantic: np.ndarray) -> None:
        """One image from label maps (what a bag or the node's messages carry).

        Args:
            gt_panoptic, pred_panoptic: ``[H, W]`` panoptic ids, void -1.
            gt: ground-truth segments (ids in ``gt_panoptic``, dataset ids, crowd flags).
            gt_semantic, pred_semantic: ``[H, W]`` label-set class ids, void ``void_id``.
            pred_ids, pred_classes: ``[S]`` predicted segment ids and their label-set classes.
        """
        pred = SegmentTable.build(np.asarray(pred_ids).tolist(),
                                  self.dataset_ids[np.asarray(pred_classes, np.int64)])
        self.pq.add(gt_panoptic, gt, pred_panoptic, pred, image_id=name, void=-1)
        self.semantic.add(gt_semantic, pred_semantic)

    def summarize(self) -> dict:
        """``panoptic pq``'s layout plus ``miou`` and ``iou_per_class`` (by dataset id)."""
        out = self.pq.summarize()
        out['miou'] = self.semantic.miou()
        out['iou_per_class'] = {int(d): (None if np.isnan(v) else float(v))
                                for d, v in zip(self.dataset_ids, self.semantic.iou())}
        return out


def write_coco_prediction(result, labels: LabelSet, image_id: str, png_dir: Path) -> dict:
    """Write the RGB-id PNG of a result; return its ``annotations`` entry.

    Segment ids are ``dataset_id * label_divisor + instance_id`` (the Cityscapes panoptic
    convention, never 0: COCO reserves 0 for void), categories are dataset ids.
    """
    from panoptic_ros.encoding import write_id_png

    div = result.label_divisor
    panoptic = result.panoptic.cpu().numpy().astype(np.int64)
    lut = labels.dataset_ids
    ids = np.where(panoptic < 0, 0, lut[np.maximum(panoptic, 0) // div] * div + panoptic % div)
    file_name = f'{image_id}.png'
    write_id_png(png_dir / file_name, ids)
    classes = result.segment_classes.cpu().numpy()
    seg_ids = result.segment_ids.cpu().numpy().astype(np.int64)
    segs = [{'id': int(lut[c] * div + i % div), 'category_id': int(lut[c]), 'iscrowd': 0,
             'area': int(a), 'bbox': [int(v) for v in b], 'score': float(s)}
            for i, c, a, b, s in zip(seg_ids, classes, result.segment_areas.tolist(),
                                     result.segment_boxes.tolist(),
                                     result.segment_scores.tolist())]
    return {'image_id': image_id, 'file_name': file_name, 'segments_info': segs}


def evaluate(predict: Callable[[list[np.ndarray]], list], samples: Iterable[Sample],
             labels: LabelSet, *, batch_size: int = 1, coco_dir: Path | None = None,
             on_batch: Callable[[int], None] | None = None) -> tuple[dict, list[dict]]:
    """Run ``predict`` (e.g. a :class:`~panoptic_ros.inference.Predictor`) over ``samples``.

    Returns:
        ``(results, annotations)``: see :meth:`PanopticEvaluator.summarize`; COCO
        ``annotations`` entries when ``coco_dir`` is given (PNGs written there), else empty.
    """
    ev = PanopticEvaluator(labels)
    annotations: list[dict] = []
    batch: list[Sample] = []

    def flush() -> None:
        for s, r in zip(batch, predict([s.image for s in batch])):
            ev.add(s, r)
            if coco_dir is not None:
                annotations.append(write_coco_prediction(r, labels, s.name, coco_dir))
        if on_batch:
            on_batch(len(batch))
        batch.clear()

    for s in samples:
        batch.append(s)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return ev.summarize(), annotations
