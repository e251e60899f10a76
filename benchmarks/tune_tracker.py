"""Tracker parameters chosen on training sequences (issue 17): one pass of the model over the
sequences feeds every candidate :class:`~panoptic_ros.tracking.TrackerConfig` at once, scored by
association quality (AQ of STQ) and id switches; the per-frame ids are the baseline.

    .venv/bin/panoptic synth --out data/synth_seq_train512 --split train --num 8 \\
        --sequence-length 20 --seed 20
    .venv/bin/python benchmarks/tune_tracker.py --model dense_detections \\
        --data data/synth_seq_train512 --split train --iou 0.05 0.1 0.2 0.3 0.5 \\
        --max-age 2 5 10 --out benchmarks/tune_tracker.json

Choose on training sequences, then measure the choice once on hidden ones with
``panoptic eval --video``.
"""

from __future__ import annotations

import argparse
import json
import time

from panoptic_ros.datasets.cityscapes import CityscapesDataset
from panoptic_ros.engines import create_engine
from panoptic_ros.evaluation.sequences import PER_FRAME, evaluate_sequences
from panoptic_ros.inference import Predictor
from panoptic_ros.tracking import TrackerConfig
from panoptic_ros.weights import resolve_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model', default='dense_detections')
    ap.add_argument('--data', required=True)
    ap.add_argument('--split', default='train')
    ap.add_argument('--num', type=int, help='first NUM frames only')
    ap.add_argument('--iou', type=float, nargs='+', default=[0.1, 0.3, 0.5])
    ap.add_argument('--max-age', type=int, nargs='+', default=[5])
    ap.add_argument('--out', help='write the table as JSON here')
    args = ap.parse_args()

    weights = resolve_model(args.model)
    engine, spec, _ = create_engine('torch', weights)
    labels = spec.label_set()
    dataset = CityscapesDataset(args.data, args.split, label_set=labels, tracks=True)
    configs = {f'iou {t:g}, max_age {a}, motion {"on" if m else "off"}':
               TrackerConfig(t, a, m)
               for t in args.iou for a in args.max_age for m in (False, True)}
    t0 = time.perf_counter()
    out = evaluate_sequences(Predictor(engine, spec), dataset, labels, configs,
                             num=args.num, vpq=False)
    rows = sorted(out['video'].items(), key=lambda kv: -kv[1]['aq'])
    print(f'{out["frames"]} frames, {out["sequences"]} sequences of {args.data} '
          f'({args.split}), {weights.name}, {time.perf_counter() - t0:.0f} s')
    print(f'{"tracker":36s}    AQ   STQ  switches/100')
    for name, r in rows:
        print(f'{name:36s} {100 * r["aq"]:5.1f} {100 * r["stq"]:5.1f} {r["per_100"]:8.1f}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'model': weights.name, 'data': args.data, 'split': args.split,
                       'frames': out['frames'], 'sequences': out['sequences'],
                       'baseline': PER_FRAME,
                       'results': {name: {k: r[k] for k in ('aq', 'stq', 'sq', 'id_switches',
                                                            'tracked_objects', 'per_100')}
                                   for name, r in rows}}, f, indent=2)


if __name__ == '__main__':
    main()
