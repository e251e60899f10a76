"""Grid search of post-processing parameters on a validation split, engine outputs cached.

The network runs once per image; every combination of the given values then re-runs only the
post-processing (its median time per image is reported: ``postprocess_ms``, at the images' own
size) and the evaluator. Tune on the training run's own val split, never on the
held-out images a card reports; write the choice into the card with
``panoptic card --weights W --postprocess key=value ...``.

    .venv/bin/python benchmarks/tune_postprocess.py --model dense_detections \
        --data data/synth512 --split val --num 100 \
        --grid score_threshold=0.2,0.3,0.4 nms_threshold=0.5,0.6 --out tune.json

``--occlusions`` keeps only the images where a thing stands in front of a larger thing of
another class: the box of one instance lies at least 80% inside the box of an instance of
another class with four times its box area (pedestrians before buses: OANet's ablation).

``--per-class NAME`` tunes a parameter that takes one value per thing class (PanoNet's
mean-shift ``bandwidth``, section III-D: searched per class on training data); the grid's
other parameters, if any, take one value each. Each class's instances depend on its own
value only, so the grid of single values is searched once and every class takes the value
that maximises its own PQ (a class that scores the same for every value, e.g. absent or
never found, takes the value best for PQ things); the per-class choice is then evaluated as
one more row, ``per_class``:

    .venv/bin/python benchmarks/tune_postprocess.py --model panonet --data data/synth512 \
        --split train --num 100 --grid bandwidth=0.5,0.75,1.0 min_bin_freq=4 \
        --per-class bandwidth

``--touching`` keeps only the images where two instances of one thing class touch (share a
4-connected border) and look alike (mean colours within 12 per channel): the parked rows of
near-identical cars that synth draws, PanoNet's case for position-sensitive embeddings (section
III-C, Fig. 5).

``--gt-semantics`` replaces the network's semantics (``semantic``, ``semantic_prob``) by the
ground truth on the outputs' grid (void cells keep the prediction): the upper bound of an
architecture's instance part with perfect semantics (CASNet's Tab. IV).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import cv2
import numpy as np
import torch

from panoptic_ros.engines import create_engine
from panoptic_ros.evaluation.evaluate import PanopticEvaluator
from panoptic_ros.inference import Predictor
from panoptic_ros.training.loop import open_dataset
from panoptic_ros.weights import resolve_model


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def with_gt_semantics(out: dict, semantic: np.ndarray, void_id: int) -> dict:
    """``out`` (batch 1) with ``semantic`` / ``semantic_prob`` made from the ground truth
    ``semantic [H, W]`` resized (nearest) to their grid; void cells keep the prediction."""
    h, w = out['semantic'].shape[-2:]
    gt = torch.from_numpy(cv2.resize(semantic.astype(np.int32), (w, h),
                                     interpolation=cv2.INTER_NEAREST).astype(np.int64))
    gt = gt.to(out['semantic'].device)
    known = gt != void_id
    sem = torch.where(known, gt, out['semantic'][0].long())
    c = out['semantic_prob'].shape[1]
    onehot = torch.nn.functional.one_hot(sem.clamp(max=c - 1), c).permute(2, 0, 1).float()
    prob = torch.where(known[None], onehot, out['semantic_prob'][0].float())
    return {**out, 'semantic': sem[None].to(out['semantic'].dtype),
            'semantic_prob': prob[None].to(out['semantic_prob'].dtype)}


def has_occlusion(semantic: np.ndarray, instance: np.ndarray) -> bool:
    """Whether an instance's box lies at least 80% inside the box of an instance of another
    class with at least twice its box area (``semantic``, ``instance`` ``[H, W]``)."""
    boxes = []
    for i in np.unique(instance[instance > 0]):
        ys, xs = np.nonzero(instance == i)
        boxes.append((int(np.bincount(semantic[ys, xs]).argmax()), xs.min(), ys.min(),
                      xs.max() + 1, ys.max() + 1))
    for ca, *a in boxes:
        area_a = (a[2] - a[0]) * (a[3] - a[1])
        for cb, *b in boxes:
            area_b = (b[2] - b[0]) * (b[3] - b[1])
            inter = (max(0, min(a[2], b[2]) - max(a[0], b[0]))
                     * max(0, min(a[3], b[3]) - max(a[1], b[1])))
            if ca != cb and area_b >= 4 * area_a and inter >= 0.8 * area_a:
                return True
    return False


def has_identical_neighbours(image: np.ndarray, semantic: np.ndarray,
                             instance: np.ndarray, colour_tol: float = 12.0) -> bool:
    """Whether two instances of one class touch (4-neighbours somewhere) and look alike (mean
    colours within ``colour_tol`` per channel): ``image [H, W, 3]``, ``semantic``,
    ``instance`` ``[H, W]`` (instance 0: none)."""
    pairs = set()
    for axis in (0, 1):
        a, c = np.moveaxis(instance, axis, 0), np.moveaxis(semantic, axis, 0)
        touch = (a[1:] > 0) & (a[:-1] > 0) & (a[1:] != a[:-1]) & (c[1:] == c[:-1])
        pairs.update(zip(a[1:][touch].tolist(), a[:-1][touch].tolist()))
    if not pairs:
        return False
    ids = instance.ravel()
    n = int(ids.max()) + 1
    count = np.bincount(ids, minlength=n).clip(min=1)
    mean = np.stack([np.bincount(ids, image[..., k].ravel().astype(np.float64), n) / count
                     for k in range(3)], 1)
    return any(np.abs(mean[i] - mean[j]).max() <= colour_tol for i, j in pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model')
    ap.add_argument('--weights')
    ap.add_argument('--data', required=True)
    ap.add_argument('--split', default='val')
    ap.add_argument('--num', type=int, default=100)
    ap.add_argument('--grid', nargs='+', required=True, help='name=v1,v2,...')
    ap.add_argument('--gt-semantics', action='store_true',
                    help='ground-truth semantics instead of the network\'s (upper bound)')
    ap.add_argument('--occlusions', action='store_true',
                    help='only images where a thing stands before a larger one of another class')
    ap.add_argument('--touching', action='store_true',
                    help='only images where two look-alike instances of one class touch')
    ap.add_argument('--per-class', metavar='NAME',
                    help='choose NAME per thing class (the grid varies NAME alone)')
    ap.add_argument('--out')
    args = ap.parse_args()
    weights = resolve_model(args.model, args.weights)
    engine, spec, _ = create_engine('torch', weights)
    predictor = Predictor(engine, spec)
    labels = spec.label_set()
    grid = {k: [_value(v) for v in vs.split(',')] for k, vs in
            (g.split('=', 1) for g in args.grid)}
    if args.per_class and (args.per_class not in grid or any(
            len(values) > 1 for name, values in grid.items() if name != args.per_class)):
        ap.error(f'--per-class {args.per_class}: the grid must vary that parameter alone '
                 f'(others may be set to one value)')
    ds = open_dataset({'format': 'cityscapes'}, args.data, args.split, labels)
    samples = [ds[i] for i in range(min(args.num, len(ds)))]
    if args.occlusions:
        samples = [s for s in samples if has_occlusion(s.semantic, s.instance)]
        print(f'{len(samples)} images with occlusions', flush=True)
    if args.touching:
        samples = [s for s in samples
                   if has_identical_neighbours(s.image, s.semantic, s.instance)]
        print(f'{len(samples)} images with touching look-alike instances', flush=True)
    with torch.no_grad():
        outputs = [engine(predictor.preprocess([s.image])) for s in samples]
    if args.gt_semantics:
        outputs = [with_gt_semantics(o, s.semantic, labels.void_id)
                   for o, s in zip(outputs, samples)]
    things, is_thing = predictor.thing_classes, predictor.is_thing
    thing_names = [labels.classes[int(c)].name for c in things]
    thing_dataset_ids = labels.dataset_ids[things.cpu().numpy()]

    def evaluate(params: dict) -> dict:
        post = spec.postprocessor(**params)
        ev = PanopticEvaluator(labels)
        times = []
        for s, out in zip(samples, outputs):
            start = time.perf_counter()
            result = post(out, things, is_thing, s.semantic.shape)[0]
            times.append(time.perf_counter() - start)
            ev.add(s, result)
        r = ev.summarize()
        per_class = {name: round(100 * r['per_class'][int(d)]['pq'], 2)
                     for name, d in zip(thing_names, thing_dataset_ids)
                     if int(d) in r['per_class']}
        row = {'params': params, **{g: round(100 * r[g]['pq'], 2)
                                    for g in ('All', 'Things', 'Stuff')},
               'things_per_class': per_class,
               'postprocess_ms': round(1000 * statistics.median(times), 2)}
        print(json.dumps(row), flush=True)
        return row

    rows = [evaluate(dict(zip(grid, combo))) for combo in itertools.product(*grid.values())]
    best = max(rows, key=lambda row: row['All'])
    if args.per_class:
        best_things = max(rows, key=lambda row: row['Things'])
        chosen = []
        for name in thing_names:
            scores = [row['things_per_class'].get(name, 0.0) for row in rows]
            top = max(rows, key=lambda row: row['things_per_class'].get(name, 0.0))
            chosen.append((best_things if min(scores) == max(scores) else top)['params'][
                args.per_class])
        rows.append({**evaluate({**best['params'], args.per_class: chosen}), 'per_class': True})
        best = max(rows, key=lambda row: row['All'])
    print('best:', json.dumps(best))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'weights': str(weights), 'data': args.data, 'split': args.split,
                       'num': len(samples), 'gt_semantics': args.gt_semantics,
                       'occlusions': args.occlusions, 'touching': args.touching,
                       'defaults': spec.postprocess, 'rows': rows, 'best': best}, f, indent=1)


if __name__ == '__main__':
    main()
