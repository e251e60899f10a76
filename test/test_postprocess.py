"""Shared post-processing against straightforward reference implementations."""

import numpy as np
import pytest
import torch

from panoptic_ros.models.dense_detections.decode import dense_boxes, level_candidates
from panoptic_ros.models.dense_detections.masks import box_iou_map, construct_masks, vote_classes
from panoptic_ros.models.fusion import _paste_fixed_point, fuse_panoptic, paste_instances
from panoptic_ros.models.geometry import box_iou, decode_boxes, nms


def _random_boxes(rng, k, size=100.0):
    xy = rng.uniform(0, size, (k, 2))
    wh = rng.uniform(2, size / 2, (k, 2))
    return torch.tensor(np.concatenate([xy, xy + wh], 1), dtype=torch.float32)


def _reference_nms(boxes, scores, classes, thr):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        ok = True
        for j in keep:
            if classes[i] == classes[j] and float(box_iou(boxes[i:i + 1], boxes[j:j + 1])) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    out = torch.zeros(len(scores), dtype=torch.bool)
    out[keep] = True
    return out


@pytest.mark.parametrize('seed', range(8))
def test_nms_equals_greedy_reference(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 120))
    boxes = _random_boxes(rng, k)
    scores = torch.tensor(rng.permutation(k) / k, dtype=torch.float32)  # distinct scores
    classes = torch.tensor(rng.integers(0, 3, k))
    for thr in (0.3, 0.5, 0.7):
        assert torch.equal(nms(boxes, scores, classes, thr),
                           _reference_nms(boxes, scores, classes, thr))


def test_nms_chain_and_invalid_candidates():
    # a suppresses b, b would suppress c: greedy keeps a and c
    boxes = torch.tensor([[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    classes = torch.zeros(3, dtype=torch.int64)
    assert nms(boxes, scores, classes, 0.4).tolist() == [True, False, True]
    valid = torch.tensor([False, True, True])
    assert nms(boxes, scores, classes, 0.4, valid).tolist() == [False, True, False]


def test_decode_and_box_iou_map_against_per_pixel_loop():
    rng = np.random.default_rng(1)
    offsets = torch.tensor(rng.uniform(0, 20, (1, 4, 6, 8)), dtype=torch.float32)
    boxes = decode_boxes(offsets, stride=8)[0]
    assert torch.allclose(boxes[0, 2, 3], 4 + 3 * 8 - offsets[0, 0, 2, 3])
    assert torch.allclose(boxes[3, 2, 3], 4 + 2 * 8 + offsets[0, 3, 2, 3])
    queries = _random_boxes(rng, 5, size=60)
    iou = box_iou_map(boxes, queries)
    for j in range(5):
        for y in range(6):
            for x in range(8):
                ref = box_iou(boxes[:, y, x][None], queries[j:j + 1])[0, 0]
                assert torch.allclose(iou[j, y, x], ref, atol=1e-6)


def test_dense_boxes_interpolate_offsets_and_follow_levelness():
    # level 1 (stride 8): offsets of one 64x64 box at (0, 0); level 2 (stride 16): another box
    def offsets(box, stride, h, w):
        ys = torch.arange(h) * stride + stride // 2
        xs = torch.arange(w) * stride + stride // 2
        x, y = torch.meshgrid(xs.float(), ys.float(), indexing='xy')
        return torch.stack([x - box[0], y - box[1], box[2] - x, box[3] - y])[None]
    box_a, box_b = (0., 0., 64., 64.), (100., 20., 300., 60.)
    reg = [offsets(box_a, 8, 8, 40), offsets(box_b, 16, 4, 20)]
    levelness = torch.zeros(1, 3, 16, 80)
    levelness[0, 1, :, :20] = 5
    levelness[0, 2, :, 20:] = 5
    levelness[0, 0, 0, :] = 9          # background channel is not a level
    boxes = dense_boxes(reg, levelness)[0]
    inner = boxes[:, 2:12, 2:14]        # interior of level 1's region: box_a everywhere
    assert torch.allclose(inner, torch.tensor(box_a)[:, None, None].expand_as(inner), atol=1e-3)
    inner_b = boxes[:, 2:12, 30:70]
    assert torch.allclose(inner_b, torch.tensor(box_b)[:, None, None].expand_as(inner_b),
                          atol=1e-3)


def test_level_candidates_score_class_times_centerness():
    reg = [torch.full((1, 4, 2, 2), 3.0)]
    cls = torch.full((1, 2, 2, 2), -10.0)
    cls[0, 1, 0, 1] = 2.0               # one confident (location, class) pair
    ctr = torch.zeros(1, 1, 2, 2)       # centerness 0.5
    boxes, scores, classes = level_candidates(reg, [cls], [ctr], [8], 0.05, 10)
    assert boxes.shape == (1, 8, 4) and scores.shape == classes.shape == (1, 8)  # static
    assert int((scores > 0).sum()) == 1        # the others are empty slots
    assert classes[0, 0] == 1
    assert scores[0, 0] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item() * 0.5)
    assert boxes[0, 0].tolist() == [12 - 3, 4 - 3, 12 + 3, 4 + 3]


def test_mask_construction_is_iou_times_semantic_probability():
    boxes = torch.zeros(4, 3, 3)
    boxes[:, :, :] = torch.tensor([0., 0., 10., 10.])[:, None, None]
    boxes[:, 0, 0] = torch.tensor([50., 50., 60., 60.])     # a pixel of another object
    boxes[:, 2, 2] = torch.tensor([0., 0., 10., 20.])       # half-overlapping box
    sem = torch.full((2, 3, 3), 0.5)
    sem[1, 1, 1] = 0.2
    masks, prob = construct_masks(box_iou_map(boxes, torch.tensor([[0., 0., 10., 10.]])), sem,
                                  torch.tensor([1]), sigma=0.3)
    assert prob[0, 0, 1] == pytest.approx(0.5) and masks[0, 0, 1]
    assert prob[0, 0, 0] == 0 and not masks[0, 0, 0]           # IoU 0
    assert prob[0, 1, 1] == pytest.approx(0.2) and not masks[0, 1, 1]   # low semantics
    assert prob[0, 2, 2] == pytest.approx(0.25) and not masks[0, 2, 2]   # IoU 0.5 x 0.5


def test_vote_classes_takes_the_semantic_class_under_each_query():
    boxes = torch.zeros(4, 4, 8)
    boxes[:, :, :4] = torch.tensor([0., 0., 16., 16.])[:, None, None]     # object A, left
    boxes[:, :, 4:] = torch.tensor([16., 0., 32., 16.])[:, None, None]    # object B, right
    sem = torch.zeros(4, 4, 8)                  # classes 0 (stuff), 1, 2, 3 (things)
    sem[2, :, :4] = 0.7
    sem[1, :, :4] = 0.3
    sem[3, :, 4:] = 0.6
    sem[0, :, 4:] = 0.4                         # stuff never wins: only thing classes vote
    sem[1, 0, 7] = 1.0                          # one stray pixel does not outvote the rest
    queries = torch.tensor([[0., 0., 16., 16.], [16., 0., 32., 16.], [8., 0., 24., 16.]])
    iou = box_iou_map(boxes, queries)
    classes = vote_classes(iou, sem, torch.tensor([1, 2, 3]))
    assert classes.tolist()[:2] == [2, 3]
    # a query straddling both objects takes the one with more IoU-weighted probability
    votes = [(iou[2] * sem[c]).sum().item() for c in (1, 2, 3)]
    assert classes[2].item() == 1 + int(np.argmax(votes))


def _reference_paste(masks, keep, thr):
    taken = np.zeros(masks.shape[1:], bool)
    owner = -np.ones(masks.shape[1:], np.int64)
    kept = np.zeros(len(masks), bool)
    for j, m in enumerate(masks):
        area = m.sum()
        if not keep[j] or area == 0:
            continue
        if (m & taken).sum() > thr * area:
            continue
        claim = m & ~taken
        owner[claim] = j
        taken |= claim
        kept[j] = True
    return owner, kept


@pytest.mark.parametrize('paste', [paste_instances, _paste_fixed_point],
                         ids=['cpu_in_order', 'fixed_point'])
@pytest.mark.parametrize('seed', range(8))
def test_paste_instances_equals_sequential_reference(seed, paste):
    """Both ways of pasting (in order on bounding boxes, the CPU's; fixed point on whole masks,
    the GPU's) are the sequential rule, on overlapping, empty and ragged masks."""
    rng = np.random.default_rng(seed)
    j = int(rng.integers(0, 12)) if seed else 0
    masks = np.zeros((j, 30, 40), bool)
    for k in range(j):
        y, x = rng.integers(0, 25), rng.integers(0, 35)
        masks[k, y:y + rng.integers(2, 15), x:x + rng.integers(2, 20)] = True
        masks[k] &= rng.random((30, 40)) < 0.9        # holes: not a box
    if j > 2:
        masks[1] = False                              # an empty mask is never kept
    keep = rng.random(j) < 0.8
    thr = (0.5, 0.3, 0.7)[seed % 3]
    owner, kept = paste(torch.tensor(masks), torch.tensor(keep), thr)
    ref_owner, ref_kept = _reference_paste(masks, keep, thr)
    assert owner.numpy().tolist() == ref_owner.tolist()
    assert kept.numpy().tolist() == ref_kept.tolist()


@pytest.mark.parametrize('out_size', [(40, 60), (20, 30), (47, 131), (13, 22)])
def test_fusion_builds_consistent_result(out_size):
    """Label maps at any output size (up, down, non-integer scales) with segment areas, boxes
    and centroids exactly those of the output maps."""
    c, h, w = 4, 20, 30                     # classes 0, 1 stuff; 2, 3 things
    is_thing = torch.tensor([False, False, True, True])
    prob = torch.zeros(c, h, w)
    prob[0] = 0.9
    prob[2, 12:18, 2:8] = 0.95              # thing area without an instance -> void
    prob[1, 0, 0] = 0.99                    # stuff class 1 has 1 px (4 at 40x60): < 8 -> void
    masks = torch.zeros(2, h, w, dtype=torch.bool)
    masks[0, 2:8, 10:20] = True
    masks[1, 4:9, 15:25] = True             # overlaps instance 0 by 20 of 50 px: kept
    res = fuse_panoptic(prob, masks, torch.tensor([0.9, 0.8]), torch.tensor([3, 2]), is_thing,
                        score_threshold=0.5, overlap_threshold=0.5, min_stuff_area=8,
                        void_id=255, label_divisor=1000, out_size=out_size)
    assert res.semantic.shape == out_size
    pan = res.panoptic
    assert sorted(res.segment_ids.tolist()) == sorted(set(pan.flatten().tolist()) - {-1})
    for sid, area, cls, inst, box, centroid in zip(
            res.segment_ids, res.segment_areas, res.segment_classes, res.segment_instance_ids,
            res.segment_boxes, res.segment_centroids):
        px = pan == sid
        assert int(px.sum()) == int(area)
        assert torch.all(res.semantic[px] == cls) and torch.all(res.instance[px] == inst)
        ys, xs = torch.nonzero(px, as_tuple=True)
        assert box.tolist() == [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                int(ys.max() - ys.min() + 1)]
        assert centroid.tolist() == pytest.approx(
            [float(xs.float().mean()), float(ys.float().mean())], abs=1e-3)
    if out_size != (40, 60):
        return                              # the area rule below is worked out for 40 x 60
    assert res.num_segments == 3            # stuff class 0 + two instances
    assert torch.all(res.semantic[24:36, 4:16] == 255)     # unclaimed thing -> void
    assert res.semantic[0, 0] == 255 and res.semantic[0, 2] == 0   # tiny stuff region -> void
    assert set(res.segment_instance_ids.tolist()) == {0, 1, 2}
    assert torch.all(res.panoptic[res.semantic == 255] == -1)


def _blob_maps(rng, j, h, w):
    """``j`` probability maps, each non-zero on one random box (some touching the map's
    edges), the shape of mask probabilities."""
    prob = torch.zeros(j, h, w)
    for k in range(j):
        y0, x0 = int(rng.integers(-3, h - 1)), int(rng.integers(-3, w - 1))
        y1, x1 = y0 + int(rng.integers(1, h // 2)), x0 + int(rng.integers(1, w // 2))
        y0, x0 = max(y0, 0), max(x0, 0)
        prob[k, y0:y1, x0:x1] = torch.from_numpy(rng.random((min(y1, h) - y0, min(x1, w) - x0),
                                                            dtype=np.float32))
    return prob


@pytest.mark.parametrize('factor', [2, 3, 4])
@pytest.mark.parametrize('seed', range(4))
def test_cropped_upsampling_equals_whole_maps(seed, factor):
    """Masks upsampled only around their passing cells (the CPU path of
    ``upsample_threshold``) are the masks of the whole maps upsampled, bit for bit, also for
    maps at the edges, an empty map and a single passing cell."""
    from panoptic_ros.models.resample import upsample_threshold

    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(6, 40)), int(rng.integers(6, 60))
    prob = _blob_maps(rng, 12, h, w)
    prob[3] = 0                                    # nothing passes
    prob[4] = 0
    prob[4, h - 1, 0] = 0.9                        # one passing cell in a corner
    size = (h * factor, w * factor)
    whole = torch.nn.functional.interpolate(prob[None], size=size, mode='bilinear',
                                            align_corners=False)[0] > 0.3
    got = upsample_threshold(prob, prob > 0.3, size, 0.3)
    assert got.dtype == torch.bool and got.shape == (12, *size)
    assert torch.equal(got, whole)
    assert got[4].any() and not got[3].any()


def test_upsample_threshold_other_sizes_and_no_maps():
    from panoptic_ros.models.resample import upsample_threshold

    prob = _blob_maps(np.random.default_rng(0), 5, 16, 20)
    for size in [(16, 20), (24, 30), (48, 60)]:          # same grid, 1.5x (whole maps), 3x
        want = torch.nn.functional.interpolate(prob[None], size=size, mode='bilinear',
                                               align_corners=False)[0] > 0.2
        assert torch.equal(upsample_threshold(prob, prob > 0.2, size, 0.2), want)
    empty = torch.zeros(0, 16, 20)
    assert upsample_threshold(empty, empty > 0.2, (32, 40), 0.2).shape == (0, 32, 40)
