"""Label sets and id encodings."""

import json

import numpy as np
import pytest

from panoptic_ros.encoding import (decode_panoptic, encode_panoptic, id_to_bgr, id_to_rgb,
                                   read_id_png, rgb_to_id, write_id_png)
from panoptic_ros.errors import PanopticError
from panoptic_ros.labels import cityscapes, coco_panoptic, from_categories_json, get_label_set


def test_cityscapes_label_set_comes_from_cityscapesscripts():
    from cityscapesscripts.helpers.labels import name2label

    cs = cityscapes()
    assert cs.num_classes == 19 and len(cs.thing_ids) == 8 and len(cs.stuff_ids) == 11
    for c in cs.classes:
        lab = name2label[c.name]
        assert (c.class_id, c.dataset_id, c.color, c.is_thing) == \
            (lab.trainId, lab.id, tuple(lab.color), lab.hasInstances)
    assert cs.class_of_dataset_id(26) == 13          # car: labelId 26 -> trainId 13
    assert cs.dataset_to_class[0] == cs.void_id == 255
    with pytest.raises(PanopticError, match='category id 5 is not in label set'):
        cs.class_of_dataset_id(5)


def test_coco_panoptic_label_set():
    coco = coco_panoptic()
    assert coco.num_classes == 133
    assert len(coco.thing_ids) == 80 and len(coco.stuff_ids) == 53
    assert coco.names[0] == 'person' and coco.classes[0].dataset_id == 1
    assert coco.classes[coco.class_of_dataset_id(149)].name == 'road'
    assert get_label_set('coco').names == coco.names


def test_custom_categories_json(tmp_path):
    path = tmp_path / 'cats.json'
    path.write_text(json.dumps({'categories': [
        {'id': 10, 'name': 'floor', 'isthing': 0},
        {'id': 20, 'name': 'robot', 'isthing': 1, 'color': [255, 0, 0]}]}))
    ls = from_categories_json(path)
    assert ls.names == ('floor', 'robot') and ls.is_thing.tolist() == [False, True]
    assert ls.classes[1].color == (255, 0, 0) and len(ls.classes[0].color) == 3
    path.write_text(json.dumps([{'name': 'no id'}]))
    with pytest.raises(PanopticError, match='cats.json: .*must have integer "id"'):
        from_categories_json(path)
    with pytest.raises(PanopticError, match='unknown label set'):
        get_label_set('mapillary')


@pytest.mark.parametrize('categories, field', [
    (['floor', 'robot'], 'category 0 must be an object'),       # names instead of objects
    ([{'id': 1, 'name': 'robot', 'isthing': 1, 'color': 'red'}], '"color" must be three'),
    ([{'id': 1, 'name': 'robot', 'isthing': 1, 'color': [300, 0, 0]}], '"color" must be three'),
    ([{'id': 1, 'name': 'robot', 'isthing': 'yes'}], '"isthing" 0/1'),
])
def test_a_malformed_categories_json_is_one_error_naming_file_and_field(tmp_path, categories,
                                                                         field):
    path = tmp_path / 'robot_labels.json'
    path.write_text(json.dumps({'categories': categories}))
    with pytest.raises(PanopticError, match=f'robot_labels.json: .*{field}') as err:
        get_label_set(path)
    assert '\n' not in str(err.value)


def test_panoptic_encoding_round_trip():
    rng = np.random.default_rng(0)
    sem = rng.integers(0, 19, (30, 40)).astype(np.uint8)
    sem[0] = 255
    inst = np.where((sem >= 11) & (sem != 255), rng.integers(1, 999, (30, 40)), 0)
    pan = encode_panoptic(sem, inst, void_id=255)
    assert pan.dtype == np.int32 and np.all(pan[0] == -1)
    assert pan[5, 5] == int(sem[5, 5]) * 1000 + int(inst[5, 5])
    s2, i2 = decode_panoptic(pan, void_id=255)
    np.testing.assert_array_equal(s2, sem)
    np.testing.assert_array_equal(i2, inst)


def test_coco_rgb_ids_both_ways(tmp_path):
    ids = np.array([[0, 1, 255], [256, 65536, (1 << 24) - 1]], np.uint32)
    rgb = id_to_rgb(ids)
    assert rgb[0, 2].tolist() == [255, 0, 0] and rgb[1, 0].tolist() == [0, 1, 0]
    np.testing.assert_array_equal(rgb_to_id(rgb), ids)
    np.testing.assert_array_equal(id_to_bgr(ids), rgb[..., ::-1])
    write_id_png(tmp_path / 'x.png', ids)
    np.testing.assert_array_equal(read_id_png(tmp_path / 'x.png'), ids)
    with pytest.raises(PanopticError, match=r'\[0, 2\^24\)'):
        id_to_rgb(np.array([1 << 24]))
