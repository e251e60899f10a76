"""The node's parts that need no DDS: frame queue, statistics and their levels, parameters."""

import threading

import pytest

from panoptic_ros.ros import diagnostics, params
from panoptic_ros.ros.diagnostics import ERROR, OK, WARN, FrameStats, Thresholds, assess
from panoptic_ros.ros.node import FrameQueue


def test_frame_queue_keeps_the_newest_frames_and_counts_drops():
    q = FrameQueue(2)
    assert [q.put(i) for i in range(5)] == [0, 0, 1, 1, 1]
    assert (q.get(0.01), q.get(0.01), q.get(0.01)) == (3, 4, None)


def test_frame_queue_wakes_a_waiting_worker():
    q = FrameQueue(1)
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=5.0)))
    t.start()
    q.put('frame')
    t.join(2.0)
    assert got == ['frame']


def _stats(latencies, dropped=0, bad=0):
    s = FrameStats(window=50)
    for lat in latencies:
        s.on_received()
        s.on_published({'inference': lat * 0.8, 'total': lat}, age_ms=lat + 5)
    for _ in range(dropped):
        s.on_received()
        s.on_dropped('superseded')
    for _ in range(bad):
        s.on_bad_input('encoding', 'unsupported encoding')
    return s.snapshot()


def test_percentiles_counts_and_key_values():
    snap = _stats([10.0] * 9 + [100.0], dropped=3, bad=2)
    p50, p95, mx = snap['latency_ms']['total']
    assert (p50, mx) == (10.0, 100.0) and 10.0 < p95 <= 100.0
    assert snap['received'] == 13 and snap['processed'] == 10
    kv = dict(diagnostics.key_values(snap, {'engine': 'torch cpu'}))
    assert kv['engine'] == 'torch cpu'
    assert (kv['frames_dropped'], kv['dropped.superseded']) == ('3', '3')
    assert (kv['bad_inputs'], kv['bad_input.encoding']) == ('2', '2')
    assert kv['latency.total.max_ms'] == '100.00'
    assert {f'latency.{s}.p95_ms' for s in diagnostics.STAGES} <= set(kv)


@pytest.mark.parametrize('latencies, dropped, bad, level', [
    ([20.0] * 10, 0, 0, OK),
    ([800.0] * 10, 0, 0, WARN),            # over warn_latency_ms
    ([3000.0] * 10, 0, 0, ERROR),          # over error_latency_ms
    ([20.0] * 10, 30, 0, WARN),            # 30 of 40 dropped > 0.5
    ([20.0] * 10, 0, 1, WARN),             # any bad input
])
def test_levels_follow_the_thresholds(latencies, dropped, bad, level):
    assert assess(_stats(latencies, dropped, bad), Thresholds(), active=True)[0] == level


def test_inactive_node_reports_ok():
    assert assess(_stats([3000.0]), Thresholds(), active=False) == (OK, 'inactive')


def test_parameter_rules():
    assert params.check('score_threshold', 0.5, configured=True) is None
    assert 'cleanup' in params.check('engine', 'onnxruntime', configured=True)
    assert params.check('engine', 'onnxruntime', configured=False) is None
    assert 'one of' in params.check('engine', 'caffe', configured=False)
    assert 'multiple of 128' in params.check('input_height', 500, configured=False)
    assert 'unknown' in params.check('outputs', ['semantic', 'depth'], configured=False)
    assert "cuda:N" in params.check('device', 'gpu', configured=False)
    assert params.check('fusion_stride', 4, configured=True) is None
    assert '1, 2 or 4' in params.check('fusion_stride', 3, configured=True)


def test_every_parameter_has_a_descriptor_and_a_default_in_the_yaml():
    import yaml
    from pathlib import Path

    cfg = yaml.safe_load((Path(__file__).parents[1] / 'config' / 'panoptic.yaml').read_text())
    flat = {}

    def walk(d, prefix=''):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f'{prefix}{k}.')
            else:
                flat[prefix + k] = v
    walk(cfg['panoptic']['ros__parameters'])
    assert set(flat) == {p.name for p in params.PARAMS}
    for p in params.PARAMS:
        assert flat[p.name] == p.default, p.name
        d = params.descriptor(p)
        assert d.description and d.type


def test_stream_monitor_rules():
    from panoptic_ros.ros.stream import Frame, StreamMonitor

    mon = StreamMonitor()

    def frame(stamp, fid='cam', size=(10, 20), enc='rgb8', t=0.0):
        return Frame(stamp, fid, size, enc, t)

    assert mon.check(frame(1_000_000_000), 1.0) == (True, [])
    assert mon.check(frame(1_000_000_000), 1.0) == (False, ['duplicate_stamp'])
    assert mon.check(frame(1_100_000_000), 1.0) == (True, [])
    assert mon.check(frame(900_000_000), 1.0) == (True, ['stamp_backwards'])
    assert mon.check(frame(2_000_000_000), 1.0) == (True, ['gap'])
    assert mon.check(frame(2_100_000_000, 'cam2', (5, 5), 'bgr8'), 1.0) == (
        True, ['frame_id_change', 'resolution_change', 'encoding_change'])
    # zero stamps (no clock): never duplicates; gaps by arrival time
    mon.reset()
    assert mon.check(frame(0, t=0.0), 1.0) == (True, [])
    assert mon.check(frame(0, t=0.5), 1.0) == (True, [])
    assert mon.check(frame(0, t=2.0), 1.0) == (True, ['gap'])
