"""Dataset loaders and augmentation on real files (synthetic Cityscapes, a COCO-format set)."""

import json

import cv2
import numpy as np
import pytest

from panoptic_ros.datasets.cityscapes import CityscapesDataset
from panoptic_ros.datasets.coco import CocoPanopticDataset
from panoptic_ros.datasets.transforms import (PhotometricDistortion, RandomCrop,
                                              RandomHorizontalFlip, RandomScale,
                                              training_transforms)
from panoptic_ros.encoding import write_id_png
from panoptic_ros.errors import PanopticError
from panoptic_ros.labels import coco_panoptic
from panoptic_ros.synth.writer import write_dataset


@pytest.fixture(scope='module')
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('cs')
    write_dataset(root, 'val', num=6, height=128, width=256, seed=3, workers=1, progress=False)
    return root


def test_both_ground_truth_sources_give_the_same_samples(synth_root):
    a = CityscapesDataset(synth_root, 'val', source='panoptic')
    b = CityscapesDataset(synth_root, 'val', source='instanceIds')
    assert len(a) == len(b) == 6
    for i in range(len(a)):
        sa, sb = a[i], b[i]
        assert sa.name == sb.name
        np.testing.assert_array_equal(sa.image, sb.image)
        np.testing.assert_array_equal(sa.semantic, sb.semantic)
        np.testing.assert_array_equal(sa.instance, sb.instance)
        assert sa.segments == sb.segments


def test_sample_matches_the_files(synth_root):
    ds = CityscapesDataset(synth_root, 'val')
    s = ds[0]
    assert s.image.shape == (128, 256, 3) and s.image.dtype == np.uint8
    label = cv2.imread(str(synth_root / 'gtFine' / 'val' / 'alderley' /
                           f'{s.name}_gtFine_labelIds.png'), cv2.IMREAD_UNCHANGED)
    # trainId semantic == labelId mapped through cityscapesscripts' table
    from cityscapesscripts.helpers.labels import id2label
    expected = np.vectorize(lambda i: id2label[i].trainId if not id2label[i].ignoreInEval
                            else 255)(label)
    np.testing.assert_array_equal(s.semantic, expected)
    things = s.instance > 0
    assert np.all(s.label_set.is_thing[s.semantic[things]])
    # every instance id belongs to exactly one class
    for k in np.unique(s.instance[things]):
        assert len(np.unique(s.semantic[s.instance == k])) == 1
    assert sum(seg.area for seg in s.segments) == int((s.semantic != 255).sum())


def _assert_consistent(s):
    assert s.image.shape[:2] == s.semantic.shape == s.instance.shape
    void = s.semantic == s.void_id
    assert np.all(s.instance[void] == 0)
    inst = s.instance > 0
    assert np.all(s.label_set.is_thing[s.semantic[inst]])
    pan = s.panoptic()
    counts = {seg.id: seg.area for seg in s.segments}
    ids, areas = np.unique(pan[pan >= 0], return_counts=True)
    assert counts == dict(zip(ids.tolist(), areas.tolist()))


def test_augmentation_keeps_labels_consistent(synth_root):
    ds = CityscapesDataset(synth_root, 'val')
    tf = training_transforms(crop=(96, 160), scale=(0.5, 2.0))
    rng = np.random.default_rng(0)
    for i in range(len(ds)):
        for _ in range(3):
            out = tf(ds[i], rng)
            assert out.semantic.shape == (96, 160)
            _assert_consistent(out)


def test_flip_moves_labels_with_the_image(synth_root):
    s = CityscapesDataset(synth_root, 'val')[1]
    f = RandomHorizontalFlip(p=1.0)(s, np.random.default_rng(0))
    np.testing.assert_array_equal(f.image, s.image[:, ::-1])
    np.testing.assert_array_equal(f.semantic, s.semantic[:, ::-1])
    back = RandomHorizontalFlip(p=1.0)(f, np.random.default_rng(0))
    assert back.segments == s.segments


def test_scale_and_crop_geometry(synth_root):
    s = CityscapesDataset(synth_root, 'val')[2]
    big = RandomScale(2.0, 2.0)(s, np.random.default_rng(0))
    assert big.semantic.shape == (256, 512)
    np.testing.assert_array_equal(big.semantic[::2, ::2], s.semantic)  # nearest: exact
    padded = RandomCrop(200, 300)(s, np.random.default_rng(0))  # larger than the image
    assert padded.semantic.shape == (200, 300)
    assert np.all(padded.semantic[128:] == s.void_id)
    assert (padded.semantic != s.void_id).sum() == (s.semantic != s.void_id).sum()


def test_photometric_changes_pixels_not_labels(synth_root):
    s = CityscapesDataset(synth_root, 'val')[3]
    p = PhotometricDistortion()(s, np.random.default_rng(5))
    assert not np.array_equal(p.image, s.image)
    assert p.semantic is s.semantic and p.segments == s.segments


def test_coco_panoptic_dataset(tmp_path):
    """A tiny COCO-format set with COCO category ids, crowd and unlisted (void) ids."""
    coco = coco_panoptic()
    (tmp_path / 'images').mkdir()
    (tmp_path / 'pan').mkdir()
    ids = np.zeros((40, 60), np.uint32)
    ids[:20] = 5001            # sky-other-merged (stuff)
    ids[20:] = 5002            # road (stuff)
    ids[25:35, 5:15] = 77      # person
    ids[25:35, 20:30] = 78     # person
    ids[22:38, 40:55] = 90     # car crowd
    ids[0:3, 0:3] = 12345      # not listed: void
    write_id_png(tmp_path / 'pan' / 'a.png', ids)
    img = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'images' / 'a.jpg'), img)
    segs = [{'id': 5001, 'category_id': 187, 'iscrowd': 0},
            {'id': 5002, 'category_id': 149, 'iscrowd': 0},
            {'id': 77, 'category_id': 1, 'iscrowd': 0},
            {'id': 78, 'category_id': 1, 'iscrowd': 0},
            {'id': 90, 'category_id': 3, 'iscrowd': 1}]
    (tmp_path / 'pan.json').write_text(json.dumps({
        'images': [{'id': 1, 'file_name': 'a.jpg', 'height': 40, 'width': 60}],
        'annotations': [{'image_id': 1, 'file_name': 'a.png', 'segments_info': segs}],
        'categories': coco.to_categories()}))
    ds = CocoPanopticDataset(tmp_path / 'images', tmp_path / 'pan.json', tmp_path / 'pan')
    assert ds.label_set.num_classes == 133
    s = ds[0]
    person, car = ds.label_set.class_of_dataset_id(1), ds.label_set.class_of_dataset_id(3)
    assert s.semantic[30, 10] == person and s.instance[30, 10] == 1
    assert s.instance[30, 25] == 2
    assert s.semantic[30, 45] == car and s.instance[30, 45] == 0
    assert s.semantic[1, 1] == s.void_id
    crowd = [seg for seg in s.segments if seg.iscrowd]
    assert len(crowd) == 1 and crowd[0].class_id == car
    _assert_consistent(s)


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(PanopticError, match='no images in .*leftImg8bit/val'):
        CityscapesDataset(tmp_path, 'val')
