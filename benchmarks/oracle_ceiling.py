"""Oracle ceiling of an architecture at candidate network input sizes.

Ground truth at the dataset's size is brought to each input size (nearest neighbour), turned
into training targets, then into perfect raw outputs (:mod:`...dense_detections.oracle`), and
through ``decode`` and the post-processing back to the dataset's size, where PQ is measured
against the full-size ground truth with the project's evaluator. What is lost here is lost
for every trained model at that size.

    .venv/bin/python benchmarks/oracle_ceiling.py --data data/synth_holdout512 --split val \
        --num 60 --sizes 256x512 384x768 512x1024 --config RECIPE --out oracle.json
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
from panoptic_ros.models.dense_detections.oracle import oracle_outputs
from panoptic_ros.models.dense_detections.targets import compute_targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', required=True)
    ap.add_argument('--split', default='val')
    ap.add_argument('--num', type=int, default=60)
    ap.add_argument('--sizes', nargs='+', default=['256x512', '384x768', '512x1024'])
    ap.add_argument('--config', required=True, help='recipe whose post-processing is used')
    ap.add_argument('--out')
    args = ap.parse_args()
    recipe = load_recipe(args.config)
    labels = recipe.model.label_set()
    spec = recipe.model
    kwargs = spec.model_kwargs()
    model = spec.build(initial_weights=False).eval()
    thing_classes = torch.tensor(kwargs['thing_classes'])
    thing_index = spec.objective().thing_index      # box class of each semantic class
    is_thing = torch.tensor(labels.is_thing)
    ds = CityscapesDataset(args.data, args.split)
    results = {}
    for size in args.sizes:
        h, w = (int(v) for v in size.split('x'))
        base = spec.input_size[0] * spec.input_size[1]
        # the recipe's minimum stuff area is in input pixels: scale it with the input size
        post = spec.postprocessor(min_stuff_area=round(
            spec.postprocess.get('min_stuff_area', 2048) * h * w / base))
        ev = PanopticEvaluator(labels)
        for i in range(min(args.num, len(ds))):
            s = ds[i]
            sem = cv2.resize(s.semantic, (w, h), interpolation=cv2.INTER_NEAREST)
            inst = cv2.resize(s.instance, (w, h), interpolation=cv2.INTER_NEAREST)
            sem_t = torch.from_numpy(sem.astype(np.int64))
            inst_t = torch.from_numpy(inst.astype(np.int64))
            t = compute_targets(sem_t, inst_t, thing_index, model.strides,
                                void_id=labels.void_id)
            raw = oracle_outputs(t, inst_t, model.strides, len(thing_classes),
                                 labels.num_classes)
            with torch.no_grad():
                res = post(model.decode(raw), thing_classes, is_thing, s.semantic.shape)[0]
            ev.add(s, res)
        r = ev.summarize()
        results[size] = {g: round(100 * r[g]['pq'], 1) for g in ('All', 'Things', 'Stuff')}
        index = {int(d): c for c, d in enumerate(labels.dataset_ids)}
        results[size]['things'] = {labels.names[index[int(d)]]: round(100 * v['pq'], 1)
                                   for d, v in r['per_class'].items()
                                   if labels.is_thing[index[int(d)]]}
        print(size, json.dumps(results[size]), flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'data': args.data, 'num': args.num, 'results': results}, f, indent=1)


if __name__ == '__main__':
    main()
