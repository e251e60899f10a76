"""panoptic_node over real DDS: the node runs in its own process (python -c ... main()), the
test process publishes camera images and subscribes to every output."""

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from panoptic_ros_msgs.msg import LabelMap, PanopticSegmentArray
from panoptic_ros.synth.scene import SceneRenderer
from ros_peer import Peer, camera_image, new_domain, stamp_ns, start_node, stop_node

pytestmark = [pytest.mark.ros, pytest.mark.slow]

IMAGES = ('semantic', 'instance', 'panoptic', 'overlay')
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _scene(h, w, seed):
    img, _, _ = SceneRenderer(h, w).render(np.random.default_rng(seed))
    return img


def _listen(peer: Peer, ns: str = '') -> None:
    for name in IMAGES:
        peer.subscribe(name, Image, f'{ns}panoptic/{name}')
    peer.subscribe('segments', PanopticSegmentArray, f'{ns}panoptic/segments')
    peer.subscribe('diagnostics', DiagnosticArray, '/diagnostics')


def _by_stamp(peer: Peer, name: str, stamp: int):
    return next((m for m in peer.received[name] if stamp_ns(m.header) == stamp), None)


def _send_until_output(peer, pub, rgb, stamp, proc, timeout=60.0):
    """Publish one frame (again every 2 s until the node answers: discovery may lag)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.publish(camera_image(rgb, stamp, 'camera_front'))
        if peer.wait_for(lambda: _by_stamp(peer, 'segments', stamp), 2.0, proc):
            return _by_stamp(peer, 'segments', stamp)
    raise AssertionError(f'no output for frame {stamp}')


@pytest.fixture(scope='module')
def running():
    domain = new_domain()
    proc = start_node(domain, {'autostart': 'true'})
    peer = Peer(domain)
    _listen(peer)
    pub = peer.node.create_publisher(Image, 'image', 2)
    yield peer, pub, proc
    peer.close()
    log = stop_node(proc)
    assert proc.returncode == 0, log[-3000:]
    assert 'Traceback' not in log, log[-3000:]


def test_outputs_have_the_input_header_size_and_consistent_ids(running):
    peer, pub, proc = running
    rgb = _scene(240, 416, seed=11)          # not the network's 256x512: outputs follow input
    seg = _send_until_output(peer, pub, rgb, 1_700_000_000_123_456_789, proc)
    stamp = stamp_ns(seg.header)
    assert peer.wait_for(lambda: all(_by_stamp(peer, n, stamp) for n in IMAGES), 10.0, proc)
    out = {n: _by_stamp(peer, n, stamp) for n in IMAGES}
    encodings = {'semantic': ('mono8', np.uint8), 'instance': ('mono16', np.uint16),
                 'panoptic': ('32SC1', np.int32), 'overlay': ('rgb8', np.uint8)}
    arrays = {}
    for name, msg in out.items():
        assert (msg.header.frame_id, msg.height, msg.width) == ('camera_front', 240, 416)
        assert msg.encoding == encodings[name][0]
        arrays[name] = np.frombuffer(msg.data, encodings[name][1]).reshape(240, 416, -1)[..., 0]
    assert seg.header.frame_id == 'camera_front' and (seg.height, seg.width) == (240, 416)
    sem, inst, pan = arrays['semantic'], arrays['instance'], arrays['panoptic']
    void = pan == -1
    assert np.all(sem[void] == 255) and np.all(inst[void] == 0)
    assert np.array_equal(pan[~void], sem[~void].astype(np.int32) * seg.label_divisor
                          + inst[~void])
    # one segment per panoptic id, with the pixels, classes and instance ids of the images
    assert sorted(s.id for s in seg.segments) == sorted(set(np.unique(pan)) - {-1})
    assert len(seg.segments) >= 2
    for s in seg.segments:
        px = pan == s.id
        assert s.area == px.sum()
        assert np.all(sem[px] == s.class_id) and np.all(inst[px] == s.instance_id)
        assert s.is_thing == (s.instance_id > 0)
        ys, xs = np.nonzero(px)
        assert (s.bbox.x_offset, s.bbox.y_offset) == (xs.min(), ys.min())
        assert abs(s.centroid_x - xs.mean()) < 0.01 and abs(s.centroid_y - ys.mean()) < 0.01
    t = seg.timings
    assert t.inference_ms > 0 and t.postprocess_ms > 0 and t.total_ms >= t.inference_ms


def test_label_map_reaches_a_late_subscriber(running):
    peer, _, proc = running
    peer.subscribe('label_map', LabelMap, 'panoptic/label_map', LATCHED)
    assert peer.wait_for(lambda: peer.received['label_map'], 20.0, proc)
    lm = peer.received['label_map'][0]
    assert (lm.dataset, lm.label_divisor, lm.semantic_void) == ('cityscapes', 1000, 255)
    assert [lab.name for lab in lm.labels][:3] == ['road', 'sidewalk', 'building']
    assert [lab.class_id for lab in lm.labels] == list(range(19))
    assert sum(lab.is_thing for lab in lm.labels) == 8


def _diag_count(peer, key):
    d = peer.diagnostics() or {}
    return int(d.get(key, 0))


def test_bad_inputs_are_counted_and_the_node_keeps_working(running):
    peer, pub, proc = running
    w, h = 64, 48
    good = bytes(h * w * 3)
    bad = {
        'encoding': Image(height=h, width=w, encoding='32FC1', step=w * 4, data=bytes(h * w * 4)),
        'empty': Image(height=0, width=w, encoding='rgb8', step=w * 3, data=b''),
        'data_length': Image(height=h, width=w, encoding='rgb8', step=w * 3, data=good[:-7]),
        'step': Image(height=h, width=w, encoding='rgb8', step=w, data=bytes(h * w)),
        'size': Image(height=100000, width=1, encoding='mono8', step=1, data=bytes(100000)),
    }
    for kind, msg in bad.items():
        before = _diag_count(peer, f'bad_input.{kind}')
        pub.publish(msg)
        assert peer.wait_for(lambda: _diag_count(peer, f'bad_input.{kind}') > before, 10.0,
                             proc), kind
    # a burst of 100 random malformed messages: each is either rejected or superseded by a
    # newer one, none is published, the node survives
    rng = np.random.default_rng(0)
    encs = ['rgb8', 'bgr8', 'mono16', 'yuv422', 'bayer_rggb8', 'nonsense', '']
    start = {k: _diag_count(peer, k) for k in ('frames_received', 'bad_inputs',
                                                'frames_dropped', 'frames_processed')}
    burst = peer.node.create_publisher(Image, 'image', 100)
    peer.spin(1.0)
    for _ in range(100):
        hh, ww = int(rng.integers(0, 40)), int(rng.integers(0, 40))
        time.sleep(0.003)
        burst.publish(Image(height=hh, width=ww, encoding=str(rng.choice(encs)),
                          step=int(rng.integers(0, 200)),
                          data=bytes(int(rng.integers(0, 3000)))))
    peer.spin(3.0)
    seg = _send_until_output(peer, pub, _scene(128, 256, 3), 1_700_000_100_000_000_000, proc)
    assert seg is not None and proc.poll() is None

    def settled():
        d = {k: _diag_count(peer, k) - v for k, v in start.items()}
        return d if d['frames_processed'] >= 1 and d['frames_received'] == (
            d['bad_inputs'] + d['frames_dropped'] + d['frames_processed']) else None
    delta = peer.wait_for(settled, 10.0, proc)
    assert delta, peer.diagnostics()
    assert delta['bad_inputs'] >= 1 and delta['frames_received'] >= 50
    d = peer.diagnostics()
    assert d['level'] == 1 and 'bad inputs' in d['message']         # WARN


def test_thresholds_change_at_run_time_and_model_changes_are_refused(running):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    peer, pub, proc = running

    def set_param(name, value):
        if isinstance(value, float):
            v = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        else:
            v = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        req = SetParameters.Request(parameters=[Parameter(name=name, value=v)])
        return peer.call(SetParameters, '/panoptic/set_parameters', req).results[0]

    refused = set_param('engine', 'onnxruntime')
    assert not refused.successful and 'configure' in refused.reason
    assert not set_param('score_threshold', 1.5).successful       # out of range
    rgb = _scene(256, 512, seed=4)
    before = _send_until_output(peer, pub, rgb, 1_700_000_200_000_000_000, proc)
    assert set_param('score_threshold', 1.0).successful
    after = _send_until_output(peer, pub, rgb, 1_700_000_201_000_000_000, proc)
    assert not any(s.is_thing for s in after.segments)            # no instance scores 1.0
    assert set_param('score_threshold', 0.0).successful
    low = _send_until_output(peer, pub, rgb, 1_700_000_202_000_000_000, proc)
    assert sum(s.is_thing for s in low.segments) >= sum(s.is_thing for s in before.segments)
    assert sum(s.is_thing for s in low.segments) > 0
