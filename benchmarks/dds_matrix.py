"""Large label images between two processes on one machine: which frames arrive, and how late.

The matrix of issue 16: subscriber reliability (reliable / best effort, as RViz and
``ros2 topic hz`` use) x the publisher's transports x image size and encoding. The publisher
is a separate process publishing as the node does (reliable, keep last 5); the subscriber is
another, with Fast DDS's default transports unless the cell says otherwise. Each cell sends
``--frames`` images at ``--rate`` Hz on a fresh domain and counts what the subscriber got.

    .venv/bin/python benchmarks/dds_matrix.py --rate 5 --frames 25 --out benchmarks/dds_matrix.json

Publisher transports:

- ``default``: Fast DDS's builtin transports (UDPv4 and shared memory with a 512 KiB segment).
- ``shm_segment``: the node's profile ``config/fastdds_node.xml`` (UDPv4 and shared memory
  with a 64 MiB segment, so a whole label image fits in shared memory); the subscriber keeps
  the default transports.
- ``large_data``: ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` on both ends.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from panoptic_ros.ros.dds import PROFILE_VARIABLE, TRANSPORTS_VARIABLE, default_profile
from panoptic_ros.ros.image_io import ENCODING_DTYPES

# publisher's and subscriber's environment additions per row of the matrix
TRANSPORTS = {
    'default': ({}, {}),
    'shm_segment': ({PROFILE_VARIABLE: str(default_profile())}, {}),
    'large_data': ({TRANSPORTS_VARIABLE: 'LARGE_DATA'}, {TRANSPORTS_VARIABLE: 'LARGE_DATA'}),
}


def _publisher(args) -> int:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from panoptic_ros.ros.image_io import label_image

    rclpy.init()
    node = rclpy.create_node('matrix_pub')
    pub = node.create_publisher(Image, 'labels', QoSProfile(
        depth=5, reliability=ReliabilityPolicy.RELIABLE))
    dtype, ch = ENCODING_DTYPES[args.encoding]
    shape = (args.height, args.width, ch) if ch > 1 else (args.height, args.width)
    msg = label_image(Header(), np.random.default_rng(0).integers(0, 200, shape).astype(dtype),
                      args.encoding)        # built as the node builds its label images
    end = time.monotonic() + 20
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(1.0)                       # let the match settle on both sides
    failed = 0
    for i in range(args.frames):
        t = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = t // 10**9, t % 10**9
        msg.header.frame_id = str(i)
        try:
            pub.publish(msg)
        except Exception:                 # noqa: BLE001 - counted, as the node does
            failed += 1
        time.sleep(1.0 / args.rate)
    time.sleep(2.0)                       # resends of the last frames
    print(json.dumps({'publish_failed': failed}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def _subscriber(args) -> int:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from panoptic_ros.bag.source import stamp_ns

    rclpy.init()
    node = rclpy.create_node('matrix_sub')
    got: dict[int, float] = {}

    def on_image(msg) -> None:
        got[int(msg.header.frame_id)] = (time.time_ns() - stamp_ns(msg.header.stamp)) / 1e6

    reliability = ReliabilityPolicy.RELIABLE if args.reliability == 'reliable' else \
        ReliabilityPolicy.BEST_EFFORT
    node.create_subscription(Image, 'labels', on_image,
                             QoSProfile(depth=5, reliability=reliability))
    end = time.monotonic() + args.duration
    while time.monotonic() < end and len(got) < args.frames:
        rclpy.spin_once(node, timeout_sec=0.05)
    lat = np.array(sorted(got.values())) if got else np.zeros(0)
    print(json.dumps({'received': len(got),
                      'latency_p50_ms': float(np.median(lat)) if lat.size else None,
                      'latency_max_ms': float(lat.max()) if lat.size else None}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def _cell(args, transport: str, reliability: str, size: tuple[int, int], encoding: str,
          domain: int) -> dict:
    pub_env, sub_env = TRANSPORTS[transport]
    base = {k: v for k, v in os.environ.items()
            if k not in (PROFILE_VARIABLE, TRANSPORTS_VARIABLE)}
    base['ROS_DOMAIN_ID'] = str(domain)
    common = ['--height', str(size[0]), '--width', str(size[1]), '--encoding', encoding,
              '--frames', str(args.frames), '--rate', str(args.rate)]
    duration = args.frames / args.rate + 25
    sub = subprocess.Popen([sys.executable, __file__, '--role', 'sub', '--reliability',
                            reliability, '--duration', str(duration), *common],
                           env={**base, **sub_env}, stdout=subprocess.PIPE, text=True)
    pub = subprocess.Popen([sys.executable, __file__, '--role', 'pub', *common],
                           env={**base, **pub_env}, stdout=subprocess.PIPE, text=True)
    pub_out, _ = pub.communicate(timeout=duration + 30)
    sub_out, _ = sub.communicate(timeout=duration + 30)
    row = {'transport': transport, 'reliability': reliability, 'size': f'{size[0]}x{size[1]}',
           'encoding': encoding,
           'mb': size[0] * size[1] * ENCODING_DTYPES[encoding][1] *
           np.dtype(ENCODING_DTYPES[encoding][0]).itemsize / 1e6,
           'sent': args.frames, **json.loads(sub_out.strip().splitlines()[-1]),
           **json.loads(pub_out.strip().splitlines()[-1])}
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--role', choices=('matrix', 'pub', 'sub'), default='matrix')
    ap.add_argument('--height', type=int, default=1024)
    ap.add_argument('--width', type=int, default=2048)
    ap.add_argument('--encoding', default='32SC1', choices=ENCODING_DTYPES)
    ap.add_argument('--reliability', default='reliable')
    ap.add_argument('--frames', type=int, default=25)
    ap.add_argument('--rate', type=float, default=5.0)
    ap.add_argument('--duration', type=float, default=30.0)
    ap.add_argument('--transports', nargs='+', default=list(TRANSPORTS))
    ap.add_argument('--sizes', nargs='+', default=['512x1024:32SC1', '1024x2048:mono8',
                                                     '1024x2048:32SC1', '1024x2048:rgb8'])
    ap.add_argument('--domain', type=int, default=120)
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    if args.role == 'pub':
        return _publisher(args)
    if args.role == 'sub':
        return _subscriber(args)
    rows = []
    domain = args.domain
    for transport in args.transports:
        for reliability in ('reliable', 'best_effort'):
            for spec in args.sizes:
                hw, encoding = spec.split(':')
                size = tuple(int(v) for v in hw.split('x'))
                rows.append(_cell(args, transport, reliability, size, encoding, domain))
                domain += 1
                r = rows[-1]
                print(f"{transport:12s} {reliability:12s} {r['size']:10s} {encoding:6s} "
                      f"{r['mb']:5.1f} MB  {r['received']:3d}/{r['sent']}  p50 "
                      f"{r['latency_p50_ms'] or float('nan'):7.1f} ms", flush=True)
    if args.out:
        from panoptic_ros.fileio import atomic_write_json

        atomic_write_json(args.out, {'rate_hz': args.rate, 'frames': args.frames,
                                     'rows': rows}, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
