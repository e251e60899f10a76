"""Cost of :class:`panoptic_ros.tracking.InstanceTracker` per frame, on the grids the bundled
models post-process on, with a street's worth of moving instances (issue 17: under 2 ms per
1024x2048 frame).

    .venv/bin/python benchmarks/tracker_bench.py --grids 128x256 256x512 --instances 30
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from panoptic_ros.labels import cityscapes
from panoptic_ros.models.result import grid_result
from panoptic_ros.tracking import InstanceTracker


def frames(h: int, w: int, n: int, count: int, seed: int = 0):
    """``count`` results of ``n`` boxes of thing classes drifting a little every frame."""
    labels = cityscapes()
    is_thing = torch.tensor(labels.is_thing)
    rng = np.random.default_rng(seed)
    things = np.asarray(labels.thing_ids)
    cls = rng.choice(things, n)
    y, x = rng.integers(0, h - h // 8, n), rng.integers(0, w - w // 8, n)
    bh, bw = rng.integers(h // 32 + 2, h // 8, n), rng.integers(w // 32 + 2, w // 8, n)
    v = rng.integers(-2, 3, (n, 2))
    out = []
    for t in range(count):
        sem = torch.zeros(h, w, dtype=torch.long)
        inst = torch.zeros(h, w, dtype=torch.long)
        for i in range(n):
            yy = int(np.clip(y[i] + v[i, 0] * t, 0, h - bh[i]))
            xx = int(np.clip(x[i] + v[i, 1] * t, 0, w - bw[i]))
            sem[yy:yy + bh[i], xx:xx + bw[i]] = int(cls[i])
            inst[yy:yy + bh[i], xx:xx + bw[i]] = i + 1
        present = torch.unique(inst)
        present = present[present > 0]
        remap = torch.zeros(n + 1, dtype=torch.long)
        remap[present] = torch.arange(1, present.numel() + 1)
        inst = remap[inst]
        prob = torch.nn.functional.one_hot(sem, 19).permute(2, 0, 1).float()
        out.append(grid_result(sem, inst, torch.ones(present.numel()), prob, is_thing,
                               min_stuff_area=0, void_id=255, label_divisor=1000,
                               out_size=(h, w)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--grids', nargs='+', default=['128x256', '256x512'])
    ap.add_argument('--instances', type=int, default=30)
    ap.add_argument('--frames', type=int, default=40)
    args = ap.parse_args()
    for g in args.grids:
        h, w = (int(v) for v in g.split('x'))
        seq = frames(h, w, args.instances, args.frames)
        tracker = InstanceTracker()
        times = []
        for r in seq:
            t0 = time.perf_counter()
            tracker.update(r)
            times.append(1e3 * (time.perf_counter() - t0))
        t = np.array(times[5:])
        print(json.dumps({'grid': [h, w], 'instances': args.instances,
                          'tracks_alive': int(tracker.ids.numel()),
                          'median_ms': round(float(np.median(t)), 3),
                          'p95_ms': round(float(np.percentile(t, 95)), 3),
                          'torch_threads': torch.get_num_threads()}))


if __name__ == '__main__':
    main()
