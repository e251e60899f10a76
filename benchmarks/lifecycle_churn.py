"""Lifecycle churn of panoptic_node: configure / activate / deactivate / cleanup many times while
a camera publishes, with the node's threads, open files and resident memory sampled.

    .venv/bin/python benchmarks/lifecycle_churn.py --cycles 100 --out churn.json

Each cycle configures (loads the model), activates, lets the camera's frames in for
``--active`` seconds, deactivates and cleans up (releases the model); every ``--every``
cycles the node's ``/proc`` figures are recorded after the cleanup. Memory growth is that of
the floor: the lowest resident size of the last quarter of the cycles against that of the
first quarter (after cycle 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

from soak import proc_resources, start_node


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--cycles', type=int, default=100)
    ap.add_argument('--active', type=float, default=0.3, help='seconds active per cycle')
    ap.add_argument('--every', type=int, default=10)
    ap.add_argument('--rate', type=float, default=10.0)
    ap.add_argument('--height', type=int, default=128)
    ap.add_argument('--width', type=int, default=256)
    ap.add_argument('--domain', type=int, default=78)
    ap.add_argument('--out')
    args = ap.parse_args()

    os.environ['ROS_DOMAIN_ID'] = str(args.domain)
    import rclpy
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from panoptic_ros_msgs.msg import PanopticSegmentArray
    from panoptic_ros.fileio import atomic_write_json
    from panoptic_ros.synth.scene import SceneRenderer

    proc = start_node(args.domain, {'warmup_frames': 0})
    rclpy.init()
    node = rclpy.create_node('churn')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    answered = [0]
    node.create_subscription(PanopticSegmentArray, 'panoptic/segments',
                             lambda _m: answered.__setitem__(0, answered[0] + 1), 5)
    pub = node.create_publisher(Image, 'image', 2)
    rgb = SceneRenderer(args.height, args.width).render(np.random.default_rng(8))[0]
    stop = threading.Event()

    def camera():
        while not stop.is_set():
            msg = Image(height=args.height, width=args.width, encoding='rgb8',
                        step=args.width * 3, data=rgb.tobytes())
            now = time.time()
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int(now % 1 * 1e9)
            pub.publish(msg)
            time.sleep(1.0 / args.rate)

    client = node.create_client(ChangeState, '/panoptic/change_state')
    if not client.wait_for_service(timeout_sec=60):
        print('no lifecycle service', file=sys.stderr)
        return 1

    def spin_until(done, timeout):
        end = time.monotonic() + timeout
        while not done() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        return done()

    def transition(tid, repeat=False):
        req = ChangeState.Request(transition=Transition(id=tid))
        future = client.call_async(req)
        end = time.monotonic() + 30
        while repeat and not spin_until(future.done, 2.0) and time.monotonic() < end:
            future = client.call_async(req)
        if not spin_until(future.done, max(0.0, end - time.monotonic())):
            raise RuntimeError(f'transition {tid} not answered')
        return future.result().success

    # match the client first with a request that is harmless to repeat (refused)
    transition(Transition.TRANSITION_ACTIVATE, repeat=True)
    threading.Thread(target=camera, daemon=True).start()
    samples = []
    try:
        for cycle in range(1, args.cycles + 1):
            for tid in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
                if not transition(tid):
                    raise RuntimeError(f'cycle {cycle}: transition {tid} failed')
            spin_until(lambda: False, args.active)
            for tid in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP):
                if not transition(tid):
                    raise RuntimeError(f'cycle {cycle}: transition {tid} failed')
            if cycle == 1 or cycle % args.every == 0:
                spin_until(lambda: False, 0.3)
                samples.append({'cycle': cycle, **proc_resources(proc.pid),
                                'answered': answered[0]})
                print(json.dumps(samples[-1]), flush=True)
    finally:
        stop.set()
        proc.send_signal(2)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        node.destroy_node()
        rclpy.shutdown()
    # one sample swings with what the allocator holds at that moment; a leak raises the floor
    early = [s['rss_mib'] for s in samples if 1 < s['cycle'] <= args.cycles / 4] or [
        samples[0]['rss_mib']]
    late = [s['rss_mib'] for s in samples if s['cycle'] > 3 * args.cycles / 4]
    report = {'cycles': args.cycles, 'samples': samples,
              'rss_floor_growth_mib': min(late) - min(early),
              'rss_range_mib': [min(s['rss_mib'] for s in samples),
                                max(s['rss_mib'] for s in samples)],
              'threads': sorted({s['threads'] for s in samples}),
              'files': sorted({s['files'] for s in samples})}
    print(json.dumps({k: v for k, v in report.items() if k != 'samples'}))
    if args.out:
        atomic_write_json(args.out, report, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
