"""``panoptic demo``: the main job on bundled defaults.

Until the segmentation model and the node land, the demo runs what exists: it renders a
synthetic validation set, loads it back through the dataset loader, writes a montage of images
and labels, and runs the panoptic-quality evaluator on predictions made by shifting the ground
truth by a few pixels, which shows how PQ reacts to misalignment. No model is involved yet and
the demo says so.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

NUM_IMAGES, HEIGHT, WIDTH, SEED = 24, 512, 1024, 2024
SHIFTS = (0, 1, 2, 4, 8, 16)


def _shifted_predictions(gt_json: Path, gt_dir: Path, out: Path, shift: int) -> Path:
    """Predictions = ground truth moved ``shift`` pixels right and down (borders void)."""
    from panoptic_ros.encoding import read_id_png, write_id_png

    gt = json.loads(gt_json.read_text())
    out.mkdir(parents=True, exist_ok=True)
    anns = []
    for ann in gt['annotations']:
        ids = read_id_png(gt_dir / ann['file_name'])
        moved = np.zeros_like(ids)
        moved[shift:, shift:] = ids[:ids.shape[0] - shift, :ids.shape[1] - shift]
        write_id_png(out / ann['file_name'], moved)
        present = set(np.unique(moved).tolist())
        anns.append({'image_id': ann['image_id'], 'file_name': ann['file_name'],
                     'segments_info': [{'id': s['id'], 'category_id': s['category_id']}
                                       for s in ann['segments_info'] if s['id'] in present]})
    path = out.with_suffix('.json')
    path.write_text(json.dumps({'annotations': anns}))
    return path


def _montage(dataset, path: Path, count: int = 6) -> None:
    import cv2

    from panoptic_ros.palette import colorize

    rows = []
    for i in range(min(count, len(dataset))):
        s = dataset[i]
        overlay = colorize(s.semantic, s.instance, s.label_set)
        small = (WIDTH // 2, HEIGHT // 2)
        rows.append(np.hstack([cv2.resize(s.image, small), cv2.resize(
            overlay, small, interpolation=cv2.INTER_NEAREST)]))
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


def run_demo(out: Path) -> int:
    from panoptic_ros.datasets.cityscapes import CityscapesDataset
    from panoptic_ros.evaluation.pq_files import evaluate_files
    from panoptic_ros.fileio import atomic_write_json
    from panoptic_ros.synth.writer import write_dataset

    out.mkdir(parents=True, exist_ok=True)
    data = out / 'synthetic'
    print(f'[1/3] rendering {NUM_IMAGES} synthetic street scenes ({HEIGHT}x{WIDTH}) '
          f'into {data}')
    stats = write_dataset(data, 'val', NUM_IMAGES, HEIGHT, WIDTH, SEED, progress=False)
    print(f'      {NUM_IMAGES / stats["seconds"]:.1f} images/s on {stats["workers"]} workers')

    dataset = CityscapesDataset(data, 'val')
    counts = np.zeros(dataset.label_set.num_classes, np.int64)
    for i in range(len(dataset)):
        for seg in dataset[i].segments:
            counts[seg.class_id] += not seg.iscrowd
    print(f'[2/3] loaded {len(dataset)} samples; segments per class: ' + ', '.join(
        f'{n} {c}' for n, c in zip(dataset.label_set.names, counts) if c))
    _montage(dataset, out / 'montage.png')

    print('[3/3] evaluator demonstration: PQ of the ground truth shifted by k pixels '
          '(no model yet: it lands with the dense-detections issue)')
    gt_json = data / 'gtFine' / 'cityscapes_panoptic_val.json'
    gt_dir = data / 'gtFine' / 'cityscapes_panoptic_val'
    table = {}
    for shift in SHIFTS:
        start = time.perf_counter()
        pred_json = _shifted_predictions(gt_json, gt_dir, out / 'shifted' / f'shift_{shift}',
                                         shift)
        results, _ = evaluate_files(gt_json, gt_dir, pred_json, pred_json.with_suffix(''))
        table[shift] = {g: results[g] for g in ('All', 'Things', 'Stuff')}
        print(f'      shift {shift:2d} px: PQ {100 * results["All"]["pq"]:5.1f}  '
              f'things {100 * results["Things"]["pq"]:5.1f}  '
              f'stuff {100 * results["Stuff"]["pq"]:5.1f}  '
              f'({time.perf_counter() - start:.2f} s)')
    atomic_write_json(out / 'pq_vs_shift.json', table)
    print(f'done: {out / "montage.png"} (images | panoptic colours), '
          f'{out / "pq_vs_shift.json"}')
    return 0
