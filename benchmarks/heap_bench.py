"""The heap policy (``panoptic_ros.heap``) against glibc's default, frame by frame.

Each round runs two fresh processes in turn, one with glibc's default ``malloc`` settings and
one with :func:`panoptic_ros.heap.keep_freed_memory`; each loads the default model (torch, CPU)
and, on a worker thread as the node does, runs ``--frames`` frames of a synthetic camera image
(inference, post-processing, tracker, the three label images), after 3 warm-up frames.
Reported per mode: medians over all rounds of inference, post-processing + tracker, label
images (ms) and minor page faults per frame.

    python benchmarks/heap_bench.py --rounds 3 --frames 10 --out benchmarks/heap_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time

import numpy as np

MODES = ('default', 'policy')
FIELDS = ('inference_ms', 'postprocess_ms', 'label_images_ms', 'page_faults')


def _child(mode: str, frames: int, height: int, width: int) -> None:
    """One process: ``frames`` rows of :data:`FIELDS` as JSON on stdout."""
    import resource

    from panoptic_ros.heap import keep_freed_memory

    if mode == 'policy' and not keep_freed_memory():
        raise SystemExit('the heap policy is not available here')
    from std_msgs.msg import Header

    from panoptic_ros.engines import create_engine
    from panoptic_ros.inference import Predictor
    from panoptic_ros.ros.outputs import label_messages
    from panoptic_ros.synth.scene import SceneRenderer
    from panoptic_ros.tracking import InstanceTracker, TrackerConfig
    from panoptic_ros.weights import resolve_model

    rows = []

    def work() -> None:       # the node's compute thread: load, warm up and run on one thread
        engine, spec, _ = create_engine('torch', resolve_model(None, None), device='cpu')
        predictor = Predictor(engine, spec)
        tracker = InstanceTracker(TrackerConfig())
        images = [SceneRenderer(height, width).render(np.random.default_rng(s))[0]
                  for s in range(4)]
        wanted = {'semantic', 'instance', 'panoptic'}
        for k in range(3 + frames):
            image = images[k % len(images)]
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            result = predictor([image])[0]
            t0 = time.perf_counter()
            tracker.update(result)
            t1 = time.perf_counter()
            list(label_messages(Header(), image, result, predictor.labels, wanted))
            t2 = time.perf_counter()
            if k >= 3:
                rows.append([result.timings_ms['inference'],
                             result.timings_ms['postprocess'] + (t1 - t0) * 1e3,
                             (t2 - t1) * 1e3,
                             resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults])

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    print(json.dumps(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--frames', type=int, default=10)
    ap.add_argument('--height', type=int, default=1024)
    ap.add_argument('--width', type=int, default=2048)
    ap.add_argument('--out')
    ap.add_argument('--child', choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.frames, args.height, args.width)
        return
    rows = {m: [] for m in MODES}
    for _ in range(args.rounds):
        for mode in MODES:     # alternated, so drifts in machine load hit both
            out = subprocess.run([sys.executable, __file__, '--child', mode, '--frames',
                                  str(args.frames), '--height', str(args.height), '--width',
                                  str(args.width)], capture_output=True, text=True, check=True)
            rows[mode] += json.loads(out.stdout.strip().splitlines()[-1])
    report = {'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores',
              'image': [args.height, args.width], 'rounds': args.rounds,
              'frames_per_round': args.frames}
    for mode in MODES:
        med = np.median(np.array(rows[mode]), 0)
        report[mode] = {f: round(float(v), 2) for f, v in zip(FIELDS, med)}
    report['inference_ratio'] = round(report['default']['inference_ms']
                                      / report['policy']['inference_ms'], 2)
    print(json.dumps(report, indent=2))
    if args.out:
        from panoptic_ros.fileio import atomic_write_json

        atomic_write_json(args.out, report)


if __name__ == '__main__':
    main()
