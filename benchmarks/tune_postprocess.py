"""Grid search of post-processing parameters on a validation split, engine outputs cached.

The network runs once per image; every combination of the given values then re-runs only the
post-processing and the evaluator. Tune on the training run's own val split, never on the
held-out images a card reports; write the choice into the card with
``panoptic card --weights W --postprocess key=value ...``.

    .venv/bin/python benchmarks/tune_postprocess.py --model dense_detections \
        --data data/synth512 --split val --num 100 \
        --grid score_threshold=0.2,0.3,0.4 nms_threshold=0.5,0.6 --out tune.json
"""

from __future__ import annotations

import argparse
import itertools
import json

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model')
    ap.add_argument('--weights')
    ap.add_argument('--data', required=True)
    ap.add_argument('--split', default='val')
    ap.add_argument('--num', type=int, default=100)
    ap.add_argument('--grid', nargs='+', required=True, help='name=v1,v2,...')
    ap.add_argument('--out')
    args = ap.parse_args()
    weights = resolve_model(args.model, args.weights)
    engine, spec, _ = create_engine('torch', weights)
    predictor = Predictor(engine, spec)
    labels = spec.label_set()
    grid = {k: [_value(v) for v in vs.split(',')] for k, vs in
            (g.split('=', 1) for g in args.grid)}
    ds = open_dataset({'format': 'cityscapes'}, args.data, args.split, labels)
    samples = [ds[i] for i in range(min(args.num, len(ds)))]
    with torch.no_grad():
        outputs = [engine(predictor.preprocess([s.image])) for s in samples]
    things, is_thing = predictor.thing_classes, predictor.is_thing
    rows = []
    for combo in itertools.product(*grid.values()):
        params = dict(zip(grid, combo))
        post = spec.postprocessor(**params)
        ev = PanopticEvaluator(labels)
        for s, out in zip(samples, outputs):
            ev.add(s, post(out, things, is_thing, s.semantic.shape)[0])
        r = ev.summarize()
        rows.append({'params': params, **{g: round(100 * r[g]['pq'], 2)
                                          for g in ('All', 'Things', 'Stuff')}})
        print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda row: row['All'])
    print('best:', json.dumps(best))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'weights': str(weights), 'data': args.data, 'split': args.split,
                       'num': len(samples), 'defaults': spec.postprocess, 'rows': rows,
                       'best': best}, f, indent=1)


if __name__ == '__main__':
    main()
