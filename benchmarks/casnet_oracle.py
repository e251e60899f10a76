"""CASNet's oracle ceiling: ground truth -> training targets -> perfect stride-4 outputs
(:mod:`panoptic_ros.models.casnet.oracle`) -> decode -> voting -> PQ against the full-size
ground truth, at the recipe's input size (the images' own). What is lost here is lost for
every trained CASNet at that size.

    .venv/bin/python benchmarks/casnet_oracle.py --config config/models/casnet_lite0_synth_512x1024.yaml \
        --data data/synth_holdout512 --num 40 --post seed_threshold=0.1
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from panoptic_ros.config import load_recipe
from panoptic_ros.datasets.cityscapes import CityscapesDataset
from panoptic_ros.evaluation.evaluate import PanopticEvaluator
from panoptic_ros.models.casnet.oracle import oracle_outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--config', required=True)
    ap.add_argument('--data', required=True)
    ap.add_argument('--split', default='val')
    ap.add_argument('--num', type=int, default=40)
    ap.add_argument('--post', nargs='*', default=[], help='name=value post-processing overrides')
    args = ap.parse_args()
    spec = load_recipe(args.config).model
    labels = spec.label_set()
    model = spec.build(initial_weights=False).eval()
    objective = spec.objective()
    post = spec.postprocessor(**{k: json.loads(v) for k, v in (a.split('=', 1)
                                                               for a in args.post)})
    things = torch.tensor(labels.thing_ids)
    is_thing = torch.tensor(labels.is_thing)
    ds = CityscapesDataset(args.data, args.split)
    ev = PanopticEvaluator(labels)
    for i in range(min(args.num, len(ds))):
        s = ds[i]
        t = objective.targets(torch.from_numpy(s.semantic.astype(np.int64)),
                              torch.from_numpy(s.instance.astype(np.int64)))
        with torch.no_grad():
            out = model.decode(oracle_outputs(t, labels.num_classes))
        ev.add(s, post(out, things, is_thing, s.semantic.shape)[0])
    r = ev.summarize()
    print(json.dumps({g: round(100 * r[g]['pq'], 1) for g in ('All', 'Things', 'Stuff')}))


if __name__ == '__main__':
    main()
