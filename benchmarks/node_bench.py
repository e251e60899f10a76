"""Node overhead per frame: everything but inference, measured through the real node.

Starts panoptic_node (default model, torch engine) as a process, publishes camera frames over
DDS at a rate it can follow, subscribes first to ``panoptic/segments`` only, then also to its
label images (as a downstream consumer would),
and reads the per-stage timings each frame reports in ``panoptic/segments``. A second phase also
subscribes to the overlay, which the node only draws while someone listens.

    python benchmarks/node_bench.py --height 1024 --width 2048 --frames 30 --out benchmarks/node_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'test'))

from ros_peer import (Peer, camera_image, new_domain, set_stamp, stamp_ns,  # noqa: E402
                      start_node, stop_node)

STAGES = ('decode', 'preprocess', 'inference', 'postprocess', 'publish', 'queue', 'total')
OVERHEAD = ('decode', 'preprocess', 'postprocess', 'publish')


def _phase(peer, pub, rgb, frames: int, period: float, first_stamp: int) -> dict:
    got = peer.received['segments']
    got.clear()
    msg = camera_image(rgb, first_stamp)
    for i in range(frames):
        stamp = first_stamp + i * 10 ** 8
        set_stamp(msg.header, stamp)
        pub.publish(msg)
        peer.wait_for(lambda: any(stamp_ns(m.header) == stamp for m in got), 30.0)
        peer.spin(period)
    rows = np.array([[getattr(m.timings, f'{s}_ms') for s in STAGES] for m in got])
    med = dict(zip(STAGES, np.median(rows, 0).round(2).tolist()))
    overhead = rows[:, [STAGES.index(s) for s in OVERHEAD]].sum(1)
    med['overhead'] = round(float(np.median(overhead)), 2)
    med['overhead_p95'] = round(float(np.percentile(overhead, 95)), 2)
    med['overhead_share'] = round(float(np.median(overhead / (overhead + rows[:, 2]))), 3)
    med['frames'] = len(rows)
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--height', type=int, default=1024)
    ap.add_argument('--width', type=int, default=2048)
    ap.add_argument('--frames', type=int, default=30)
    ap.add_argument('--engine', default='torch')
    ap.add_argument('--dds-profile', default='default',
                    help="the node's Fast DDS profile, as the launch file's dds_profile")
    ap.add_argument('--node-param', action='append', default=[], metavar='NAME:=VALUE',
                    help='a further node parameter (e.g. fusion_stride:=4), repeatable')
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()

    from sensor_msgs.msg import Image

    from panoptic_ros.synth.scene import SceneRenderer
    from panoptic_ros_msgs.msg import PanopticSegmentArray

    from panoptic_ros.ros.dds import node_environment

    domain = new_domain()
    dds_env, _ = node_environment(args.dds_profile)
    extra = dict(p.split(':=', 1) for p in args.node_param)
    proc = start_node(domain, {'autostart': 'true', 'engine': args.engine, **extra},
                      env=dds_env)
    peer = Peer(domain)
    rgb, _, _ = SceneRenderer(args.height, args.width).render(np.random.default_rng(0))
    try:
        peer.subscribe('segments', PanopticSegmentArray, 'panoptic/segments')
        pub = peer.node.create_publisher(Image, 'image', 2)
        peer.wait_for(lambda: pub.get_subscription_count() > 0, 60.0, proc)
        _phase(peer, pub, rgb, 3, 0.2, 1_000_000_000 * 10 ** 9)  # warm-up
        results = {'segments_only': _phase(peer, pub, rgb, args.frames, 0.2,
                                           1_100_000_000 * 10 ** 9)}
        for name in ('semantic', 'instance', 'panoptic'):
            peer.subscribe(name, Image, f'panoptic/{name}', 1)
        peer.spin(2.0)
        results['no_overlay'] = _phase(peer, pub, rgb, args.frames, 0.2,
                                       1_200_000_000 * 10 ** 9)
        peer.subscribe('overlay', Image, 'panoptic/overlay', 1)
        peer.spin(2.0)
        results['with_overlay'] = _phase(peer, pub, rgb, args.frames, 0.2,
                                         1_300_000_000 * 10 ** 9)
    finally:
        peer.close()
        stop_node(proc)
    results['overlay_extra_ms'] = round(results['with_overlay']['publish']
                                        - results['no_overlay']['publish'], 2)
    report = {'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores',
              'image': [args.height, args.width], 'engine': args.engine,
              'dds_profile': args.dds_profile, 'node_params': extra, **results}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + '\n')


if __name__ == '__main__':
    main()
