"""``panoptic/overlay`` as people read it: class colours that dominate the camera image, each
instance in its own shade of its class colour, outlines and names that stay visible at
512x1024 and 1024x2048; and ``colorize``, the bag report's ground-truth colouring."""

import numpy as np
import pytest
import torch
from std_msgs.msg import Header

from panoptic_ros.bag.report import montage_row
from panoptic_ros.labels import cityscapes
from panoptic_ros.models.result import PanopticResult
from panoptic_ros.palette import colorize
from panoptic_ros.ros.image_io import image_to_rgb
from panoptic_ros.ros.outputs import overlay_image
from panoptic_ros.ros.params import BY_NAME

LABELS = cityscapes()
ID = {name: i for i, name in enumerate(LABELS.names)}
VOID = LABELS.void_id
ALPHA = BY_NAME['overlay_alpha'].default
STUFF = ('road', 'sidewalk', 'building', 'vegetation', 'sky')
CAR_IDS = (3, 1, 5, 2, 4)            # a parked row, left to right, ids not in order
PERSON_ID = 6
SIZES = ((512, 1024), (1024, 2048))
MIN_OUTLINE = {512: 2, 1024: 3}      # outline thickness people can see, by image height


def _scene(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Street-like label maps at ``h x w`` (same layout at every size): sky, building and
    vegetation, sidewalk, road, a void patch, five touching cars and a person."""
    y, x = (np.mgrid[0:h, 0:w] + 0.5) / np.array([h, w])[:, None, None]
    sem = np.full((h, w), ID['road'], np.int32)
    sem[y < 0.65] = ID['sidewalk']
    sem[y < 0.55] = np.where(x[y < 0.55] < 0.5, ID['building'], ID['vegetation'])
    sem[y < 0.25] = ID['sky']
    sem[(y > 0.85) & (y < 0.95) & (x > 0.02) & (x < 0.12)] = VOID
    ins = np.zeros((h, w), np.int32)
    for k, iid in enumerate(CAR_IDS):
        box = (y >= 0.5) & (y < 0.8) & (x >= 0.3 + 0.1 * k) & (x < 0.4 + 0.1 * k)
        sem[box], ins[box] = ID['car'], iid
    person = (y >= 0.4) & (y < 0.75) & (x >= 0.88) & (x < 0.92)
    sem[person], ins[person] = ID['person'], PERSON_ID
    return sem, ins


def _result(size: tuple[int, int], grid_div: int) -> PanopticResult:
    """The scene as a result on a post-processing grid ``grid_div`` times smaller than the
    image, with its segments (class, instance id, area and centroid at the image size)."""
    h, w = size[0] // grid_div, size[1] // grid_div
    sem, ins = _scene(h, w)
    ys, xs = np.mgrid[0:h, 0:w]
    segs = [(int(np.bincount(sem[ins == i]).argmax()), i, ins == i)
            for i in np.unique(ins[ins > 0]).tolist()]
    segs += [(c, 0, (sem == c) & (ins == 0)) for c in np.unique(sem[ins == 0]).tolist()
             if c != VOID]
    cls = torch.tensor([c for c, _, _ in segs])
    iid = torch.tensor([i for _, i, _ in segs], dtype=torch.int32)
    area = torch.tensor([int(m.sum()) * grid_div ** 2 for _, _, m in segs])
    centre = torch.tensor([((xs[m].mean() + 0.5) * grid_div, (ys[m].mean() + 0.5) * grid_div)
                           for _, _, m in segs], dtype=torch.float32)
    sem_t, ins_t = torch.from_numpy(sem), torch.from_numpy(ins)
    return PanopticResult(
        grid_semantic=sem_t, grid_instance=ins_t,
        grid_panoptic=torch.where(sem_t == VOID, -1, sem_t * 1000 + ins_t), size=size,
        segment_ids=(cls * 1000 + iid).to(torch.int32), segment_classes=cls,
        segment_instance_ids=iid, segment_is_thing=torch.from_numpy(LABELS.is_thing)[cls],
        segment_scores=torch.ones(len(segs)), segment_areas=area,
        segment_boxes=torch.zeros(len(segs), 4, dtype=torch.int64),
        segment_centroids=centre, void_id=VOID, label_divisor=1000)


def _camera(size, colourful: bool, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if colourful:
        return rng.integers(40, 216, (*size, 3)).astype(np.uint8)
    return np.repeat(rng.integers(60, 200, (*size, 1)), 3, axis=2).astype(np.uint8)


def _overlay(camera, result, alpha=ALPHA, boundaries=True, names=False) -> np.ndarray:
    msg = overlay_image(Header(), camera, result, LABELS, alpha=alpha, boundaries=boundaries,
                        names=names)
    assert (msg.encoding, msg.height, msg.width) == ('rgb8', *camera.shape[:2])
    return image_to_rgb(msg)


def _dist(a, b) -> np.ndarray:
    return np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)


def _is_outline(rgb: np.ndarray) -> np.ndarray:
    return (rgb == 255).all(-1) | (rgb == 0).all(-1)


def _interior(mask: np.ndarray, margin: int) -> np.ndarray:
    """``mask`` without the ``margin`` pixels along its border (away from outlines)."""
    import cv2

    return cv2.erode(mask.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8)) > 0


@pytest.mark.parametrize('size', SIZES)
def test_void_keeps_the_camera_image(size):
    result = _result(size, 4)
    camera = _camera(size, colourful=True)
    out = _overlay(camera, result)
    void = result.semantic.numpy() == VOID
    assert void.sum() > 1000
    np.testing.assert_array_equal(out[void], camera[void])


@pytest.mark.parametrize('size', SIZES)
def test_stuff_moves_clearly_toward_its_class_colour(size):
    result = _result(size, 4)
    sem = result.semantic.numpy()
    grey = _camera(size, colourful=False)
    colourful = _camera(size, colourful=True)
    out_grey, out_colourful = _overlay(grey, result), _overlay(colourful, result)
    means = {}
    for name in STUFF:
        px = sem == ID[name]
        colour = LABELS.colors[ID[name]]
        # on a grey camera image every pixel goes at least half way to the class colour,
        # and visibly so (RGB distance) wherever the camera was not that colour already
        before, after = _dist(grey[px], colour), _dist(out_grey[px], colour)
        assert (after <= 0.5 * before + 3).all(), name
        moved = _dist(out_grey[px], grey[px])
        assert (moved[before > 80] >= 40).all(), name
        # on a colourful camera image the camera's hue does not win either
        assert _dist(out_colourful[px], colour).mean() <= \
            0.6 * _dist(colourful[px], colour).mean(), name
        means[name] = out_colourful[px].mean(0)
    # the same camera texture under two stuff classes reads as two different colours
    for i, a in enumerate(STUFF):
        for b in STUFF[i + 1:]:
            assert _dist(means[a], means[b]) >= 40, (a, b)


def _car_masks(result) -> list[np.ndarray]:
    ins = result.instance.numpy()
    return [ins == iid for iid in CAR_IDS]


@pytest.mark.parametrize('size', SIZES)
def test_touching_instances_of_a_class_get_clearly_different_shades(size):
    result = _result(size, 4)
    camera = _camera(size, colourful=False)
    out = _overlay(camera, result)
    colours = colorize(result.semantic.numpy(), result.instance.numpy(), LABELS)
    cars = _car_masks(result)
    seen = [out[_interior(m, 12)].mean(0) for m in cars]
    shades = [colours[_interior(m, 12)] for m in cars]
    for s in shades:
        assert (s == s[0]).all()                       # one flat shade per instance
    for k in range(len(cars) - 1):                     # neighbours in the parked row
        assert _dist(seen[k], seen[k + 1]) >= 40, k
        assert _dist(shades[k][0], shades[k + 1][0]) >= 80, k
    # all five differ from each other, and each stays a shade of the class colour
    for i in range(len(cars)):
        for j in range(i + 1, len(cars)):
            assert _dist(shades[i][0], shades[j][0]) >= 25, (i, j)
    car_channel = int(np.argmax(LABELS.colors[ID['car']]))
    assert all(int(np.argmax(s[0])) == car_channel for s in shades)


@pytest.mark.parametrize('size, grid_div', [((512, 1024), 4), ((512, 1024), 1),
                                            ((1024, 2048), 4), ((1024, 2048), 2),
                                            ((1024, 2048), 1)])
def test_instance_outlines_are_drawn_and_thick_enough(size, grid_div):
    result = _result(size, grid_div)
    out = _overlay(_camera(size, colourful=False), result)
    ins = result.instance.numpy()
    outline = _is_outline(out)
    assert not (outline & (ins == 0)).any()            # on the instances only
    row = int(0.65 * size[0])                          # through the parked row
    line_ins, line_outline = ins[row], outline[row]
    borders = np.flatnonzero(line_ins[1:] != line_ins[:-1])
    assert len(borders) >= len(CAR_IDS) + 1            # road | 5 cars | road ...
    need = MIN_OUTLINE[size[0]]
    for b in borders:
        for x, step in ((b, -1), (b + 1, 1)):          # each side of the border
            if line_ins[x] == 0:
                continue
            run = 0
            while line_outline[x] and line_ins[x] == line_ins[b if step < 0 else b + 1]:
                run, x = run + 1, x + step
            assert run >= need, (b, step, run)
    plain = _overlay(_camera(size, colourful=False), result, boundaries=False)
    assert not _is_outline(plain).any()


def _text_rows(size, names: bool):
    result = _result(size, 4)
    camera = _camera(size, colourful=False)
    return _overlay(camera, result, boundaries=False), \
        _overlay(camera, result, boundaries=False, names=names), result


@pytest.mark.parametrize('size', SIZES)
def test_names_only_when_enabled_and_readable(size):
    plain, again, _ = _text_rows(size, names=False)
    np.testing.assert_array_equal(plain, again)
    plain, named, result = _text_rows(size, names=True)
    changed = (plain != named).any(-1)
    ins = result.instance.numpy()
    for iid in (*CAR_IDS, PERSON_ID):                  # a name on every instance
        assert (changed & (ins == iid)).sum() > 50, iid
    assert not changed[result.semantic.numpy() == ID['sky']].any()
    text = named[changed]
    assert (text >= 250).all(-1).sum() > 100           # white letters
    assert (text <= 40).all(-1).sum() > 100            # on a dark halo


def test_names_scale_with_the_image():
    heights = {}
    for size in SIZES:
        plain, named, result = _text_rows(size, names=True)
        car = result.instance.numpy() == CAR_IDS[0]
        rows = np.flatnonzero(((plain != named).any(-1) & car).any(1))
        heights[size[0]] = rows.max() - rows.min() + 1
    assert heights[512] >= 14
    assert 1.6 <= heights[1024] / heights[512] <= 2.4


def test_overlay_is_deterministic():
    result = _result(SIZES[0], 4)
    camera = _camera(SIZES[0], colourful=True)
    np.testing.assert_array_equal(_overlay(camera, result, names=True),
                                  _overlay(camera, result, names=True))


def test_colorize_for_the_bag_report():
    size = (1024, 2048)
    sem, ins = _scene(*size)
    colours = colorize(sem, ins, LABELS)
    assert colours.shape == (*size, 3) and colours.dtype == np.uint8
    assert (colours[sem == VOID] == 0).all()
    for name in STUFF:
        assert (colours[sem == ID[name]] == LABELS.colors[ID[name]]).all(), name
    outline = _is_outline(colours)
    assert outline[ins > 0].sum() > 0 and not outline[(ins == 0) & (sem != VOID)].any()
    assert not _is_outline(colorize(sem, ins, LABELS, boundaries=False))[ins > 0].any()
    # the montage's ground-truth tile (512 wide, nearest) still shows the outlines
    row = montage_row(_camera(size, colourful=True), colours, None)
    assert row.shape == (256, 3 * 512, 3)
    assert _is_outline(row[:, 512:1024]).sum() > 100


def _renumbered(result: PanopticResult, new_of: dict) -> PanopticResult:
    """The same segments under other instance ids (``{old: new}``), as the next frame of a
    video may number the same objects."""
    from dataclasses import replace

    lut = torch.arange(int(result.grid_instance.max()) + 1)
    for old, new in new_of.items():
        lut[old] = new
    ins = lut[result.grid_instance.long()].to(torch.int32)
    iid = lut[result.segment_instance_ids.long()].to(torch.int32)
    return replace(result, grid_instance=ins, segment_instance_ids=iid,
                   grid_panoptic=torch.where(result.grid_semantic == VOID, -1,
                                             result.grid_semantic * 1000 + ins),
                   segment_ids=(result.segment_classes * 1000 + iid).to(torch.int32))


def test_with_track_ids_an_object_keeps_its_colour_when_its_frame_id_changes():
    size = (256, 512)
    first = _result(size, 4)
    second = _renumbered(first, {3: 5, 5: 3, 1: 4, 4: 1})   # same objects, ids shuffled
    track_of = {3: 17, 1: 9, 5: 30, 2: 12, 4: 8, PERSON_ID: 41}      # per object, frame one

    def tracks(result, frame_id_of_object):
        ids = result.segment_instance_ids.tolist()
        inv = {v: k for k, v in frame_id_of_object.items()}
        return torch.tensor([track_of[inv[i]] if i else 0 for i in ids])

    same = {k: k for k in track_of}
    moved = {3: 5, 5: 3, 1: 4, 4: 1, 2: 2, PERSON_ID: PERSON_ID}
    cam = _camera(size, colourful=False)
    plain = [_overlay(cam, r) for r in (first, second)]
    assert not np.array_equal(plain[0], plain[1])      # per-frame ids: colours jump
    tracked = [image_to_rgb(overlay_image(Header(), cam, r, LABELS, alpha=ALPHA,
                                          boundaries=True, names=False, track_ids=tracks(r, m)))
               for r, m in ((first, same), (second, moved))]
    np.testing.assert_array_equal(tracked[0], tracked[1])


def test_the_instance_image_can_carry_track_ids():
    from panoptic_ros.ros.image_io import label_array
    from panoptic_ros.ros.outputs import instance_image

    result = _result((128, 256), 2)
    iid = result.segment_instance_ids
    tracks = torch.where(iid > 0, iid.long() * 65535 + 7, 0)    # large ids wrap into 1..65535
    frame_ids = label_array(instance_image(Header(), result))
    track_img = label_array(instance_image(Header(), result, tracks))
    assert frame_ids.dtype == track_img.dtype == np.uint16
    for i, t in zip(iid.tolist(), tracks.tolist()):
        if i:
            assert np.all(track_img[frame_ids == i] == (t - 1) % 65535 + 1)
    assert np.all(track_img[frame_ids == 0] == 0)


@pytest.mark.parametrize('size,grid_div', [((128, 256), 1), ((256, 512), 4)])
def test_label_images_are_the_results_maps_after_serialisation(size, grid_div):
    """The label images are resized straight into their messages' buffers: what a subscriber
    deserialises is exactly the result's full-size semantic, instance and panoptic maps."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from panoptic_ros.ros.image_io import label_array
    from panoptic_ros.ros.outputs import instance_image, panoptic_image, semantic_image

    result = _result(size, grid_div)
    made = {'semantic': (semantic_image(Header(), result, LABELS), 'mono8', result.semantic),
            'instance': (instance_image(Header(), result), 'mono16', result.instance),
            'panoptic': (panoptic_image(Header(), result), '32SC1', result.panoptic)}
    for name, (msg, encoding, expected) in made.items():
        got = deserialize_message(serialize_message(msg), Image)
        assert (got.encoding, got.height, got.width) == (encoding, *size), name
        np.testing.assert_array_equal(label_array(got).astype(np.int64),
                                      expected.numpy().astype(np.int64), err_msg=name)


def test_the_segments_message_builds_no_full_size_map():
    """``panoptic/segments`` is made from the result's segment table and size alone: building
    a full-size label map for it cost 1-2 ms a frame at 1024x2048 in the node."""
    from panoptic_ros.ros.outputs import segments_message

    result = _result((1024, 2048), 4)
    msg = segments_message(Header(), result, LABELS, None)
    assert (msg.height, msg.width) == (1024, 2048)
    assert [s.id for s in msg.segments] == result.segment_ids.tolist()
    assert not {'semantic', 'instance', 'panoptic'} & set(vars(result)), \
        'a full-size map was built'
