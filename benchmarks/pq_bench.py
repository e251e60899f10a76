"""Panoptic quality evaluator speed: `panoptic pq` vs PNG decoding vs the official script.

Builds ``--num`` ground-truth/prediction pairs at ``--height x --width`` (ground truth from
``panoptic synth``, predictions from it by shifting, dropping, merging and relabelling
segments), then measures in one run:

* decode floor: reading every PNG (both folders) on all cores, nothing else, in a pool
  started inside this process (no interpreter start-up, OpenCV already imported);
* decode floor as a whole process: a program that only reads every PNG on all cores (this
  script with ``--decode-only``), start-up included, as ``panoptic pq`` is timed;
* ``panoptic pq`` as a whole process (start-up included);
* cityscapesscripts' ``evalPanopticSemanticLabeling`` as a whole process;
* the in-memory evaluator (arrays in, ``PQAccumulator.add``) per pair on one core.

Usage: python benchmarks/pq_bench.py [--num 60] [--height 1024] [--width 2048] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from panoptic_ros.fileio import atomic_write_json


def make_predictions(gt_json: Path, gt_dir: Path, pred_dir: Path, seed: int = 0) -> Path:
    from panoptic_ros.encoding import read_id_png, write_id_png

    rng = np.random.default_rng(seed)
    gt = json.loads(gt_json.read_text())
    pred_dir.mkdir(parents=True)
    anns = []
    for ann in gt['annotations']:
        ids = read_id_png(gt_dir / ann['file_name']).astype(np.int64)
        ids = np.roll(ids, (int(rng.integers(-3, 4)), int(rng.integers(-6, 7))), axis=(0, 1))
        segs = ann['segments_info']
        remap = {}
        for s in segs:
            r = rng.random()
            if r < 0.1:
                remap[s['id']] = 0                       # missed
            elif r < 0.2 and s['id'] >= 1000:
                remap[s['id']] = segs[0]['id']           # merged into another
            else:
                remap[s['id']] = s['id']
        keys = np.array(list(remap) + [0])
        vals = np.array(list(remap.values()) + [0])
        lut = np.zeros(int(ids.max()) + 1, np.int64)
        lut[keys] = vals
        ids = lut[ids]
        present = set(np.unique(ids).tolist()) - {0}
        new_id = {i: int(1 + k * 37) for k, i in enumerate(sorted(present))}  # relabel
        lut = np.zeros(int(ids.max()) + 1, np.int64)
        for a, b in new_id.items():
            lut[a] = b
        write_id_png(pred_dir / ann['file_name'], lut[ids])
        cat = {s['id']: s['category_id'] for s in segs}
        anns.append({'image_id': ann['image_id'], 'file_name': ann['file_name'],
                     'segments_info': [{'id': new_id[i], 'category_id': cat[i]}
                                       for i in sorted(present)]})
    out = pred_dir.with_suffix('.json')
    out.write_text(json.dumps({'annotations': anns}))
    return out


def _decode(path: str) -> int:
    import cv2

    return cv2.imread(path, cv2.IMREAD_UNCHANGED).shape[0]


def decode_floor(files: list[str]) -> float:
    from panoptic_ros.parallel import process_pool

    start = time.perf_counter()
    with process_pool(os.cpu_count()) as pool:
        list(pool.imap_unordered(_decode, files, chunksize=4))
    return time.perf_counter() - start


def decode_only(list_file: str) -> None:
    """The whole-process floor: read the PNGs named in ``list_file`` on all cores."""
    files = Path(list_file).read_text().split('\n')
    from panoptic_ros.parallel import process_pool

    with process_pool(os.cpu_count()) as pool:
        list(pool.imap_unordered(_decode, files, chunksize=4))


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def in_memory_ms(gt_json: Path, gt_dir: Path, pred_json: Path, pred_dir: Path) -> list[float]:
    from panoptic_ros.encoding import read_id_png
    from panoptic_ros.evaluation.pq import PQAccumulator, SegmentTable
    from panoptic_ros.parallel import opencv_single_threaded

    gt = json.loads(gt_json.read_text())
    preds = {a['image_id']: a for a in json.loads(pred_json.read_text())['annotations']}
    acc = PQAccumulator({c['id']: c for c in gt['categories']})
    times = []
    with opencv_single_threaded():
        for ann in gt['annotations']:
            pa = preds[ann['image_id']]
            g = read_id_png(gt_dir / ann['file_name'])
            p = read_id_png(pred_dir / pa['file_name'])
            gs = SegmentTable.from_segments_info(ann['segments_info'], True)
            ps = SegmentTable.from_segments_info(pa['segments_info'], False)
            start = time.perf_counter()
            acc.add(g, gs, p, ps)
            times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num', type=int, default=60)
    parser.add_argument('--height', type=int, default=1024)
    parser.add_argument('--width', type=int, default=2048)
    parser.add_argument('--repeat', type=int, default=3, help='runs of each timed command')
    parser.add_argument('--out', help='write the figures as JSON here')
    parser.add_argument('--decode-only', metavar='LIST', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.decode_only:
        decode_only(args.decode_only)
        return
    tmp = Path(tempfile.mkdtemp(prefix='pq_bench_'))
    try:
        from panoptic_ros.synth.writer import write_dataset

        write_dataset(tmp, 'val', args.num, args.height, args.width, seed=11, progress=False)
        gt_json = tmp / 'gtFine' / 'cityscapes_panoptic_val.json'
        gt_dir = tmp / 'gtFine' / 'cityscapes_panoptic_val'
        pred_dir = tmp / 'pred'
        pred_json = make_predictions(gt_json, gt_dir, pred_dir)
        files = [str(p) for p in sorted(gt_dir.glob('*.png')) + sorted(pred_dir.glob('*.png'))]
        list_file = tmp / 'files.txt'
        list_file.write_text('\n'.join(files))
        floor_cmd = [sys.executable, str(Path(__file__).resolve()), '--decode-only',
                     str(list_file)]
        bin_dir = Path(sys.executable).parent
        ours_cmd = [str(bin_dir / 'panoptic'), 'pq', '--gt-json', str(gt_json), '--gt-dir',
                    str(gt_dir), '--pred-json', str(pred_json), '--pred-dir', str(pred_dir),
                    '--out', str(tmp / 'ours.json')]
        official_cmd = [sys.executable, '-m',
                        'cityscapesscripts.evaluation.evalPanopticSemanticLabeling',
                        '--gt-json-file', str(gt_json), '--gt-folder', str(gt_dir),
                        '--prediction-json-file', str(pred_json), '--prediction-folder',
                        str(pred_dir), '--results_file', str(tmp / 'official.json')]
        floor, floor_process, ours, official = [], [], [], []
        for _ in range(args.repeat):  # interleaved, so drifts in machine load hit all four
            floor.append(decode_floor(files))
            floor_process.append(timed(floor_cmd))
            ours.append(timed(ours_cmd))
            official.append(timed(official_cmd))
        mem = in_memory_ms(gt_json, gt_dir, pred_json, pred_dir)
        a = json.loads((tmp / 'ours.json').read_text())
        b = json.loads((tmp / 'official.json').read_text())
        same = all(abs(a[g][m] - b[g][m]) < 1e-9 for g in ('All', 'Things', 'Stuff')
                   for m in ('pq', 'sq', 'rq'))
        res = {
            'pairs': args.num, 'size': f'{args.height}x{args.width}', 'cores': os.cpu_count(),
            'decode_floor_s': statistics.median(floor),
            'decode_floor_process_s': statistics.median(floor_process),
            'panoptic_pq_s': statistics.median(ours),
            'official_s': statistics.median(official),
            'in_memory_ms_median': statistics.median(mem),
            'in_memory_ms_p95': float(np.percentile(mem, 95)),
            'pq_all': a['All']['pq'], 'identical_to_official': same,
        }
        res['ratio_to_floor'] = res['panoptic_pq_s'] / res['decode_floor_s']
        res['ratio_to_floor_process'] = res['panoptic_pq_s'] / res['decode_floor_process_s']
        res['ratio_official_to_floor'] = res['official_s'] / res['decode_floor_s']
        res['runs_s'] = {'decode_floor': floor, 'decode_floor_process': floor_process,
                         'panoptic_pq': ours, 'official': official}
        print(json.dumps(res, indent=2))
        if args.out:
            atomic_write_json(args.out, res)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
