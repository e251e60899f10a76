"""OANet's oracle ceiling: ground-truth detections (box, 28x28 mask target, score 1) and stuff
through the post-processing, at the recipe's input size, scored with the project's evaluator
against the full-size ground truth.

    .venv/bin/python benchmarks/oanet_oracle.py \
        --config config/models/oanet_lite0_synth_512x1024.yaml \
        --data data/synth_holdout512 --num 200 --out oracle.json
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import torch

from panoptic_ros.config import load_recipe
from panoptic_ros.datasets.cityscapes import CityscapesDataset
from panoptic_ros.evaluation.evaluate import PanopticEvaluator
from panoptic_ros.models.oanet.oracle import oracle_outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--config', required=True)
    ap.add_argument('--data', required=True)
    ap.add_argument('--split', default='val')
    ap.add_argument('--num', type=int, default=200)
    ap.add_argument('--out')
    args = ap.parse_args()
    spec = load_recipe(args.config).model
    labels = spec.label_set()
    objective = spec.objective()
    post = spec.postprocessor()
    h, w = spec.input_size
    things = torch.tensor(labels.thing_ids)
    is_thing = torch.tensor(labels.is_thing)
    ds = CityscapesDataset(args.data, args.split)
    ev = PanopticEvaluator(labels)
    for i in range(min(args.num, len(ds))):
        s = ds[i]
        sem = cv2.resize(s.semantic, (w, h), interpolation=cv2.INTER_NEAREST)
        inst = cv2.resize(s.instance, (w, h), interpolation=cv2.INTER_NEAREST)
        t = objective.targets(torch.from_numpy(sem.astype(np.int64)),
                              torch.from_numpy(inst.astype(np.int64)))
        out = oracle_outputs(t, labels.num_classes, spec.model_kwargs().get('detections', 100))
        ev.add(s, post(out, things, is_thing, s.semantic.shape)[0])
    r = ev.summarize()
    row = {g: round(100 * r[g]['pq'], 2) for g in ('All', 'Things', 'Stuff')}
    row['miou'] = round(100 * r['miou'], 2)
    print(json.dumps(row))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'config': args.config, 'data': args.data, 'num': min(args.num, len(ds)),
                       **row}, f, indent=1)


if __name__ == '__main__':
    main()
