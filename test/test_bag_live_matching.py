"""How ``--mode live`` matches the node's outputs to the frames it sent.

The replay loop (:func:`panoptic_ros.bag.live.play`) runs here against a stand-in for the DDS
session: over real DDS the order in which a late answer arrives cannot be chosen, and that order
is what these tests are about. The messages are real CDR bytes made by rclpy's serializer, and
the live path over DDS is tested end to end in ``test_bag.py``."""

import queue
import time

import pytest

from panoptic_ros.bag import types
from panoptic_ros.bag.live import play
from panoptic_ros.bag.metrics import ReplayMetrics
from panoptic_ros.bag.source import Frame, stamp_ns
from panoptic_ros.labels import get_label_set
from ros_peer import set_stamp

rclpy_serialization = pytest.importorskip('rclpy.serialization')


def _answers(stamp: int) -> list[tuple[str, bytes]]:
    """Every output of the node for the frame stamped ``stamp`` (ns), serialized."""
    from rclpy.time import Time
    from sensor_msgs.msg import Image

    from panoptic_ros_msgs.msg import PanopticSegmentArray

    out = []
    for name in types.OUTPUT_TYPES:
        msg = PanopticSegmentArray() if name == 'segments' else Image()
        set_stamp(msg.header, stamp)
        if name == 'segments':
            msg.timings.received = Time(nanoseconds=time.time_ns()).to_msg()
            msg.timings.inference_ms = 5.0
        out.append((name, rclpy_serialization.serialize_message(msg)))
    return out


class _Session:
    """The node answers every frame at once; ``late`` answers come in before the first one."""

    def __init__(self, late: list[int]) -> None:
        from sensor_msgs.msg import Image

        from panoptic_ros_msgs.msg import PanopticSegmentArray

        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.classes = {n: PanopticSegmentArray if n == 'segments' else Image
                        for n in types.OUTPUT_TYPES}
        self.topics = {n: f'/ns/panoptic/{n}' for n in self.classes}
        self.input_topic = '/ns/image'
        self.diagnostics_time = 0.0
        self.late = late
        self.publisher = self

    def counters(self) -> dict:
        return {}

    def publish(self, raw: bytes) -> None:
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import Image

        for stamp in self.late:
            self._put(stamp)
        self.late = []
        self._put(stamp_ns(deserialize_message(raw, Image).header.stamp))

    def _put(self, stamp: int) -> None:
        for name, raw in _answers(stamp):
            self.inbox.put((name, self.topics[name], time.perf_counter(), time.time_ns(), raw))


def _frames(n: int) -> list[Frame]:
    from sensor_msgs.msg import Image

    frames = []
    for i in range(n):
        stamp = 5 * 10**9 + i * 10**8
        msg = Image(height=1, width=1, encoding='rgb8', step=3, data=[0, 0, 0])
        set_stamp(msg.header, stamp)
        frames.append(Frame(i, stamp, stamp, 'sensor_msgs/msg/Image',
                            rclpy_serialization.serialize_message(msg), msg))
    return frames


def test_a_late_answer_to_a_handshake_frame_is_neither_recorded_nor_counted():
    """The start-up handshake sends test frames until one is answered; the answer to a test frame
    sent before that one may arrive once the replay has started. It is not the bag's: the output
    bag and the counts hold exactly the replayed frames."""
    session = _Session(late=[10**9 + 2])
    metrics = ReplayMetrics(get_label_set('cityscapes'), 1000)
    recorded, answered = [], []
    frames = _frames(4)
    play(session, frames, metrics, due=lambda f: 0.01 * f.index,
         on_frame=lambda frame, outputs, timing: answered.append(frame.index),
         record=lambda topic, msgtype, log_ns, raw: recorded.append(topic))
    assert answered == [0, 1, 2, 3] and metrics.latency()['frames']['completed'] == 4
    assert recorded.count('/ns/panoptic/segments') == 4
    assert recorded.count('/ns/image') == 4
    assert not metrics.drops
