"""CASNet's instance step (seeds, NMS, IoU voting, support: ``CASNetPostprocess.instances``)
and its whole post-processing, timed on a model's engine outputs for one synthetic camera
frame, at one or more network input sizes (issue 14: under 10 ms at the bundled input size).

    .venv/bin/python benchmarks/casnet_voting.py --model casnet --sizes 512x1024 1024x2048 \
        --image-height 1024 --image-width 2048 --iters 20
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from panoptic_ros.engines import create_engine
from panoptic_ros.inference import Predictor
from panoptic_ros.synth.scene import SceneRenderer
from panoptic_ros.weights import resolve_model


def _median_ms(fn, warmup: int, iters: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(times)), float(np.percentile(times, 95))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model', default='casnet')
    ap.add_argument('--weights')
    ap.add_argument('--sizes', nargs='+', default=['512x1024'], help='network input HxW')
    ap.add_argument('--image-height', type=int, default=1024)
    ap.add_argument('--image-width', type=int, default=2048)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--iters', type=int, default=20)
    ap.add_argument('--out')
    args = ap.parse_args()
    weights = resolve_model(args.model, args.weights)
    image = SceneRenderer(args.image_height, args.image_width).render(
        np.random.default_rng(0))[0]
    rows = []
    for size in args.sizes:
        h, w = (int(v) for v in size.split('x'))
        engine, spec, _ = create_engine('torch', weights, size=(h, w))
        predictor = Predictor(engine, spec)
        post = predictor.postprocess
        with torch.no_grad():
            out = engine(predictor.preprocess([image]))
        things, is_thing = predictor.thing_classes, predictor.is_thing
        args_one = (out['semantic'][0].long(), out['box_prob'][0].float(),
                    out['boxes'][0].float(), things)
        inst, classes, _ = post.instances(*args_one)
        vote_ms = _median_ms(lambda: post.instances(*args_one), args.warmup, args.iters)
        full_ms = _median_ms(lambda: post(out, things, is_thing, image.shape[:2]), args.warmup,
                             args.iters)
        rows.append({'input': [h, w], 'grid': list(out['semantic'].shape[-2:]),
                     'thing_cells': int((inst >= 0).sum()), 'instances': int(classes.numel()),
                     'instances_ms': {'median': round(vote_ms[0], 2), 'p95': round(vote_ms[1], 2)},
                     'postprocess_ms': {'median': round(full_ms[0], 2),
                                        'p95': round(full_ms[1], 2)}})
        print(json.dumps(rows[-1]), flush=True)
    result = {'weights': str(weights), 'image': [args.image_height, args.image_width],
              'cpu': f'{os.cpu_count()} cores, {torch.get_num_threads()} torch threads',
              'rows': rows}
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
