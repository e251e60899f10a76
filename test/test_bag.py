"""`panoptic bag make` / `panoptic bag eval`: real bags written and read with rosbags (MCAP and
sqlite3), the real model, and (live) a real panoptic_node process over DDS. Nothing is mocked."""

import contextlib
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from panoptic_ros.bag.make import make_bag
from panoptic_ros.bag.source import BagSource
from panoptic_ros.cli import main
from panoptic_ros.datasets.cityscapes import CityscapesDataset
from panoptic_ros.encoding import LABEL_DIVISOR
from panoptic_ros.errors import PanopticError
from panoptic_ros.synth.writer import write_dataset
from panoptic_ros.weights import models_dir
from ros_peer import ROOT, new_domain

DEMO_BAG = models_dir() / 'demo_bag'


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('bagdata')
    write_dataset(root, 'val', num=5, height=256, width=512, seed=11, workers=1, progress=False)
    return root


@pytest.fixture(scope='module')
def raw_bag(data, tmp_path_factory):
    out = tmp_path_factory.mktemp('bags') / 'raw'
    make_bag(data, 'val', out, storage='mcap', compress=True, progress=False)
    return out


@pytest.mark.parametrize('storage,compress', [('mcap', False), ('sqlite3', True)])
def test_make_round_trip_is_lossless(data, tmp_path, storage, compress):
    out = tmp_path / 'bag'
    stats = make_bag(data, 'val', out, storage=storage, rate=5.0, compress=compress,
                     progress=False)
    assert stats['frames'] == 5 and not (tmp_path / '.bag.partial').exists()
    dataset = CityscapesDataset(data, 'val')
    with BagSource(out) as source:
        assert (source.image_topic, source.gt_topic) == ('/camera/image_raw',
                                                         '/ground_truth/panoptic')
        assert source.storage == storage and source.count == 5
        frames = list(source.frames())
        assert source.label_divisor == LABEL_DIVISOR
        topics = {c.topic: c.msgcount for c in source.reader.connections}
    assert topics == {'/camera/image_raw': 5, '/camera/camera_info': 5,
                      '/ground_truth/panoptic': 5}
    assert [f.index for f in frames] == list(range(5))
    assert np.diff([f.stamp_ns for f in frames]).tolist() == [200_000_000] * 4
    for f, i in zip(frames, range(5)):
        s = dataset[i]
        img = np.asarray(f.msg.data).reshape(f.msg.height, f.msg.width, 3)
        assert f.msg.encoding == 'rgb8' and np.array_equal(img, s.image)
        assert np.array_equal(f.gt, s.panoptic(LABEL_DIVISOR))


def test_make_refuses_existing_output_and_bad_options(data, raw_bag):
    with pytest.raises(PanopticError, match='exists'):
        make_bag(data, 'val', raw_bag, progress=False)
    with pytest.raises(PanopticError, match='rate'):
        make_bag(data, 'val', raw_bag.with_name('x'), rate=0, progress=False)


def _topics(bag) -> dict[str, int]:
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        return {c.topic: c.msgcount for c in reader.connections}


def _outputs(bag, ns: str) -> dict[int, dict]:
    """The node's answers in an output bag (topics ``{ns}/panoptic/*``): header stamp ->
    segments/panoptic/semantic."""
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import Image

    from panoptic_ros_msgs.msg import PanopticSegmentArray

    classes = {'segments': PanopticSegmentArray, 'panoptic': Image, 'semantic': Image}
    topics = {f'{ns}/panoptic/{name}': name for name in classes}
    out: dict[int, dict] = {}
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic in topics]
        assert len(conns) == len(classes), [c.topic for c in reader.connections]
        for conn, _, raw in reader.messages(connections=conns):
            name = topics[conn.topic]
            msg = deserialize_message(raw, classes[name])
            out.setdefault(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, {})[name] = msg
    return {k: v for k, v in out.items() if len(v) == len(classes)}


def _quality(outputs: dict[int, dict], stamps) -> dict:
    """PQ (``All``) of ``outputs`` on the demo bag frames whose stamps are in ``stamps``."""
    from panoptic_ros.bag.metrics import ReplayMetrics
    from panoptic_ros.weights import read_card, resolve_model

    labels = read_card(resolve_model())['spec'].label_set()
    with BagSource(DEMO_BAG) as source:
        metrics = ReplayMetrics(labels, source.label_divisor)
        for frame in source.frames():
            if frame.stamp_ns in stamps:
                o = outputs[frame.stamp_ns]
                metrics.add_quality(f'{frame.index:06d}', frame.gt, o['segments'],
                                    o['panoptic'], o['semantic'])
    assert metrics.evaluated == len(stamps)
    return metrics.quality()['All']


def _eval(args, capsys=None) -> tuple[int, dict]:
    code = main(['bag', 'eval', '--quiet', *args])
    out = args[args.index('--out') + 1]
    return code, json.loads(open(os.path.join(out, 'report.json')).read())


def test_offline_equals_panoptic_eval(data, raw_bag, tmp_path):
    code, report = _eval(['--bag', str(raw_bag), '--mode', 'offline', '--out',
                          str(tmp_path / 'r')])
    assert code == 0
    assert main(['eval', '--data', str(data), '--quiet', '--out', str(tmp_path / 'e.json')]) == 0
    ref = json.loads((tmp_path / 'e.json').read_text())
    q = report['quality']
    assert q['frames'] == 5
    for k in ('All', 'Things', 'Stuff'):
        assert q[k] == pytest.approx(ref[k], abs=1e-12)
    assert q['per_class'] == ref['per_class']
    assert q['miou'] == pytest.approx(ref['miou'], abs=1e-12)
    lat = report['latency']
    assert lat['frames'] == {'sent': 5, 'completed': 5, 'dropped': 0, 'drop_ratio': 0.0,
                             'drop_reasons': {}}
    assert lat['end_to_end_ms']['p50'] >= lat['stages_ms']['inference']['p50'] > 0
    # the report a person reads, its plots and the output bag
    md = (tmp_path / 'r' / 'report.md').read_text()
    assert f'PQ **{100 * q["All"]["pq"]:.1f}**' in md and '## Latency' in md
    for png in ('latency_over_time', 'latency_histogram', 'pq_per_class', 'montage'):
        img = cv2.imread(str(tmp_path / 'r' / f'{png}.png'))
        assert img is not None and img.shape[0] > 100, png
    topics = _topics(tmp_path / 'r' / 'output_bag')
    assert topics == {'/camera/image_raw': 5, '/panoptic/semantic': 5, '/panoptic/panoptic': 5,
                      '/panoptic/overlay': 5, '/panoptic/segments': 5}


def test_bag_without_ground_truth_reports_timing_only(data, raw_bag, tmp_path):
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from panoptic_ros.bag.types import typestore

    # a user's camera bag: one CompressedImage topic under another name, no ground truth
    bag = tmp_path / 'camera_only'
    store = typestore()
    with Reader(raw_bag) as reader, Writer(bag, version=9,
                                           storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection('/front/image_raw/compressed',
                                     'sensor_msgs/msg/CompressedImage', typestore=store)
        for c, t, raw in reader.messages():
            if c.topic == '/camera/image_raw':
                m = store.deserialize_cdr(raw, c.msgtype)
                rgb = np.asarray(m.data).reshape(m.height, m.width, 3)
                png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1]
                msg = store.types['sensor_msgs/msg/CompressedImage'](
                    header=m.header, format='png', data=png.reshape(-1))
                writer.write(conn, t, store.serialize_cdr(msg, conn.msgtype))
    code, report = _eval(['--bag', str(bag), '--mode', 'offline', '--out', str(tmp_path / 'r')])
    assert code == 0 and report['quality'] is None
    assert report['bag']['image_topic'] == '/front/image_raw/compressed'
    assert report['bag']['storage'] == 'sqlite3' and report['bag']['gt_topic'] == ''
    assert report['latency']['frames']['completed'] == 5
    assert not (tmp_path / 'r' / 'pq_per_class.png').exists()
    assert (tmp_path / 'r' / 'latency_histogram.png').is_file()


def test_image_topic_ambiguity_and_missing_topics(raw_bag, tmp_path):
    from rosbags.rosbag2 import Reader, Writer

    from panoptic_ros.bag.types import typestore

    bag = tmp_path / 'two_cameras'
    with Reader(raw_bag) as reader, Writer(bag, version=9) as writer:
        conns = {t: writer.add_connection(t, 'sensor_msgs/msg/Image', typestore=typestore())
                 for t in ('/left/image_raw', '/right/image_raw')}
        for c, t, raw in reader.messages():
            if c.topic == '/camera/image_raw':
                for conn in conns.values():
                    writer.write(conn, t, raw)
    with pytest.raises(PanopticError, match='several camera image topics.*--image-topic'):
        BagSource(bag)
    with BagSource(bag, image_topic='/right/image_raw') as s:
        assert s.gt_topic == '' and len(list(s.frames())) == 5
    with pytest.raises(PanopticError, match='no topic /gt'):
        BagSource(bag, gt_topic='/gt')
    with pytest.raises(PanopticError, match='not a rosbag2 bag'):
        BagSource(tmp_path)


def test_corrupt_and_truncated_bags(data, tmp_path, capsys):
    bag = tmp_path / 'bag'
    make_bag(data, 'val', bag, compress=True, progress=False)
    mcap = bag / 'bag.mcap'
    # bytes destroyed in the middle: the frames before the damage are evaluated and reported
    broken = tmp_path / 'broken'
    shutil.copytree(bag, broken)
    blob = bytearray((broken / 'bag.mcap').read_bytes())
    cut, n = len(blob) // 2, len(blob) // 10      # a tenth of the file overwritten
    blob[cut:cut + n] = b'\xff' * n
    (broken / 'bag.mcap').write_bytes(bytes(blob))
    code, report = _eval(['--bag', str(broken), '--mode', 'offline', '--out',
                          str(tmp_path / 'r')])
    err = capsys.readouterr().err
    assert code == 2 and 'corrupt or truncated' in err
    read = report['bag']['frames_read']
    assert 0 < read < 5 and report['bag']['error']
    assert report['quality']['frames'] == read == report['latency']['frames']['completed']
    assert 'stopped being readable' in (tmp_path / 'r' / 'report.md').read_text()
    # a truncated file (recording killed): a clear error naming the bag
    truncated = tmp_path / 'truncated'
    shutil.copytree(bag, truncated)
    with open(truncated / 'bag.mcap', 'r+b') as f:
        f.truncate(mcap.stat().st_size // 2)
    assert main(['bag', 'eval', '--quiet', '--bag', str(truncated), '--mode', 'offline',
                 '--out', str(tmp_path / 't')]) == 2
    assert f'cannot open bag {truncated}' in capsys.readouterr().err


@contextlib.contextmanager
def _tmpfs(path, options):
    """A real small or read-only file system (tmpfs) at ``path`` for the body."""
    path.mkdir()
    done = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f'cannot mount a tmpfs here ({done.stderr.strip()}): these tests need the '
                    'rights to mount one')
    try:
        yield path
    finally:
        subprocess.run(['umount', '-l', str(path)], check=True)


def test_a_disk_that_fills_during_bag_eval_loses_the_output_bag_not_the_report(tmp_path,
                                                                                capsys):
    """On a real 4 MiB file system the output bag (15 MB for the demo bag) does not fit: it
    is given up and removed, the replay goes on, and report.json / report.md cover every
    frame; the command says so in one line and exits 2."""
    with _tmpfs(tmp_path / 'small', 'size=4m') as disk:
        out = disk / 'r'
        code, report = _eval(['--bag', str(DEMO_BAG), '--mode', 'offline', '--out', str(out)])
        err = capsys.readouterr().err
        assert code == 2 and 'Traceback' not in err
        assert (f'cannot write the output bag {out / "output_bag"}: No space left on device'
                in err and 'the report covers all 20 frames' in err)
        assert report['quality']['frames'] == 20 and report['quality']['All']['pq'] > 0
        assert 'No space left on device' in report['output_bag_error']
        assert 'output bag could not be written' in (out / 'report.md').read_text()
        assert sorted(os.listdir(out)) == ['latency_histogram.png', 'latency_over_time.png',
                                           'montage.png', 'pq_per_class.png', 'report.json',
                                           'report.md', 'strip.png']


def test_a_read_only_output_folder_is_one_line(tmp_path, capsys):
    with _tmpfs(tmp_path / 'ro', 'size=1m,ro') as disk:
        assert main(['bag', 'eval', '--quiet', '--bag', str(DEMO_BAG), '--mode', 'offline',
                     '--out', str(disk / 'r')]) == 2
        err = capsys.readouterr().err
        assert err == f'panoptic bag: error: cannot write {disk / "r"}: Read-only file system\n'


def test_written_files_follow_the_umask(tmp_path):
    """Reports, cards and checkpoints are written atomically through a temporary file; they
    get the permissions any file of the user gets (mkstemp's would be 0600)."""
    from panoptic_ros.fileio import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / 'a.md', 'x')
        os.umask(0o077)
        atomic_write_text(tmp_path / 'b.md', 'x')
    finally:
        os.umask(old)
    assert (tmp_path / 'a.md').stat().st_mode & 0o777 == 0o644
    assert (tmp_path / 'b.md').stat().st_mode & 0o777 == 0o600


@pytest.mark.ros
@pytest.mark.slow
def test_live_replay_of_the_demo_bag_matches_offline(tmp_path):
    """The demo bag through a panoptic_node process over DDS: every frame answered at a rate
    this machine sustains, and PQ equal to the in-process pipeline's on the same frames."""
    env = {**os.environ, 'ROS_DOMAIN_ID': str(new_domain())}   # the installed package
    cmd = [sys.executable, '-m', 'panoptic_ros.cli', 'bag', 'eval', '--quiet', '--bag',
           str(DEMO_BAG)]
    # 1 Hz: the default model takes 400-500 ms a frame in the node here while the replay shares
    # the two cores; at 2 Hz a slower moment of the machine dropped 6 of 20 frames
    live = subprocess.run(cmd + ['--mode', 'live', '--rate-factor', '0.1', '--out',
                                 str(tmp_path / 'live')], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert live.returncode == 0, live.stdout + live.stderr
    assert main(['bag', 'eval', '--quiet', '--bag', str(DEMO_BAG), '--mode', 'offline',
                 '--out', str(tmp_path / 'offline')]) == 0
    rl = json.loads((tmp_path / 'live' / 'report.json').read_text())
    ro = json.loads((tmp_path / 'offline' / 'report.json').read_text())
    frames = rl['latency']['frames']
    assert frames['sent'] == 20
    # frames may drop on a loaded machine; the drops are accounted for, and the frames that
    # were answered are evaluated
    assert frames['completed'] + sum(frames['drop_reasons'].values()) == 20
    assert rl['quality']['frames'] == frames['completed'] >= 15
    # the same model on the same frames gives the same scores, over DDS or in process: score
    # the offline outputs of exactly the frames the live node answered
    answered = _outputs(tmp_path / 'live' / 'output_bag', '/panoptic_eval')
    offline = _outputs(tmp_path / 'offline' / 'output_bag', '')
    assert len(answered) == frames['completed'] and set(answered) <= set(offline)
    assert _quality(offline, answered) == pytest.approx(rl['quality']['All'], abs=1e-9)
    if frames['dropped'] == 0:
        assert rl['quality']['All'] == pytest.approx(ro['quality']['All'], abs=1e-9)
    lat = rl['latency']
    assert lat['end_to_end_ms']['p50'] > lat['stages_ms']['inference']['p50'] > 0
    assert 0 < lat['stages_ms']['transport_in']['p50'] < lat['end_to_end_ms']['p50']
    assert 'Hz' in rl['rate'] or 'rate-factor' in rl['rate']
    topics = _topics(tmp_path / 'live' / 'output_bag')
    assert topics['/panoptic_eval/image/compressed'] == 20
    assert topics['/panoptic_eval/panoptic/segments'] >= frames['completed']
    assert (tmp_path / 'live' / 'node.log').read_text().count('active') >= 1


def test_video_bag_carries_track_ids_and_the_report_scores_tracking(tmp_path):
    """A bag of two synthetic sequences: ground-truth ids follow objects within a sequence,
    differ across sequences, and the replay adds STQ/VPQ/id switches and a strip."""
    data = tmp_path / 'video'
    write_dataset(data, 'val', num=2, height=256, width=512, seed=11, workers=1,
                  progress=False, sequence_length=4)
    stats = make_bag(data, 'val', tmp_path / 'bag', progress=False)
    assert (stats['frames'], stats['sequences'], stats['track_ids']) == (8, 2, True)
    dataset = CityscapesDataset(data, 'val', tracks=True)
    with BagSource(tmp_path / 'bag') as source:
        assert source.gt_tracks
        frames = list(source.frames())
    objects = [{}, {}]              # per sequence: ground-truth id -> dataset object id
    for i, f in enumerate(frames):
        s = dataset[i]
        seq = objects[i // 4]
        things = f.gt % LABEL_DIVISOR > 0
        np.testing.assert_array_equal(things, s.track > 0)
        np.testing.assert_array_equal(f.gt // LABEL_DIVISOR, np.where(f.gt < 0, -1, s.semantic))
        for g in np.unique(f.gt[things]).tolist():
            raw = np.unique(s.track[f.gt == g])
            assert len(raw) == 1
            assert seq.setdefault(g, int(raw[0])) == int(raw[0])    # same object every frame
    assert objects[0] and objects[1] and not set(objects[0]) & set(objects[1])

    code, report = _eval(['--bag', str(tmp_path / 'bag'), '--mode', 'offline', '--out',
                          str(tmp_path / 'r')])
    assert code == 0
    video = report['quality']['video']
    assert set(video) == {'per_frame_ids', 'tracker'}
    for r in video.values():
        assert 0 <= r['stq'] <= 1 and 0 <= r['vpq'] <= 1 and r['tracks'] > 0
    assert video['tracker']['sq'] == video['per_frame_ids']['sq']
    md = (tmp_path / 'r' / 'report.md').read_text()
    assert '## Tracking' in md and '| tracker |' in md
    strip = cv2.imread(str(tmp_path / 'r' / 'strip.png'))
    assert strip is not None and strip.shape[1] == 3 * 512       # frames 0, 2, 4, 6


def test_still_bag_has_no_tracking_section(raw_bag, tmp_path):
    with BagSource(raw_bag) as source:
        assert not source.gt_tracks
    code, report = _eval(['--bag', str(raw_bag), '--mode', 'offline', '--out',
                          str(tmp_path / 'r')])
    assert code == 0 and 'video' not in report['quality']
    assert '## Tracking' not in (tmp_path / 'r' / 'report.md').read_text()


def test_a_node_that_dies_during_a_live_replay_leaves_a_report_and_names_its_exit(tmp_path):
    """The node process is killed (SIGKILL) in the middle of a live replay: bag eval stops
    sending, reports the frames answered so far (the rest as node_exited), and says how the
    node ended and where its log is."""
    import signal
    import time
    from pathlib import Path

    env = {**os.environ, 'ROS_DOMAIN_ID': str(new_domain())}
    out = tmp_path / 'live'
    cmd = [sys.executable, '-m', 'panoptic_ros.cli', 'bag', 'eval', '--quiet', '--bag',
           str(DEMO_BAG), '--mode', 'live', '--rate-factor', '0.1', '--out', str(out)]
    run = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)

    def node_pid():
        for entry in Path('/proc').iterdir():
            try:
                status = (entry / 'status').read_text()
                cmdline = (entry / 'cmdline').read_bytes()
            except OSError:
                continue
            if b'panoptic_ros.ros.node' in cmdline and f'PPid:\t{run.pid}\n' in status:
                return int(entry.name)
        return None

    # the replay is under way once the output bag holds answers: then kill the node
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and run.poll() is None:
        log = out / 'node.log'
        if log.is_file() and 'active' in log.read_text():
            break
        time.sleep(0.5)
    time.sleep(6.0)                     # handshake, then a few of the 20 frames (1 s apart)
    pid = node_pid()
    assert pid is not None and run.poll() is None
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 2, stdout + stderr
    assert 'panoptic_node exited (code -9) during the replay' in stderr
    assert str(out / 'node.log') in stderr and 'Traceback' not in stderr
    report = json.loads((out / 'report.json').read_text())
    frames = report['latency']['frames']
    assert report['node_exit']['code'] == -9
    assert frames['drop_reasons'].get('node_exited', 0) >= 1
    assert frames['completed'] + sum(frames['drop_reasons'].values()) == frames['sent']
    assert 'panoptic_node exited' in (out / 'report.md').read_text()
