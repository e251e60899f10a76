"""The soak benchmark's short version (benchmarks/soak.py, 2 minutes of a 10 Hz 1024x2048
camera against the bundled default model, every output subscribed): the node stays up, its
memory is flat after warm-up, threads and files do not grow, and every frame it received is
processed or dropped for a counted reason. The 30-minute run's figures are in
docs/benchmarks.md."""

import json
import subprocess
import sys

import pytest

from ros_peer import ROOT, new_domain

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_two_minutes_of_load_leave_the_node_flat_and_every_frame_accounted(tmp_path):
    out = tmp_path / 'soak.json'
    run = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'soak.py'), '--minutes', '2',
                          '--warmup', '30', '--sample', '5', '--domain', str(new_domain()),
                          '--out', str(out)], capture_output=True, text=True, timeout=600)
    assert out.is_file(), run.stdout[-2000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    summary = {k: v for k, v in report.items() if k != 'samples'}
    assert run.returncode == 0, (summary, run.stderr[-2000:])
    assert report['node_alive_at_end'] and report['accounted']
    assert report['processed'] > 10 and report['outputs']['segments'] >= report['processed'] - 2
    assert all(report['outputs'][name] > 0 for name in ('semantic', 'instance', 'panoptic',
                                                        'overlay'))
    assert report['rss_mib']['growth'] < 50
