"""``panoptic demo``: the main job on bundled defaults.

Renders a synthetic validation set (a seed the default model never saw, at a camera size twice
the model's input), runs the bundled default model over it through the same predictor the node
uses, evaluates PQ/SQ/RQ and mIoU against the ground truth, and writes a montage (image |
ground truth | prediction), the results JSON and per-stage latency. The ROS 2 node and bag
replay will take over this job when they land.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NUM_IMAGES, HEIGHT, WIDTH, SEED = 24, 512, 1024, 2024


def _montage(rows: list[tuple[np.ndarray, ...]], path: Path) -> None:
    import cv2

    tiles = [np.hstack([cv2.resize(t, (WIDTH // 2, HEIGHT // 2),
                                   interpolation=cv2.INTER_AREA if i == 0 else cv2.INTER_NEAREST)
                        for i, t in enumerate(row)]) for row in rows]
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(tiles), cv2.COLOR_RGB2BGR))


def run_demo(out: Path) -> int:
    from panoptic_ros.datasets.cityscapes import CityscapesDataset
    from panoptic_ros.engines import create_engine
    from panoptic_ros.evaluation.evaluate import PanopticEvaluator, categories
    from panoptic_ros.evaluation.pq import format_pq_table
    from panoptic_ros.fileio import atomic_write_json
    from panoptic_ros.inference import Predictor
    from panoptic_ros.palette import colorize
    from panoptic_ros.synth.writer import write_dataset
    from panoptic_ros.weights import resolve_weights

    out.mkdir(parents=True, exist_ok=True)
    data = out / 'synthetic'
    print(f'[1/3] rendering {NUM_IMAGES} synthetic street scenes ({HEIGHT}x{WIDTH}, seed '
          f'{SEED}) into {data}')
    write_dataset(data, 'val', NUM_IMAGES, HEIGHT, WIDTH, SEED, progress=False)
    dataset = CityscapesDataset(data, 'val')

    weights = resolve_weights(None)
    engine, spec, card = create_engine('torch', weights)
    predictor = Predictor(engine, spec)
    labels = spec.label_set()
    print(f'[2/3] running {weights.name} (input {spec.input_size[0]}x{spec.input_size[1]}, '
          f'torch on CPU) on every image')
    ev = PanopticEvaluator(labels)
    rows, timings = [], []
    for i in range(len(dataset)):
        s = dataset[i]
        r = predictor([s.image])[0]
        if i:                                   # the first call warms up
            timings.append(r.timings_ms)
        ev.add(s, r)
        if i < 6:
            rows.append((s.image, colorize(s.semantic, s.instance, labels),
                         colorize(r.semantic.numpy(), r.instance.numpy(), labels)))
    results = ev.summarize()
    _montage(rows, out / 'montage.png')

    print('[3/3] panoptic quality against the ground truth:')
    print(format_pq_table(results, categories(labels)))
    print(f'{"mIoU":22s}| {100 * results["miou"]:5.1f}')
    stages = {k: float(np.median([t[k] for t in timings]))
              for k in ('preprocess', 'inference', 'postprocess')}
    print('median latency per image: ' + ', '.join(f'{k} {v:.0f} ms' for k, v in stages.items()))
    results['latency_ms_median'] = stages
    results['weights'] = str(weights)
    atomic_write_json(out / 'results.json', results)
    card_pq = card.get('metrics', {}).get('pq')
    print(f'PQ {100 * results["All"]["pq"]:.1f} on {NUM_IMAGES} images at {HEIGHT}x{WIDTH} '
          f'(model card: {card_pq} on 200 held-out images at the input size)')
    print(f'done: {out / "montage.png"} (image | ground truth | prediction), '
          f'{out / "results.json"}')
    return 0
