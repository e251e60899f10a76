"""``panoptic pq``: PQ of COCO-format panoptic predictions against ground truth files.

Inputs are what the official tools read: a JSON with ``annotations[].segments_info`` and
``categories``, and a folder of PNGs with RGB-encoded ids. Images are decoded and evaluated in
worker processes (``--workers``, default all cores); each worker accumulates statistics and the
parent merges them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from panoptic_ros.errors import PanopticError
from panoptic_ros.evaluation.pq import PQAccumulator, SegmentTable
from panoptic_ros.fileio import read_json
from panoptic_ros.parallel import opencv_single_threaded, process_pool


def load_json(path: str | Path, what: str) -> dict:
    data = read_json(path, f'{what} JSON')
    if not isinstance(data, dict) or not isinstance(data.get('annotations'), list):
        raise PanopticError(f'{what} JSON {path}: expected an object with an "annotations" '
                            'list (COCO panoptic format)')
    return data


def match_annotations(gt_json: Mapping, pred_json: Mapping) -> list[tuple[dict, dict]]:
    """Pairs (ground truth, prediction) by ``image_id``; every GT image needs a prediction."""
    preds = {a['image_id']: a for a in pred_json['annotations']}
    pairs = []
    for gt in gt_json['annotations']:
        pred = preds.get(gt['image_id'])
        if pred is None:
            raise PanopticError(f'no prediction for the image with id {gt["image_id"]!r}')
        pairs.append((gt, pred))
    return pairs


_WORKER: dict = {}


def _init_worker(categories: Mapping, gt_dir: str, pred_dir: str) -> None:
    _WORKER.update(categories=categories, gt_dir=gt_dir, pred_dir=pred_dir)


def _eval_chunk(pairs: Sequence[tuple[dict, dict]]):
    from panoptic_ros.encoding import read_id_png

    acc = PQAccumulator(_WORKER['categories'])
    for gt, pred in pairs:
        image_id = str(gt['image_id'])
        gt_ids = read_id_png(os.path.join(_WORKER['gt_dir'], gt['file_name']))
        pred_ids = read_id_png(os.path.join(_WORKER['pred_dir'], pred['file_name']))
        acc.add(gt_ids, SegmentTable.from_segments_info(gt['segments_info'], True, image_id),
                pred_ids,
                SegmentTable.from_segments_info(pred['segments_info'], False, image_id),
                image_id=image_id)
    return acc.state()


def evaluate_files(gt_json_path: str | Path, gt_dir: str | Path, pred_json_path: str | Path,
                   pred_dir: str | Path, workers: int | None = None) -> tuple[dict, dict]:
    """Evaluate a prediction folder against ground truth.

    Returns:
        ``(results, categories)``: results in the official layout (see
        :meth:`PQAccumulator.summarize`) and the ground truth's ``{id: category}``.
    """
    gt_json = load_json(gt_json_path, 'ground truth')
    pred_json = load_json(pred_json_path, 'prediction')
    if not isinstance(gt_json.get('categories'), list):
        raise PanopticError(f'ground truth JSON {gt_json_path}: no "categories" list')
    for folder, what in ((gt_dir, 'ground truth'), (pred_dir, 'prediction')):
        if not Path(folder).is_dir():
            raise PanopticError(f'{what} folder {folder} does not exist')
    categories = {int(c['id']): c for c in gt_json['categories']}
    pairs = match_annotations(gt_json, pred_json)
    acc = PQAccumulator(categories)
    workers = max(1, min(workers or os.cpu_count() or 1, len(pairs)))
    if workers == 1 or len(pairs) <= 1:
        _init_worker(categories, str(gt_dir), str(pred_dir))
        with opencv_single_threaded():
            acc.load_state(_eval_chunk(pairs))
        return acc.summarize(), categories
    # Chunks of one or two pairs keep every core busy to the end (a pair decodes in ~50 ms at
    # 1024x2048, so one leftover chunk of eight would idle a core for 0.4 s); each returns only
    # four short arrays.
    chunk = 1 if len(pairs) < 64 * workers else 2
    chunks = [pairs[i:i + chunk] for i in range(0, len(pairs), chunk)]
    with process_pool(workers, _init_worker, (categories, str(gt_dir), str(pred_dir))) as pool:
        for state in pool.imap_unordered(_eval_chunk, chunks):
            part = PQAccumulator(categories)
            part.load_state(state)
            acc.merge(part)
    return acc.summarize(), categories
