"""`panoptic synth`: layout, determinism, ground-truth consistency, official conversion."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from panoptic_ros.encoding import read_id_png
from panoptic_ros.synth.writer import CITIES, image_name, write_dataset

H, W = 128, 256


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    write_dataset(root, 'val', num=12, height=H, width=W, seed=7, workers=2, progress=False)
    return root


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob('*') if p.is_file())


def test_layout_is_cityscapes(dataset):
    gt = json.loads((dataset / 'gtFine' / 'cityscapes_panoptic_val.json').read_text())
    assert len(gt['images']) == len(gt['annotations']) == 12
    assert len(gt['categories']) == 19
    assert sum(c['isthing'] for c in gt['categories']) == 8
    for i in range(12):
        city, stem = image_name(i)
        assert city in CITIES
        img = cv2.imread(str(dataset / 'leftImg8bit' / 'val' / city / f'{stem}_leftImg8bit.png'))
        assert img.shape == (H, W, 3)
        for kind in ('labelIds', 'instanceIds', 'color'):
            f = dataset / 'gtFine' / 'val' / city / f'{stem}_gtFine_{kind}.png'
            assert f.is_file(), f
        assert (dataset / 'gtFine' / 'cityscapes_panoptic_val' /
                f'{stem}_gtFine_panoptic.png').is_file()
        assert gt['annotations'][i]['image_id'] == stem


def test_same_seed_same_bytes_for_any_worker_count(dataset, tmp_path):
    write_dataset(tmp_path, 'val', num=12, height=H, width=W, seed=7, workers=1,
                  progress=False)
    assert _files(tmp_path) == _files(dataset)
    for rel in _files(dataset):
        assert (tmp_path / rel).read_bytes() == (dataset / rel).read_bytes(), rel


def test_other_seed_other_scenes(dataset, tmp_path):
    write_dataset(tmp_path, 'val', num=2, height=H, width=W, seed=8, workers=1,
                  progress=False)
    rel = 'leftImg8bit/val/alderley/alderley_000000_000019_leftImg8bit.png'
    assert (tmp_path / rel).read_bytes() != (dataset / rel).read_bytes()


def test_label_images_agree_with_each_other(dataset):
    gt = json.loads((dataset / 'gtFine' / 'cityscapes_panoptic_val.json').read_text())
    seen_things, crowd, touching = set(), 0, 0
    for ann in gt['annotations']:
        stem = ann['image_id']
        city = stem.split('_')[0]
        base = dataset / 'gtFine' / 'val' / city / stem
        label = cv2.imread(f'{base}_gtFine_labelIds.png', cv2.IMREAD_UNCHANGED)
        inst = cv2.imread(f'{base}_gtFine_instanceIds.png', cv2.IMREAD_UNCHANGED)
        assert inst.dtype == np.uint16
        np.testing.assert_array_equal(np.where(inst >= 1000, inst // 1000, inst), label)
        ids = read_id_png(dataset / 'gtFine' / 'cityscapes_panoptic_val' / ann['file_name'])
        counts = np.bincount(ids.ravel())
        for s in ann['segments_info']:
            assert counts[s['id']] == s['area'] > 0
            x, y, w, h = s['bbox']
            ys, xs = np.nonzero(ids == s['id'])
            assert (x, y, w, h) == (xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1)
            if s['id'] >= 1000:
                seen_things.add(s['category_id'])
            crowd += s['iscrowd']
        # touching instances of one class (parked rows): 4-neighbours with different ids
        things = inst >= 1000
        diff = (inst[:, 1:] != inst[:, :-1]) & things[:, 1:] & things[:, :-1] & \
            (inst[:, 1:] // 1000 == inst[:, :-1] // 1000)
        touching += int(diff.any())
    assert len(seen_things) >= 4, seen_things      # several thing classes across the set
    assert touching >= 3                           # near-identical neighbours are common
    assert crowd >= 1                              # crowd groups occur


def test_panoptic_conversion_matches_cityscapesscripts(dataset, tmp_path):
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    convert2panoptic(cityscapesPath=str(dataset / 'gtFine'), outputFolder=str(tmp_path),
                     setNames=['val'])
    theirs = json.loads((tmp_path / 'cityscapes_panoptic_val.json').read_text())
    ours = json.loads((dataset / 'gtFine' / 'cityscapes_panoptic_val.json').read_text())
    key = {a['image_id']: a for a in ours['annotations']}
    assert len(theirs['annotations']) == len(key)
    for ann in theirs['annotations']:
        assert key[ann['image_id']] == ann
        np.testing.assert_array_equal(
            read_id_png(tmp_path / 'cityscapes_panoptic_val' / ann['file_name']),
            read_id_png(dataset / 'gtFine' / 'cityscapes_panoptic_val' / ann['file_name']))
    assert [(c['id'], c['name'], c['isthing']) for c in theirs['categories']] == \
        [(c['id'], c['name'], c['isthing']) for c in ours['categories']]


def test_cli_writes_a_dataset_the_evaluator_scores_perfect(tmp_path):
    subprocess.run([sys.executable, '-m', 'panoptic_ros.cli', 'synth', '--out', tmp_path,
                    '--split', 'train', '--num', '3', '--height', '96', '--width', '192',
                    '--quiet'], check=True)
    gt = tmp_path / 'gtFine'
    out = subprocess.run([sys.executable, '-m', 'panoptic_ros.cli', 'pq',
                          '--gt-json', gt / 'cityscapes_panoptic_train.json',
                          '--gt-dir', gt / 'cityscapes_panoptic_train',
                          '--pred-json', gt / 'cityscapes_panoptic_train.json',
                          '--pred-dir', gt / 'cityscapes_panoptic_train'],
                         check=True, capture_output=True, text=True).stdout
    assert [line for line in out.splitlines() if line.startswith('All')][0].split()[2] == '100.0'


def test_bad_arguments_are_refused(tmp_path):
    from panoptic_ros.errors import PanopticError

    with pytest.raises(PanopticError, match='at least 64x64'):
        write_dataset(tmp_path, 'val', num=1, height=10, width=10, seed=0, progress=False)
