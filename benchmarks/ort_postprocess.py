"""Post-processing after the ONNX Runtime engine vs after the torch engine, in one process.

For every bundled model (or ``--model``), one synthetic camera image at ``--height x
--width``: the torch engine, ONNX Runtime with its intra-op threads spin-waiting between runs
(ONNX Runtime's default) and without (the engine's setting), interleaved over ``--rounds``
rounds of ``--iters`` timed frames; medians of each stage.

    .venv/bin/python benchmarks/ort_postprocess.py --height 1024 --width 2048 --out ort.json
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np
import torch

from panoptic_ros.bench import time_stages
from panoptic_ros.engines import create_engine
from panoptic_ros.engines.onnxruntime_engine import OnnxRuntimeEngine
from panoptic_ros.export.artifacts import cached_onnx
from panoptic_ros.fileio import atomic_write_json
from panoptic_ros.inference import Predictor
from panoptic_ros.synth.scene import SceneRenderer
from panoptic_ros.weights import bundled_models, resolve_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model', nargs='*')
    ap.add_argument('--height', type=int, default=1024)
    ap.add_argument('--width', type=int, default=2048)
    ap.add_argument('--iters', type=int, default=10)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--out')
    args = ap.parse_args()
    image = SceneRenderer(args.height, args.width).render(np.random.default_rng(0))[0]
    rows = {}
    cache = tempfile.mkdtemp()
    for name in args.model or sorted(bundled_models()):
        weights = resolve_model(name)
        torch_engine, spec, _ = create_engine('torch', weights)
        onnx = cached_onnx(weights, cache_dir=cache)
        predictors = {'torch': Predictor(torch_engine, spec),
                      'ort_spin': Predictor(OnnxRuntimeEngine(onnx, spin=True), spec),
                      'ort': Predictor(OnnxRuntimeEngine(onnx), spec)}
        times = {k: {'inference': [], 'postprocess': []} for k in predictors}
        for _ in range(args.rounds):
            for key, pred in predictors.items():
                s = time_stages(pred, image, warmup=2, iters=args.iters)
                for stage in ('inference', 'postprocess'):
                    times[key][stage].append(s[stage]['median_ms'])
        rows[name] = {k: {stage: round(float(np.median(v)), 1) for stage, v in t.items()}
                      for k, t in times.items()}
        print(name, json.dumps(rows[name]), flush=True)
    if args.out:
        atomic_write_json(args.out, {'image': [args.height, args.width],
                                     'threads': torch.get_num_threads(), 'rows': rows},
                          indent=1)


if __name__ == '__main__':
    main()
