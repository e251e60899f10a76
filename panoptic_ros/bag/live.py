"""``--mode live``: replay a bag over DDS through a running ``panoptic_node``.

:class:`NodeProcess` starts the node (its log goes to a file, never a pipe that could fill);
:class:`LiveSession` is this process's ROS 2 participant: it publishes the bag's images, takes
every output as serialized bytes (recorded as is), and reads the node's ``/diagnostics`` for
the reasons of drops. :func:`play` sends frames on a schedule and matches outputs to inputs by
header stamp.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from panoptic_ros.bag import types
from panoptic_ros.bag.metrics import STAGES, FrameTiming, ReplayMetrics
from panoptic_ros.bag.source import Frame, stamp_ns
from panoptic_ros.errors import PanopticError

NODE_NAME = 'panoptic'


class NodeProcess:
    """``panoptic_node`` as a child process, configured and activated at start, with the
    Fast DDS profile the launch file gives it (:mod:`panoptic_ros.ros.dds`).

    Args:
        namespace: ROS namespace of the node (its topics are under it).
        params: node parameters (``name: value``).
        log_path: the node's stdout and stderr.
    """

    def __init__(self, namespace: str, params: dict, log_path: Path) -> None:
        from panoptic_ros.ros.dds import node_environment

        args = ['--ros-args', '-r', f'__ns:={namespace}', '-p', 'autostart:=true']
        for k, v in params.items():
            args += ['-p', f'{k}:={v}']
        self.log_path = log_path
        self._log = open(log_path, 'w')
        env, warning = node_environment('default')
        if warning:
            self._log.write(f'panoptic bag eval: {warning}\n')
            self._log.flush()
        self.proc = subprocess.Popen([sys.executable, '-m', 'panoptic_ros.ros.node', *args],
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **env})

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return '\n'.join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ''

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class LiveSession:
    """Publisher of the bag's images and raw subscriber of the node's outputs.

    Args:
        namespace: the node's namespace.
        compressed: publish on ``image/compressed`` (``CompressedImage``) instead of ``image``.
        input_topic: publish here instead (a running node remapped to a camera topic).
        overlay: also subscribe to (and so make the node render) the overlay.
    """

    def __init__(self, namespace: str, compressed: bool, input_topic: str | None = None,
                 overlay: bool = True) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        from panoptic_ros_msgs.msg import LabelMap, PanopticSegmentArray

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('panoptic_bag_eval', context=self.context)
        ns = namespace.rstrip('/')
        self.input_topic = input_topic or f'{ns}/image' + ('/compressed' if compressed else '')
        self.input_type = CompressedImage if compressed else Image
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.publisher = self.node.create_publisher(self.input_type, self.input_topic,
                                                    QoSProfile(depth=10))
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()   # (name, topic, mono, wall_ns, raw)
        # the rclpy class of each output we take
        self.classes = {name: PanopticSegmentArray if name == 'segments' else Image
                        for name in types.OUTPUT_TYPES if overlay or name != 'overlay'}
        self.topics = {name: f'{ns}/panoptic/{name}' for name in self.classes}
        self.subs = [self._raw_sub(name, self.classes[name], topic, reliable)
                     for name, topic in self.topics.items()]
        self.label_map = None
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(LabelMap, f'{ns}/panoptic/label_map',
                                      self._on_label_map, latched)
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_time = 0.0
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 50)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _raw_sub(self, name, cls, topic, qos):
        def callback(raw: bytes) -> None:
            self.inbox.put((name, topic, time.perf_counter(), time.time_ns(), raw))
        return self.node.create_subscription(cls, topic, callback, qos, raw=True)

    def _on_label_map(self, msg) -> None:
        self.label_map = msg

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(f'{NODE_NAME}:'):
                self.diagnostics = {kv.key: kv.value for kv in status.values}
                self.diagnostics_time = time.perf_counter()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            while self.context.ok():
                self._executor.spin_once(timeout_sec=0.05)
        except (ExternalShutdownException, self._rclpy.exceptions.InvalidHandle):
            pass

    def wait_ready(self, timeout: float, node: NodeProcess | None = None) -> None:
        """Until the node is active (label map received), subscribes to our images and
        publishes every output topic (that the node has seen our subscriptions too is
        :meth:`handshake`'s job)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if node is not None and not node.alive():
                raise PanopticError(f'panoptic_node exited during start-up (code '
                                    f'{node.proc.returncode}); its log ({node.log_path}):\n'
                                    f'{node.log_tail()}')
            if (self.label_map is not None and self.publisher.get_subscription_count() > 0
                    and all(s.get_publisher_count() > 0 for s in self.subs)):
                return
            time.sleep(0.1)
        where = f'; its log ({node.log_path}):\n{node.log_tail()}' if node else ''
        raise PanopticError(f'panoptic_node did not become ready in {timeout:.0f} s (no label '
                            f'map on the namespace, or no subscriber on {self.input_topic})'
                            f'{where}')

    def handshake(self, raw_frames, timeout: float) -> None:
        """Send ``raw_frames`` (CDR images with stamps the replay does not use) one per second
        until one comes back with every output we subscribe to: from then on the node knows
        all our subscriptions. Outputs of the handshake are discarded."""
        from rclpy.serialization import deserialize_message

        end = time.monotonic() + timeout
        got: dict[int, set] = {}
        for raw in raw_frames:
            self.publisher.publish(raw)
            step_end = min(end, time.monotonic() + 1.0)
            while time.monotonic() < step_end:
                try:
                    name, *_, data = self.inbox.get(timeout=0.1)
                except queue.Empty:
                    continue
                msg = deserialize_message(data, self.classes[name])
                seen = got.setdefault(stamp_ns(msg.header.stamp), set())
                seen.add(name)
                if seen == set(self.topics):
                    time.sleep(0.5)
                    while not self.inbox.empty():
                        self.inbox.get()
                    return
            if time.monotonic() >= end:
                break
        raise PanopticError(f'panoptic_node did not answer a test frame on {self.input_topic} '
                            f'with all of {", ".join(sorted(self.topics))} in {timeout:.0f} s')

    def counters(self) -> dict[str, int]:
        """The node's cumulative frame counters from its latest diagnostics."""
        return {k: int(v) for k, v in self.diagnostics.items()
                if k in ('frames_received', 'frames_processed') or k.startswith(
                    ('dropped.', 'bad_input.'))}

    def close(self) -> None:
        self._rclpy.try_shutdown(context=self.context)
        self._thread.join(2.0)
        self.node.destroy_node()


@dataclass
class _InFlight:
    frame: Frame
    sent: float
    sent_wall_ns: int
    outputs: dict = field(default_factory=dict)
    last_received: float = 0.0


def play(session: LiveSession, frames: Iterable[Frame], metrics: ReplayMetrics,
         due: Callable[[Frame], float], on_frame: Callable[[Frame, dict, FrameTiming], None],
         record: Callable[[str, str, int, bytes], None] | None = None,
         need_quality: bool = False, on_sent: Callable[[], None] | None = None,
         node_alive: Callable[[], bool] | None = None) -> None:
    """Send ``frames`` at ``due(frame)`` seconds after the first, collect outputs until every
    frame is answered or accounted for by the node's drop counters (or outputs stop coming),
    and put the unanswered frames in ``metrics.drops`` by reason.

    ``record(topic, msgtype, log_ns, raw)`` receives every message sent and every output that
    answers one of them (a late answer to a handshake frame is dropped here).
    ``node_alive``: when it turns false (the node process died) nothing more is sent, the
    outputs already on their way are collected, and the frames left unanswered count as
    ``node_exited``.
    """
    from rclpy.serialization import deserialize_message

    required = {'segments', 'panoptic', 'semantic'} if need_quality else {'segments'}
    expected = set(session.topics)
    inflight: dict[int, _InFlight] = {}
    sent_stamps: set[int] = set()
    while not session.inbox.empty():      # late outputs of an earlier run
        session.inbox.get()
    base = session.counters()
    last_output = time.perf_counter()
    worst = 0.0

    def complete(item: _InFlight) -> None:
        nonlocal worst
        seg = item.outputs['segments']
        received_ns = stamp_ns(seg.timings.received)
        stages = {k: float(getattr(seg.timings, f'{k}_ms')) for k in STAGES}
        timing = FrameTiming(item.frame.index, item.sent, item.last_received, stages,
                             (received_ns - item.sent_wall_ns) / 1e6 if received_ns else None)
        worst = max(worst, timing.done - timing.sent)
        metrics.on_done(timing)
        on_frame(item.frame, item.outputs, timing)

    def drain(wait: float) -> None:
        nonlocal last_output
        end = time.perf_counter() + wait
        while True:
            try:
                name, topic, t, wall_ns, raw = session.inbox.get(
                    timeout=max(0.0, end - time.perf_counter()))
            except queue.Empty:
                return
            msg = deserialize_message(raw, session.classes[name])
            stamp = stamp_ns(msg.header.stamp)
            if stamp not in sent_stamps:
                continue                  # a late answer to a handshake frame: not the bag's
            last_output = t
            if record:
                record(topic, types.OUTPUT_TYPES[name], wall_ns, raw)
            item = inflight.get(stamp)
            if item is not None and name not in item.outputs:
                item.outputs[name] = msg
                item.last_received = t
                if expected <= item.outputs.keys():
                    complete(inflight.pop(stamp))
            if time.perf_counter() >= end:
                return

    start = None
    first_due = None
    dead = False
    for frame in frames:
        if node_alive is not None and not node_alive():
            dead = True
            break
        d = due(frame)
        if start is None:
            start, first_due = time.perf_counter(), d
        while (wait := start + d - first_due - time.perf_counter()) > 0:
            drain(wait)
        sent = time.perf_counter()
        wall = time.time_ns()
        session.publisher.publish(frame.raw)
        metrics.on_sent(sent)
        if on_sent:
            on_sent()
        if record:
            record(session.input_topic, frame.msgtype, wall, frame.raw)
        inflight[frame.stamp_ns] = _InFlight(frame, sent, wall)
        sent_stamps.add(frame.stamp_ns)
        drain(0.0)
    # wait for the last outputs, or for the node to report where the rest went
    sent_at_end = time.perf_counter()
    while inflight:
        idle = max(5.0, 3 * worst)
        drain(0.2)
        if dead or (node_alive is not None and not node_alive()):
            drain(0.5)                    # what the node published before it died
            dead = True
            break
        now = time.perf_counter()
        fresh = session.diagnostics_time > max(last_output, sent_at_end)
        if fresh:
            c = session.counters()
            accounted = sum(c.get(k, 0) - base.get(k, 0) for k in c
                            if k.startswith(('dropped.', 'bad_input.')))
            if accounted >= len(inflight):
                break
        if now - last_output > idle and now - sent_at_end > idle:
            break
    for stamp in [s for s, item in inflight.items() if required <= item.outputs.keys()]:
        complete(inflight.pop(stamp))     # an optional output (the overlay) went missing
    if dead:
        metrics.drops['node_exited'] += len(inflight)
        return
    _attribute_drops(metrics, len(inflight), base, session.counters())


def _attribute_drops(metrics: ReplayMetrics, missing: int, base: dict, now: dict) -> None:
    """Split the unanswered frames by the node's counters: dropped by the node (by reason),
    bad inputs, never received (lost in transport), or answered only in part."""
    left = missing
    for key in sorted(now):
        if key.startswith(('dropped.', 'bad_input.')):
            n = min(left, now[key] - base.get(key, 0))
            if n > 0:
                metrics.drops[key.replace('dropped.', '')] += n
                left -= n
    received = now.get('frames_received', 0) - base.get('frames_received', 0)
    lost = min(left, max(0, metrics.sent - received)) if now else 0
    if lost:
        metrics.drops['not_received'] += lost
        left -= lost
    if left:
        metrics.drops['no_output' if now else 'unknown'] += left
