"""Our PQ evaluator against cityscapesscripts' official one: identical numbers (1e-9)."""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as official

from panoptic_ros.evaluation.pq_files import evaluate_files
from pq_cases import KINDS, categories, write_cases

SEEDS = range(6)


def _official_single(gt_json, gt_dir, pred_json, pred_dir):
    gt = json.loads(gt_json.read_text())
    pred = json.loads(pred_json.read_text())
    cats = {c['id']: c for c in gt['categories']}
    pairs = list(zip(gt['annotations'], copy.deepcopy(pred['annotations'])))
    stat = official.pq_compute_single_core(0, pairs, str(gt_dir), str(pred_dir), cats)
    return official.average_pq(stat, cats)


def _assert_same(ours, theirs):
    for group in ('All', 'Things', 'Stuff'):
        assert ours[group]['n'] == theirs[group]['n'], group
        for m in ('pq', 'sq', 'rq'):
            assert ours[group][m] == pytest.approx(theirs[group][m], abs=1e-9), (group, m)
    assert set(ours['per_class']) == set(theirs['per_class'])
    for cat, vals in theirs['per_class'].items():
        for m in ('pq', 'sq', 'rq'):
            assert ours['per_class'][cat][m] == pytest.approx(vals[m], abs=1e-9), (cat, m)


@pytest.mark.parametrize('kind', KINDS)
def test_each_case_kind_matches_official(tmp_path, kind):
    """Every kind, several seeds, each image evaluated on its own."""
    for seed in SEEDS:
        paths = write_cases(tmp_path / str(seed), [(kind, seed)])
        ours, _ = evaluate_files(*paths, workers=1)
        try:
            theirs = _official_single(*paths)
        except ZeroDivisionError:
            # The official script divides by zero when a group has no segment at all; we
            # report that group as 0 with n == 0 instead.
            assert min(ours[g]['n'] for g in ('All', 'Things', 'Stuff')) == 0
            continue
        _assert_same(ours, theirs)


def test_cli_matches_official_script_on_whole_set(tmp_path):
    """`panoptic pq` as a process vs the official script as a process, over all cases."""
    cases = [(k, s) for k in KINDS for s in range(100, 104)]
    gt_json, gt_dir, pred_json, pred_dir = write_cases(tmp_path, cases)
    ours_file, theirs_file = tmp_path / 'ours.json', tmp_path / 'theirs.json'
    subprocess.run([sys.executable, '-m', 'panoptic_ros.cli', 'pq', '--gt-json', gt_json,
                    '--gt-dir', gt_dir, '--pred-json', pred_json, '--pred-dir', pred_dir,
                    '--out', ours_file, '--workers', '2'], check=True, capture_output=True)
    subprocess.run([sys.executable, '-m',
                    'cityscapesscripts.evaluation.evalPanopticSemanticLabeling',
                    '--gt-json-file', gt_json, '--gt-folder', gt_dir,
                    '--prediction-json-file', pred_json, '--prediction-folder', pred_dir,
                    '--results_file', theirs_file], check=True, capture_output=True)
    ours, theirs = json.loads(ours_file.read_text()), json.loads(theirs_file.read_text())
    assert set(ours) == set(theirs) == {'All', 'Things', 'Stuff', 'per_class'}
    _assert_same(ours, theirs)
    assert 0.2 < ours['All']['pq'] < 0.95  # the cases are neither trivial nor hopeless


def test_perfect_prediction_scores_one(tmp_path):
    paths = write_cases(tmp_path, [('identical', s) for s in range(5)])
    results, _ = evaluate_files(*paths, workers=2)
    assert results['All']['pq'] == pytest.approx(1.0)
    assert results['All']['n'] == sum(
        1 for v in results['per_class'].values() if v['pq'] > 0)


def test_results_cover_exactly_the_ground_truth_categories(tmp_path):
    paths = write_cases(tmp_path, [('noise', 1)])
    results, cats = evaluate_files(*paths, workers=1)
    assert sorted(results['per_class']) == sorted(c['id'] for c in categories()) == sorted(cats)
