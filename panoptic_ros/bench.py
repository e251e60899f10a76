"""``panoptic bench``: per-stage latency of a model on an engine (warm-up, median, p95)."""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np


def _stats(values: list[float]) -> dict:
    a = np.asarray(values)
    return {'median_ms': float(np.median(a)), 'p95_ms': float(np.percentile(a, 95)),
            'mean_ms': float(a.mean()), 'min_ms': float(a.min())}


def time_stages(predictor, image: np.ndarray, warmup: int, iters: int) -> dict:
    """Per-stage statistics (``preprocess``, ``inference``, ``postprocess``, ``total``) of
    ``predictor`` on ``image`` over ``iters`` runs after ``warmup``."""
    stages = ('preprocess', 'inference', 'postprocess')
    times: dict[str, list[float]] = {k: [] for k in (*stages, 'total')}
    for i in range(warmup + iters):
        r = predictor([image])[0]
        if i >= warmup:
            for k in stages:
                times[k].append(r.timings_ms[k])
            times['total'].append(sum(r.timings_ms[k] for k in stages))
    return {k: _stats(v) for k, v in times.items()}


def run_bench(args: argparse.Namespace) -> int:
    import torch

    from panoptic_ros.engines import create_engine
    from panoptic_ros.fileio import atomic_write_json
    from panoptic_ros.inference import Predictor
    from panoptic_ros.synth.scene import SceneRenderer
    from panoptic_ros.weights import resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.config:
        weights = _untrained_weights(args.config)
    else:
        weights = resolve_model(args.model, args.weights)
    size = (args.height, args.width) if args.height and args.width else None
    engine, spec, card = create_engine(args.engine, weights, device=args.device,
                                       precision=args.precision, size=size)
    predictor = Predictor(engine, spec)
    h, w = engine.input_size
    cam_h, cam_w = args.image_height or h, args.image_width or w
    image = SceneRenderer(cam_h, cam_w).render(np.random.default_rng(0))[0]
    stats = time_stages(predictor, image, args.warmup, args.iters)
    device = (torch.cuda.get_device_name(engine.device) if engine.device.type == 'cuda' else
              f'CPU ({os.cpu_count()} cores, {platform.machine()}, '
              f'{torch.get_num_threads()} torch threads)')
    print(f'{weights.name} on {args.engine} ({args.device}, {args.precision}), network input '
          f'{h}x{w}, camera image {cam_h}x{cam_w}, {args.iters} runs after {args.warmup} '
          f'warm-up, {device}')
    print(f'{"stage":12s} {"median":>9s} {"p95":>9s}')
    for k, s in stats.items():
        print(f'{k:12s} {s["median_ms"]:7.1f}ms {s["p95_ms"]:7.1f}ms')
    print(f'throughput {1000 / stats["total"]["median_ms"]:.1f} images/s (median)')
    if args.out:
        atomic_write_json(args.out, {'weights': str(weights), 'engine': args.engine,
                                     'device': args.device, 'hardware': device,
                                     'precision': args.precision, 'input_size': [h, w],
                                     'image_size': [cam_h, cam_w], 'iters': args.iters,
                                     'stages': stats})
    return 0


def _untrained_weights(config: str):
    """A weights file of the recipe's model with its initial parameters (timing only)."""
    import tempfile
    from pathlib import Path

    import torch

    from panoptic_ros.config import load_recipe
    from panoptic_ros.weights import save_weights

    recipe = load_recipe(config)
    torch.manual_seed(0)
    path = Path(tempfile.mkdtemp(prefix='panoptic-bench-')) / f'{Path(config).stem}.safetensors'
    save_weights(path, recipe.model.build(), recipe.model,
                 {'note': 'untrained, for timing only', 'recipe_file': config})
    return path
