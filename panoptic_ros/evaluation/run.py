"""``panoptic eval``: a weights file over a dataset split, through the chosen engine."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _print_quality(results: dict, labels) -> None:
    from panoptic_ros.evaluation.evaluate import categories
    from panoptic_ros.evaluation.pq import format_pq_table

    print(format_pq_table(results, categories(labels)))
    print(f'{"mIoU":22s}| {100 * results["miou"]:5.1f}')


def _write_results(args: argparse.Namespace, results: dict, weights: Path, spec, num: int,
                   **meta) -> None:
    """``results['meta']`` (what was run on what) and ``--out``."""
    from panoptic_ros.fileio import atomic_write_json

    results['meta'] = {'weights': str(weights), 'engine': args.engine, 'device': args.device,
                       'data': str(args.data), 'split': args.split, 'images': num,
                       'input_size': list(spec.input_size), **meta}
    if args.out:
        atomic_write_json(args.out, results, indent=4)
        print(f'results written to {args.out}')


def run_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from panoptic_ros.engines import create_engine
    from panoptic_ros.evaluation.evaluate import categories, evaluate
    from panoptic_ros.fileio import atomic_write_json
    from panoptic_ros.inference import Predictor
    from panoptic_ros.training.loop import open_dataset
    from panoptic_ros.weights import resolve_model

    weights = resolve_model(args.model, args.weights)
    engine, spec, card = create_engine(args.engine, weights, device=args.device,
                                       precision=args.precision, batch=args.batch)
    labels = spec.label_set()
    if args.video:
        return _run_video(args, weights, engine, spec, labels)
    dataset = open_dataset({'format': args.format}, args.data, args.split, labels)
    num = len(dataset) if args.num is None else min(args.num, len(dataset))
    predictor = Predictor(engine, spec)
    coco_dir = None
    if args.predictions:
        coco_dir = Path(args.predictions) / 'panoptic'
        coco_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=num, unit='img', disable=args.quiet)
    t0 = time.perf_counter()
    results, annotations = evaluate(predictor, (dataset[i] for i in range(num)), labels,
                                    batch_size=args.batch, coco_dir=coco_dir,
                                    on_batch=bar.update)
    bar.close()
    seconds = time.perf_counter() - t0
    _print_quality(results, labels)
    print(f'{num} images of {args.data} ({args.split}) with {weights.name} on {args.engine} '
          f'({args.device}) in {seconds:.1f} s')
    _write_results(args, results, weights, spec, num)
    if coco_dir is not None:
        cats = categories(labels)
        atomic_write_json(Path(args.predictions) / 'predictions.json',
                          {'annotations': annotations, 'categories': list(cats.values())})
        print(f'COCO panoptic predictions written to {args.predictions} (predictions.json, '
              f'panoptic/)')
    return 0


def _run_video(args: argparse.Namespace, weights: Path, engine, spec, labels) -> int:
    from tqdm import tqdm

    from panoptic_ros.datasets.cityscapes import CityscapesDataset
    from panoptic_ros.errors import PanopticError
    from panoptic_ros.evaluation.sequences import evaluate_sequences, format_video_table
    from panoptic_ros.inference import Predictor
    from panoptic_ros.tracking import TrackerConfig

    if args.format != 'cityscapes' or args.predictions or args.batch != 1:
        raise PanopticError('--video reads Cityscapes-layout sequences frame by frame: no '
                            '--format coco, --predictions or --batch')
    cfg = TrackerConfig(**{k: v for k, v in (('iou_threshold', args.track_iou),
                                             ('max_age', args.track_max_age)) if v is not None})
    dataset = CityscapesDataset(args.data, args.split, label_set=labels, tracks=True)
    num = len(dataset) if args.num is None else min(args.num, len(dataset))
    bar = tqdm(total=num, unit='frame', disable=args.quiet)
    t0 = time.perf_counter()
    out = evaluate_sequences(Predictor(engine, spec), dataset, labels, {'tracker': cfg},
                             num=num, on_frame=bar.update)
    bar.close()
    results = out['image']
    _print_quality(results, labels)
    print(format_video_table(out['video']))
    print(f'{num} frames in {out["sequences"]} sequences of {args.data} ({args.split}) with '
          f'{weights.name} on {args.engine} ({args.device}), tracker IoU '
          f'{cfg.iou_threshold:g}, max age {cfg.max_age}, in {time.perf_counter() - t0:.1f} s')
    results['video'] = out['video']
    _write_results(args, results, weights, spec, num, sequences=out['sequences'],
                   tracker={'iou_threshold': cfg.iou_threshold, 'max_age': cfg.max_age})
    return 0
