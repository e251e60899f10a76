"""``panoptic_node``: the managed (lifecycle) ROS 2 node that runs panoptic segmentation.

Threads: the executor thread runs the image callback, which only stamps and enqueues the
message (a bounded queue, newest frame wins), and a timer that publishes ``/diagnostics``. One
compute thread, alive as long as the node, does all the model's work: it loads and warms up
the model at ``configure`` and, while active, decodes, runs the model, post-processes and
publishes. Keeping every torch call on one thread matters on the CPU: the torch wheels' GNU
OpenMP gives each thread that runs a parallel operation its own pool, and once the pools hold
more threads than there are cores, OpenMP stops spin-waiting between parallel regions; with the
model loaded on the executor thread and run on another one, post-processing took 40% and
inference 20% longer (docs/benchmarks.md, node overhead). After its last parallel region an
OpenMP thread also spins for about 300,000 rounds by default (a few ms), on the core the label
images are then made and published with; the node shortens that to 10,000 (``GOMP_SPINCOUNT``,
unless set in its environment), which took 2-3 ms off publishing the three label images at
1024x2048.

Lifecycle: ``configure`` loads the model and warms it up (on failure the node stays
unconfigured, the reason in the log and in ``/diagnostics``); ``activate`` subscribes and starts
the frame loop; ``deactivate`` unsubscribes and stops it; ``cleanup`` releases the model.
"""

from __future__ import annotations

import os

# before torch, and with it GNU OpenMP, is loaded: libgomp reads its settings once, at load
os.environ.setdefault('GOMP_SPINCOUNT', '10000')

import dataclasses  # noqa: E402  (the imports follow the OpenMP setting on purpose)
import gc
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import Node, State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image

from panoptic_ros_msgs.msg import FrameTimings, LabelMap, PanopticSegmentArray
from panoptic_ros.errors import PanopticError
from panoptic_ros.heap import keep_freed_memory, return_freed_memory
from panoptic_ros.ros import diagnostics, outputs
from panoptic_ros.ros.image_io import BadImage, load_cv_bridge, to_rgb
from panoptic_ros.ros.params import PARAMS, check, descriptor
from panoptic_ros.ros.stream import RESETS, Frame, StreamMonitor
from panoptic_ros.tracking import InstanceTracker, TrackerConfig

# node parameter -> post-processing field (the first one the model's post-processing has)
POSTPROCESS_PARAMS = {
    'score_threshold': ('score_threshold',),
    'mask_threshold': ('mask_threshold', 'sigma'),     # sigma: dense detections, eq. 7
    'overlap_threshold': ('overlap_threshold',),
    'min_stuff_area': ('min_stuff_area',),
    'fusion_stride': ('fusion_stride',),
    'label_divisor': ('label_divisor',),
}


class FrameQueue:
    """Bounded queue between the image callback and the worker: when full, the oldest frame
    is dropped, so the newest always gets processed."""

    def __init__(self, size: int) -> None:
        self._items: deque = deque()
        self._size = size
        self._cond = threading.Condition()

    def put(self, item) -> int:
        """Enqueue; returns the number of frames dropped to make room (0 or 1)."""
        with self._cond:
            dropped = 0
            if len(self._items) >= self._size:
                self._items.popleft()
                dropped = 1
            self._items.append(item)
            self._cond.notify()
            return dropped

    def get(self, timeout: float):
        """The oldest waiting frame, or None after ``timeout`` seconds."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def clear(self) -> int:
        with self._cond:
            n = len(self._items)
            self._items.clear()
            return n


class PanopticNode(Node):
    """See the module docstring; parameters in :mod:`panoptic_ros.ros.params`."""

    def __init__(self, **kwargs) -> None:
        super().__init__('panoptic', **kwargs)
        for p in PARAMS:
            self.declare_parameter(p.name, p.default, descriptor(p))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.stats = diagnostics.FrameStats(self._p('diagnostics.window'))
        self._configured = False
        self._active = False
        self._status = 'unconfigured'
        self._predictor = None
        self._card_postprocess = None           # the model card's post-processing
        self._tracker: InstanceTracker | None = None
        self._stream = StreamMonitor()
        self._labels = None
        self._model_name = ''
        self._engine_desc = ''
        self._bridge = None
        self._pubs: dict = {}
        self._sub = None
        self._queue: FrameQueue | None = None
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix='panoptic_compute')
        self._worker: Future | None = None          # the frame loop on the compute thread
        self._stop = threading.Event()
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diag_timer = self.create_timer(self._p('diagnostics.period'),
                                             self._publish_diagnostics)

    def _p(self, name: str):
        return self.get_parameter(name).value

    # -- parameters ---------------------------------------------------------------------------

    def _on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            reason = check(param.name, param.value, self._configured)
            if reason:
                self.get_logger().warning(f'parameter change refused: {reason}')
                return SetParametersResult(successful=False, reason=reason)
        if self._predictor is not None and any(p.name in POSTPROCESS_PARAMS for p in params):
            # from the card's values, so that a negative value brings the card's back
            values = {name: self._p(name) for name in POSTPROCESS_PARAMS}
            values.update({p.name: p.value for p in params})
            self._predictor.postprocess = self._postprocess(self._card_postprocess, values)
        return SetParametersResult(successful=True)

    def _postprocess(self, current, values: dict):
        """``current`` with the node parameters in ``values`` applied (negative: keep)."""
        fields = {f.name for f in dataclasses.fields(current)}
        changes = {}
        for name, value in values.items():
            target = next((f for f in POSTPROCESS_PARAMS.get(name, ()) if f in fields), None)
            if target is not None and value >= 0:
                changes[target] = value
        return dataclasses.replace(current, **changes) if changes else current

    # -- lifecycle ----------------------------------------------------------------------------

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        # values given at start (command line, launch file, YAML) never went through
        # _on_set_parameters: check them here, as a change at run time would be
        bad = [reason for p in PARAMS if (reason := check(p.name, self._p(p.name), False))]
        if bad:
            self._status = f'configure failed: {"; ".join(bad)}'
            self.get_logger().error(self._status)
            return TransitionCallbackReturn.FAILURE
        try:
            self._compute.submit(self._load_model).result()
        except PanopticError as exc:
            self._status = f'configure failed: {exc}'
            self.get_logger().error(self._status)
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:     # rclpy would swallow it and leave the node silent
            self._status = f'configure failed: {type(exc).__name__}: {exc}'
            self.get_logger().error(self._status)
            return TransitionCallbackReturn.FAILURE
        self.stats = diagnostics.FrameStats(self._p('diagnostics.window'))
        self.destroy_timer(self._diag_timer)
        self._diag_timer = self.create_timer(self._p('diagnostics.period'),
                                             self._publish_diagnostics)
        wanted = set(self._p('outputs'))
        output_qos = QoSProfile(depth=self._p('output_qos.depth'),
                                reliability=ReliabilityPolicy.RELIABLE)
        types = {'semantic': Image, 'instance': Image, 'panoptic': Image, 'overlay': Image,
                 'segments': PanopticSegmentArray}
        self._pubs = {name: self.create_lifecycle_publisher(types[name], f'panoptic/{name}',
                                                            output_qos)
                      for name in types if name in wanted}
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._pubs['label_map'] = self.create_lifecycle_publisher(LabelMap, 'panoptic/label_map',
                                                                  latched)
        if self._p('input_transport') == 'compressed':
            self._bridge = load_cv_bridge()
        self._configured = True
        self._status = 'inactive'
        self.get_logger().info(f'configured: {self._model_name} on {self._engine_desc}')
        return TransitionCallbackReturn.SUCCESS

    def _load_model(self) -> None:
        import torch

        from panoptic_ros.engines import create_engine
        from panoptic_ros.inference import Predictor
        from panoptic_ros.weights import resolve_model

        weights = resolve_model(self._p('model') or None, self._p('weights') or None)
        device = self._p('device')
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        size = (self._p('input_height'), self._p('input_width'))
        if 0 in size and size != (0, 0):
            raise PanopticError('set both input_height and input_width, or neither')
        if self._p('tracking.instance_ids') == 'track' and not self._p('tracking.enabled'):
            raise PanopticError("tracking.instance_ids 'track' needs tracking.enabled true")
        engine, spec, card = create_engine(
            self._p('engine'), weights, device=device, precision=self._p('precision'),
            cache_dir=self._p('cache_dir') or None, size=None if 0 in size else size)
        predictor = Predictor(engine, spec)
        self._card_postprocess = predictor.postprocess
        predictor.postprocess = self._postprocess(
            predictor.postprocess, {name: self._p(name) for name in POSTPROCESS_PARAMS})
        blank = np.zeros((*engine.input_size, 3), np.uint8)
        for _ in range(self._p('warmup_frames')):
            predictor([blank])
        self._predictor, self._labels = predictor, predictor.labels
        self._tracker = InstanceTracker(TrackerConfig(
            self._p('tracking.iou_threshold'), self._p('tracking.max_age'),
            self._p('tracking.predict_motion'))) if self._p('tracking.enabled') else None
        self._model_name = f'{spec.architecture} ({weights.name})'
        self._engine_desc = (f'{engine.name} {engine.device} {self._p("precision")} '
                             f'{engine.input_size[0]}x{engine.input_size[1]}')

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        if self._tracker is not None:      # a new stream: no track continues across a pause
            self._tracker.reset()
        self._stream.reset()
        self._publish(self._pubs['label_map'], outputs.label_map_message(
            self._labels, self._model_name, self._predictor.postprocess.label_divisor,
            self.get_clock().now().to_msg()))
        reliability = {'reliable': ReliabilityPolicy.RELIABLE,
                       'best_effort': ReliabilityPolicy.BEST_EFFORT}
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self._p('input_qos.depth'),
                         reliability=reliability[self._p('input_qos.reliability')])
        self._queue = FrameQueue(self._p('queue_size'))
        self._stop.clear()
        self._worker = self._compute.submit(self._work)
        if self._p('input_transport') == 'compressed':
            self._sub = self.create_subscription(CompressedImage, 'image/compressed',
                                                 self._on_image, qos)
        else:
            self._sub = self.create_subscription(Image, 'image', self._on_image, qos)
        self._active = True
        self._status = 'active'
        self.get_logger().info(f'active: subscribed to {self._sub.topic_name}')
        return result

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_processing()
        self._status = 'inactive'
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        self._status = 'unconfigured'
        return super().on_cleanup(state)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        self._status = 'finalized'
        return super().on_shutdown(state)

    def _stop_processing(self) -> None:
        self._active = False
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        self._stop.set()
        if self._worker is not None:
            self._worker.result()
            self._worker = None
        if self._queue is not None:
            self.stats.on_dropped('deactivated', self._queue.clear())

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        if self._predictor is not None:
            device = self._predictor.engine.device
            self._predictor = self._card_postprocess = None
            gc.collect()                    # the model's memory now, not at some later frame
            return_freed_memory()
            if device.type == 'cuda':
                import torch

                torch.cuda.empty_cache()
        self._configured = False

    # -- frames -------------------------------------------------------------------------------

    def _on_image(self, msg) -> None:
        """Executor thread: stamp and enqueue, nothing else."""
        self.stats.on_received()
        dropped = self._queue.put((msg, self.get_clock().now(), time.perf_counter()))
        if dropped:
            self.stats.on_dropped('superseded', dropped)

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get(timeout=0.1)
            if item is None:
                continue
            try:
                self._process(*item)
            except Exception as exc:  # the worker must outlive any one frame
                if not self.context.ok():
                    return            # shutting down (Ctrl-C): the context is gone
                self.stats.on_dropped('error', message=f'{type(exc).__name__}: {exc}')
                self.get_logger().error(f'frame failed: {type(exc).__name__}: {exc}',
                                        throttle_duration_sec=5.0)

    def _process(self, msg, received, t_received: float) -> None:
        log = self.get_logger()
        t0 = time.perf_counter()
        try:
            rgb = to_rgb(msg, self._p('max_image_side'), self._bridge)
        except BadImage as exc:
            self.stats.on_bad_input(exc.kind, str(exc))
            log.warning(f'dropped a bad input image: {exc}', throttle_duration_sec=5.0)
            return
        stamp_ns = Time.from_msg(msg.header.stamp).nanoseconds
        process, events = self._stream.check(Frame(
            stamp_ns, msg.header.frame_id, tuple(rgb.shape[:2]),
            getattr(msg, 'encoding', None) or getattr(msg, 'format', ''), t_received),
            self._p('tracking.max_gap_s'))
        if events:
            self.stats.on_stream_events(events)
            log.info(f'input stream: {", ".join(events)}', throttle_duration_sec=5.0)
        if not process:
            self.stats.on_dropped('duplicate_stamp')
            return
        if self._tracker is not None and any(e in RESETS for e in events):
            self._tracker.reset()
        t1 = time.perf_counter()
        result = self._predictor([rgb])[0]
        track_ids = None
        if self._tracker is not None:      # counted in the post-processing time
            t_track = time.perf_counter()
            track_ids = self._tracker.update(result)
            result.timings_ms['postprocess'] += (time.perf_counter() - t_track) * 1e3
        t2 = time.perf_counter()
        header = msg.header
        labels = self._labels
        # label images are only made for topics someone subscribes to
        wanted = {name for name, pub in self._pubs.items()
                  if name in outputs.LABEL_OUTPUTS and pub.get_subscription_count() > 0}
        for name, out in outputs.label_messages(
                header, rgb, result, labels, wanted, alpha=self._p('overlay_alpha'),
                boundaries=self._p('overlay_boundaries'), names=self._p('overlay_labels'),
                track_ids=track_ids,
                instance_tracks=self._p('tracking.instance_ids') == 'track'):
            self._publish(self._pubs[name], out)
        timings = {'queue': (t0 - t_received) * 1e3, 'decode': (t1 - t0) * 1e3,
                   **result.timings_ms,
                   'publish': (time.perf_counter() - t2) * 1e3}
        timings['total'] = (time.perf_counter() - t_received) * 1e3
        if 'segments' in self._pubs:
            frame_timings = FrameTimings(received=received.to_msg(), **{
                f'{k}_ms': v for k, v in timings.items()})
            self._publish(self._pubs['segments'],
                          outputs.segments_message(header, result, labels, frame_timings,
                                                   track_ids))
            timings['publish'] = (time.perf_counter() - t2) * 1e3
            timings['total'] = (time.perf_counter() - t_received) * 1e3
        stamp = Time.from_msg(header.stamp)
        age_ms = ((self.get_clock().now() - stamp).nanoseconds / 1e6
                  if stamp.nanoseconds else 0.0)
        self.stats.on_published(timings, age_ms)

    def destroy_node(self) -> None:
        self._stop_processing()
        self._compute.shutdown(wait=True)
        super().destroy_node()

    def _publish(self, pub, msg) -> None:
        try:
            pub.publish(msg)
        except RCLError as exc:   # Fast DDS can fail a reliable publish under load
            self.stats.on_publish_error(f'{pub.topic_name}: {exc}')
            self.get_logger().warning(f'publish on {pub.topic_name} failed: {exc}',
                                      throttle_duration_sec=5.0)

    # -- diagnostics --------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        snap = self.stats.snapshot()
        th = diagnostics.Thresholds(**{
            f: self._p(f'diagnostics.{f}') for f in
            ('warn_latency_ms', 'error_latency_ms', 'warn_drop_ratio', 'warn_age_ms',
             'stale_s')})
        if self._configured:
            level, message = diagnostics.assess(snap, th, self._active)
        else:
            level = diagnostics.ERROR if self._status.startswith('configure failed') else \
                diagnostics.OK
            message = self._status
        info = {'state': self._status, 'model': self._model_name, 'engine': self._engine_desc,
                'input_topic': self._sub.topic_name if self._sub else ''}
        status = DiagnosticStatus(
            level=bytes([level]), name=f'{self.get_name()}: panoptic segmentation',
            message=message, hardware_id=self._engine_desc,
            values=[KeyValue(key=k, value=v) for k, v in diagnostics.key_values(snap, info)])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        try:
            self._diag_pub.publish(array)
        except RCLError as exc:
            self.stats.on_publish_error(f'/diagnostics: {exc}')


def main(args=None) -> None:
    keep_freed_memory()
    rclpy.init(args=args)
    node = PanopticNode()
    try:
        if node.get_parameter('autostart').value:
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
