"""Soak test of panoptic_node: hours of camera load, with the node's memory, threads, open files
and frame accounting sampled over time.

The node runs in its own process (its own ROS domain) with every output subscribed, as RViz and
a recorder would; a publisher thread sends synthetic street scenes at ``--rate`` Hz and
``--height`` x ``--width``. Every ``--sample`` seconds the script records the node's resident
memory, threads and open files (from ``/proc``) and its ``/diagnostics`` counters. At the end
the camera stops, the queue drains, and the report says:

* memory after warm-up (the first ``--warmup`` seconds) and the growth of its floor since
  (:func:`floor_growth`);
* threads and open files, minimum and maximum after warm-up;
* frames received = processed + dropped (by reason) + bad, and whether that holds;
* outputs received per topic, output age (receive time minus the input stamp) p50 / p95.

    .venv/bin/python benchmarks/soak.py --minutes 30 --out benchmarks/soak_30min.json

Exit status 1 when memory grew by ``--max-growth-mib`` or more after warm-up, a thread or file
count kept growing, or a frame is unaccounted for.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

LABEL_TOPICS = ('semantic', 'instance', 'panoptic', 'overlay')


def proc_resources(pid: int) -> dict:
    """Resident memory (MiB), threads and open files of a process, from /proc."""
    status = Path(f'/proc/{pid}/status').read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith('VmRSS'))
    return {'rss_mib': rss / 1024, 'threads': len(os.listdir(f'/proc/{pid}/task')),
            'files': len(os.listdir(f'/proc/{pid}/fd'))}


def start_node(domain: int, params: dict) -> subprocess.Popen:
    """The node as the launch file starts it (its Fast DDS profile included)."""
    from panoptic_ros.ros.dds import node_environment

    args = [arg for k, v in params.items() for arg in ('-p', f'{k}:={v}')]
    code = 'from panoptic_ros.ros.node import main\nmain()'
    dds_env, _ = node_environment('default')
    return subprocess.Popen([sys.executable, '-c', code, '--ros-args', *args],
                            env={**os.environ, **dds_env, 'ROS_DOMAIN_ID': str(domain)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def floor_growth(samples: list[dict]) -> float:
    """Growth of the memory floor: the lowest RSS of the last quarter of the samples minus
    the lowest of the first quarter. A sample taken while a frame is in flight holds that
    frame's buffers (a 1024x2048 frame's label images and overlay: 100-150 MB), so single
    samples jump; the floor between frames is what a leak raises."""
    q = max(1, len(samples) // 4)
    return (min(s['rss_mib'] for s in samples[-q:])
            - min(s['rss_mib'] for s in samples[:q]))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--minutes', type=float, default=30.0)
    ap.add_argument('--rate', type=float, default=10.0, help='camera frames per second')
    ap.add_argument('--height', type=int, default=1024)
    ap.add_argument('--width', type=int, default=2048)
    ap.add_argument('--model', default='dense_detections')
    ap.add_argument('--sample', type=float, default=10.0, help='seconds between samples')
    ap.add_argument('--warmup', type=float, default=60.0, help='seconds before the baseline')
    ap.add_argument('--max-growth-mib', type=float, default=50.0)
    ap.add_argument('--domain', type=int, default=77)
    ap.add_argument('--out', help='JSON report')
    args = ap.parse_args()

    os.environ['ROS_DOMAIN_ID'] = str(args.domain)
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from panoptic_ros_msgs.msg import PanopticSegmentArray
    from panoptic_ros.fileio import atomic_write_json
    from panoptic_ros.synth.scene import SceneRenderer

    proc = start_node(args.domain, {'autostart': 'true', 'model': args.model})
    rclpy.init()
    node = rclpy.create_node('soak')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    counts = {name: 0 for name in (*LABEL_TOPICS, 'segments')}
    ages: list[float] = []
    diag: dict = {}

    def on_segments(msg):
        counts['segments'] += 1
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        ages.append((time.time() - stamp) * 1e3)

    def on_label(name):
        def cb(_msg):
            counts[name] += 1
        return cb

    def on_diag(msg):
        for st in msg.status:
            if 'panoptic segmentation' in st.name:
                diag.clear()
                diag.update({kv.key: kv.value for kv in st.values})
                diag['message'] = st.message

    node.create_subscription(PanopticSegmentArray, 'panoptic/segments', on_segments, reliable)
    for name in LABEL_TOPICS:
        node.create_subscription(Image, f'panoptic/{name}', on_label(name), reliable)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    pub = node.create_publisher(Image, 'image', reliable)
    renderer = SceneRenderer(args.height, args.width)
    frames = [renderer.render(np.random.default_rng(seed))[0] for seed in range(4)]
    sent = [0]
    stop = threading.Event()

    def camera():
        period = 1.0 / args.rate
        t_next = time.monotonic()
        while not stop.is_set():
            rgb = frames[sent[0] % len(frames)]
            msg = Image(height=args.height, width=args.width, encoding='rgb8',
                        step=args.width * 3, data=rgb.tobytes())
            now = time.time()
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int(now % 1 * 1e9)
            msg.header.frame_id = 'camera'
            pub.publish(msg)
            sent[0] += 1
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))

    # wait until the node answers before the clock starts
    cam = threading.Thread(target=camera, daemon=True)
    cam.start()
    deadline = time.monotonic() + 120
    while counts['segments'] == 0 and time.monotonic() < deadline and proc.poll() is None:
        executor.spin_once(timeout_sec=0.1)
    if counts['segments'] == 0:
        stop.set()
        proc.terminate()
        print('the node did not answer:', proc.stdout.read()[-3000:], file=sys.stderr)
        return 1
    t0 = time.monotonic()
    samples = []
    t_sample = t0
    while time.monotonic() - t0 < args.minutes * 60 and proc.poll() is None:
        executor.spin_once(timeout_sec=0.05)
        if time.monotonic() >= t_sample:
            samples.append({'t_s': round(time.monotonic() - t0, 1),
                            **proc_resources(proc.pid),
                            'received': int(diag.get('frames_received', 0)),
                            'processed': int(diag.get('frames_processed', 0)),
                            'dropped': int(diag.get('frames_dropped', 0))})
            print(json.dumps(samples[-1]), flush=True)
            t_sample += args.sample
    stop.set()
    cam.join(2)
    end = time.monotonic() + 5
    while time.monotonic() < end:                  # drain; the last report comes after
        executor.spin_once(timeout_sec=0.05)
    alive = proc.poll() is None
    final = dict(diag)
    proc.send_signal(2)
    try:
        log = proc.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        log = proc.communicate()[0]
    node.destroy_node()
    rclpy.shutdown()

    base = [s for s in samples if s['t_s'] >= args.warmup] or samples[-1:]
    received = int(final.get('frames_received', 0))
    processed = int(final.get('frames_processed', 0))
    dropped = {k[len('dropped.'):]: int(v) for k, v in final.items() if k.startswith('dropped.')}
    bad = int(final.get('bad_inputs', 0))
    report = {
        'minutes': args.minutes, 'rate_hz': args.rate, 'size': [args.height, args.width],
        'model': args.model, 'node_alive_at_end': alive, 'sent': sent[0],
        'received': received, 'processed': processed, 'dropped': dropped, 'bad_inputs': bad,
        'accounted': received == processed + sum(dropped.values()) + bad,
        'outputs': counts,
        'age_ms': {'p50': percentile(ages, 50), 'p95': percentile(ages, 95)},
        'rss_mib': {'after_warmup': base[0]['rss_mib'], 'end': base[-1]['rss_mib'],
                    'max': max(s['rss_mib'] for s in base), 'growth': floor_growth(base)},
        'threads': [min(s['threads'] for s in base), max(s['threads'] for s in base)],
        'files': [min(s['files'] for s in base), max(s['files'] for s in base)],
        'samples': samples, 'traceback_in_log': 'Traceback' in log,
    }
    ok = (alive and report['accounted'] and report['rss_mib']['growth'] < args.max_growth_mib
          and report['threads'][1] - report['threads'][0] <= 2
          and report['files'][1] - report['files'][0] <= 2 and not report['traceback_in_log'])
    report['ok'] = ok
    summary = {k: v for k, v in report.items() if k != 'samples'}
    print(json.dumps(summary, indent=1))
    if args.out:
        atomic_write_json(args.out, report, indent=1)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
