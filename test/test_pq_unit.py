"""PQ evaluator: errors a user hits, the in-memory API, and hand-computed values."""

import json

import numpy as np
import pytest

from panoptic_ros.encoding import encode_panoptic
from panoptic_ros.errors import PanopticError
from panoptic_ros.evaluation.pq import PQAccumulator, SegmentTable
from panoptic_ros.evaluation.pq_files import evaluate_files
from pq_cases import write_cases

CATS = {7: {'id': 7, 'name': 'road', 'isthing': 0}, 26: {'id': 26, 'name': 'car', 'isthing': 1}}


def test_hand_computed_case():
    """GT: road (left half) and one car; prediction: road exact, car shifted by 2 columns."""
    gt = np.zeros((4, 8), np.int64)
    gt[:, :4] = 1
    gt[1:3, 4:8] = 2
    pred = np.zeros((4, 8), np.int64)
    pred[:, :4] = 5
    pred[1:3, 6:8] = 9
    acc = PQAccumulator(CATS)
    acc.add(gt, SegmentTable.build([1, 2], [7, 26]), pred, SegmentTable.build([5, 9], [7, 26]))
    r = acc.summarize()
    # road: IoU 1 -> PQ 1. car: 4 px of 8 GT px overlap 4 pred px: IoU 0.5, not > 0.5:
    # one FN and one FP -> PQ 0.
    assert r['per_class'][7]['pq'] == 1.0
    assert r['per_class'][26] == {'pq': 0.0, 'sq': 0.0, 'rq': 0.0}
    assert r['All']['pq'] == 0.5 and r['All']['n'] == 2
    assert acc.tp.tolist()[:2] == [1, 0] and acc.fp.tolist()[:2] == [0, 1]
    assert acc.fn.tolist()[:2] == [0, 1]


def test_label_divisor_images_with_negative_void():
    """In-memory API on our panoptic encoding (void -1, class 0 stuff has id 0)."""
    rng = np.random.default_rng(0)
    sem = rng.integers(0, 3, (64, 96)).astype(np.int32)
    sem[:8] = 255
    inst = np.where(sem == 2, 1 + (np.arange(96)[None, :] // 32), 0).astype(np.int32)
    pan = encode_panoptic(sem, inst, void_id=255)
    ids = np.unique(pan[pan >= 0])
    table = SegmentTable.build(ids, ids // 1000)
    cats = {0: {'isthing': 0}, 1: {'isthing': 0}, 2: {'isthing': 1}}
    acc = PQAccumulator(cats)
    acc.add(pan, table, pan, table, void=-1)
    assert acc.summarize()['All'] == {'pq': 1.0, 'sq': 1.0, 'rq': 1.0, 'n': 3}


def test_lookup_table_and_sort_paths_agree():
    """Ids beyond the lookup table (2^30) take the general path and give the same stats."""
    rng = np.random.default_rng(3)
    gt = rng.integers(1, 5, (32, 32))
    pred = np.where(rng.random((32, 32)) < 0.8, gt, rng.integers(1, 5, (32, 32)))
    out = []
    for offset in (0, 1 << 30):
        g = np.where(gt > 0, gt + offset, 0)
        p = np.where(pred > 0, pred + offset, 0)
        t = SegmentTable.build(np.arange(1, 5) + offset, [7, 7, 26, 26])
        acc = PQAccumulator(CATS)
        acc.add(g, t, p, t)
        out.append(acc.summarize())
    assert out[0] == out[1]


def _corrupt(tmp_path, edit):
    paths = write_cases(tmp_path, [('noise', 2), ('split', 3)])
    pred = json.loads(paths[2].read_text())
    edit(pred)
    paths[2].write_text(json.dumps(pred))
    return paths


def test_unknown_predicted_category_is_an_error(tmp_path):
    def edit(pred):
        pred['annotations'][0]['segments_info'][0]['category_id'] = 999
    with pytest.raises(PanopticError, match='999'):
        evaluate_files(*_corrupt(tmp_path, edit), workers=1)


def test_segment_in_png_missing_from_json_is_an_error(tmp_path):
    def edit(pred):
        del pred['annotations'][0]['segments_info'][0]
    with pytest.raises(PanopticError, match='in the prediction PNG but not in its JSON'):
        evaluate_files(*_corrupt(tmp_path, edit), workers=1)


def test_segment_in_json_missing_from_png_is_an_error(tmp_path):
    def edit(pred):
        pred['annotations'][1]['segments_info'].append({'id': 4242, 'category_id': 26})
    with pytest.raises(PanopticError, match=r'\[4242\] are in the prediction JSON but not'):
        evaluate_files(*_corrupt(tmp_path, edit), workers=2)


def test_missing_prediction_for_an_image_is_an_error(tmp_path):
    def edit(pred):
        del pred['annotations'][1]
    with pytest.raises(PanopticError, match="no prediction for the image with id 'split_0003'"):
        evaluate_files(*_corrupt(tmp_path, edit), workers=1)


def test_missing_png_and_bad_json_are_clear_errors(tmp_path):
    paths = write_cases(tmp_path, [('noise', 2)])
    (paths[3] / 'noise_0002.png').unlink()
    with pytest.raises(PanopticError, match='cannot read panoptic PNG .*noise_0002.png'):
        evaluate_files(*paths, workers=1)
    paths[2].write_text('{"annotations": [')
    with pytest.raises(PanopticError, match='not valid JSON'):
        evaluate_files(*paths, workers=1)


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    from panoptic_ros.cli import main

    paths = write_cases(tmp_path, [('noise', 2)])
    code = main(['pq', '--gt-json', str(paths[0]), '--gt-dir', str(paths[1]),
                 '--pred-json', str(tmp_path / 'nope.json'), '--pred-dir', str(paths[3])])
    assert code == 2
    assert 'cannot read prediction JSON' in capsys.readouterr().err


def test_forked_workers_after_opencv_use(tmp_path):
    """Parallel evaluation and synthesis from a process that already ran OpenCV code.

    OpenCV's thread pool does not survive fork; calling cv2.setNumThreads in such a child
    hangs. Run in a subprocess with a timeout so a regression fails instead of hanging.
    """
    import subprocess
    import sys

    paths = write_cases(tmp_path / 'cases', [('noise', s) for s in range(8)])
    code = (
        'import sys, numpy as np, cv2\n'
        'cv2.cvtColor(np.zeros((1024, 1024, 3), np.uint8), cv2.COLOR_BGR2RGBA)\n'
        'from panoptic_ros.evaluation.pq_files import evaluate_files\n'
        'from panoptic_ros.synth.writer import write_dataset\n'
        'r, _ = evaluate_files(*sys.argv[1:5], workers=2)\n'
        'write_dataset(__import__("pathlib").Path(sys.argv[5]), "val", 4, 64, 128, 0,\n'
        '              workers=2, progress=False)\n'
        'print("PQ", r["All"]["pq"])\n')
    out = subprocess.run([sys.executable, '-c', code, *map(str, paths), str(tmp_path / 's')],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('PQ')


def test_workers_run_opencv_single_threaded_and_parent_setting_is_restored():
    import subprocess
    import sys

    code = (
        'import os, sys\n'
        'from panoptic_ros.parallel import process_pool\n'
        'def n(_):\n'
        '    import cv2\n'
        '    return cv2.getNumThreads()\n'
        'with process_pool(2) as p:\n'
        '    before = p.map(n, range(4))\n'
        'assert "OPENCV_FOR_THREADS_NUM" not in os.environ\n'
        'import cv2\n'
        'cv2.setNumThreads(2)\n'
        'with process_pool(2) as p:\n'
        '    after = p.map(n, range(4))\n'
        'print(before, after, cv2.getNumThreads())\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split('\n')[0] == '[1, 1, 1, 1] [1, 1, 1, 1] 2'


def _faults_per_image(_) -> int:
    """Minor page faults of making and dropping ten 1024x2048 id images in this process."""
    import resource

    import numpy as np

    np.ones((1024, 2048), np.uint32)           # the first one may map new memory
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        np.ones((1024, 2048), np.uint32)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10


def test_pool_workers_reuse_freed_image_buffers():
    """Workers (``panoptic pq``, ``panoptic synth``) keep what an image freed for the next:
    with glibc's defaults each 8 MiB image is mapped and faulted in page by page (2048 faults
    of 4 KiB) and unmapped again."""
    import ctypes

    from panoptic_ros.parallel import process_pool

    if getattr(ctypes.CDLL(None), 'mallopt', None) is None:
        pytest.skip('the C library has no mallopt (not glibc)')
    with process_pool(2) as pool:
        faults = pool.map(_faults_per_image, range(2))
    assert max(faults) < 50, faults
