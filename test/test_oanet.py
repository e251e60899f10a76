"""OANet parts on hand-made cases: anchors, box coding, matching and sampling, static NMS
against the exact greedy NMS, mask pasting against grid_sample, targets, mask targets, the
ranking scores of eq. 3, and ranking- vs score-ordered fusion (the paper's occlusion case).
RoIAlign is in test_oanet_roi_align.py; build, training, export and parity of the registered
architecture in test_architectures.py.
"""

import torch
import torch.nn.functional as F

from panoptic_ros.models.geometry import nms
from panoptic_ros.models.oanet.boxes import (decode, encode, flatten_level, level_anchors,
                                             match, sample, static_nms)
from panoptic_ros.models.oanet.losses import mask_targets
from panoptic_ros.models.oanet.model import OANet
from panoptic_ros.models.oanet.paste import paste_masks
from panoptic_ros.models.oanet.postprocess import OANetPostprocess
from panoptic_ros.models.oanet.targets import IGNORE, compute_targets


def test_level_anchors_have_the_size_ratio_and_order_of_the_head_outputs():
    anchors = level_anchors(2, 3, 8, 16.0, (0.5, 1.0, 2.0))
    assert anchors.shape == (2 * 3 * 3, 4)
    w = anchors[:, 2] - anchors[:, 0]
    h = anchors[:, 3] - anchors[:, 1]
    torch.testing.assert_close(w * h, torch.full((18,), 256.0))
    torch.testing.assert_close(h[:3] / w[:3], torch.tensor([0.5, 1.0, 2.0]))
    # (y, x, anchor): entry 3 * (1 * 3 + 2) + 1 is the square anchor of cell (y=1, x=2)
    torch.testing.assert_close(anchors[3 * 5 + 1], torch.tensor([12.0, 4.0, 28.0, 20.0]))
    head = torch.arange(2 * 3 * 3 * 4, dtype=torch.float32).view(1, 3 * 4, 2, 3)
    flat = flatten_level(head, 4)                     # [1, 18, 4]
    assert flat.shape == (1, 18, 4)
    # anchor 1 of cell (1, 2) reads channels 4..7 at (1, 2)
    torch.testing.assert_close(flat[0, 3 * 5 + 1], head[0, 4:8, 1, 2])


def test_box_coding_round_trips_and_matches_hand_computed_deltas():
    ref = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    box = torch.tensor([[5.0, 0.0, 25.0, 20.0]])
    d = encode(box, ref)
    torch.testing.assert_close(d, torch.tensor([[1.0, 0.0, torch.log(torch.tensor(2.0)), 0.0]]))
    torch.testing.assert_close(encode(box, ref, (10, 10, 5, 5)), d * torch.tensor([10, 10, 5, 5]))
    g = torch.Generator().manual_seed(0)
    refs = torch.rand(50, 2, generator=g) * 100
    refs = torch.cat([refs, refs + 1 + torch.rand(50, 2, generator=g) * 50], 1)
    boxes = refs + torch.randn(50, 4, generator=g)
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    for weights in ((1, 1, 1, 1), (10, 10, 5, 5)):
        torch.testing.assert_close(decode(encode(boxes, refs, weights), refs, weights), boxes,
                                   atol=1e-3, rtol=1e-4)
    # huge log-scale deltas are clamped, not overflowing
    assert torch.isfinite(decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), ref)).all()


def test_match_labels_foreground_background_ignored_and_low_quality():
    iou = torch.tensor([[0.8, 0.5, 0.1, 0.0],
                        [0.0, 0.2, 0.25, 0.05]])
    labels, matched = match(iou, 0.7, 0.3, low_quality=False)
    assert labels.tolist() == [1, -1, 0, 0]
    assert matched.tolist()[:2] == [0, 0]
    labels, matched = match(iou, 0.7, 0.3, low_quality=True)
    assert labels.tolist() == [1, -1, 1, 0]           # gt 1's best candidate (0.25)
    assert matched[2] == 1
    labels, _ = match(torch.zeros(0, 4), 0.7, 0.3, low_quality=True)
    assert labels.tolist() == [0, 0, 0, 0]


def test_sample_respects_the_count_and_the_foreground_fraction():
    labels = torch.tensor([1] * 10 + [0] * 100 + [-1] * 5)
    pos, neg = sample(labels, 32, 0.25, torch.Generator().manual_seed(0))
    assert pos.numel() == 8 and neg.numel() == 24
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    assert len(set(pos.tolist())) == 8 and len(set(neg.tolist())) == 24
    pos, neg = sample(torch.tensor([1, 0, 0, -1]), 32, 0.5)
    assert pos.numel() == 1 and neg.numel() == 2      # fewer when there are not enough


def _random_boxes(g, k):
    xy = torch.rand(k, 2, generator=g) * 60
    wh = 5 + torch.rand(k, 2, generator=g) * 30
    return torch.cat([xy, xy + wh], 1)


def test_static_nms_equals_exact_greedy_nms():
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        k = 40
        boxes = _random_boxes(g, k)
        scores = torch.rand(k, generator=g)
        classes = torch.randint(0, 3, (k,), generator=g)
        order = torch.argsort(scores, descending=True)
        boxes, scores, classes = boxes[order], scores[order], classes[order]
        valid = torch.rand(k, generator=g) > 0.1
        want = nms(boxes, scores, classes, 0.5, valid)
        got = static_nms(boxes[None], scores[None], 0.5, rounds=k, classes=classes[None],
                         valid=valid[None])[0]
        assert torch.equal(got, want)


def test_static_nms_settles_a_chain_in_as_many_rounds_as_it_is_long():
    # a suppresses b, b would suppress c, c would suppress d (a chain of length 3)
    boxes = torch.tensor([[0.0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10], [9, 0, 19, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    want = nms(boxes, scores, torch.zeros(4, dtype=torch.long), 0.3)
    assert want.tolist() == [True, False, True, False]
    got = [static_nms(boxes[None], scores[None], 0.3, rounds=r)[0].tolist() for r in (1, 2, 3)]
    assert got[2] == want.tolist()
    assert got[0] != want.tolist()


def test_paste_masks_equals_grid_sample_with_zero_padding():
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(1, 3, 28, 28, generator=g)
    boxes = torch.tensor([[[10.0, 6.0, 70.0, 50.0], [-8.0, 20.0, 30.0, 90.0],
                           [50.0, 50.0, 52.0, 53.0]]])
    h, w, stride = 24, 20, 4
    got = paste_masks(masks, boxes, (h, w), stride)
    ys = torch.arange(h) * stride + stride // 2
    xs = torch.arange(w) * stride + stride // 2
    ref = []
    for d in range(3):
        x1, y1, x2, y2 = boxes[0, d]
        gx = 2 * (xs - x1) / (x2 - x1) - 1
        gy = 2 * (ys - y1) / (y2 - y1) - 1
        grid = torch.stack(torch.meshgrid(gx, gy, indexing='xy'), -1)[None].float()
        ref.append(F.grid_sample(masks[:, d:d + 1], grid, mode='bilinear',
                                 padding_mode='zeros', align_corners=False)[0, 0])
    torch.testing.assert_close(got[0], torch.stack(ref), atol=1e-5, rtol=1e-5)


def test_targets_of_a_hand_made_scene():
    semantic = torch.full((16, 32), 0)            # road
    instance = torch.zeros(16, 32, dtype=torch.long)
    semantic[4:12, 2:10] = 13                     # a car, id 7
    instance[4:12, 2:10] = 7
    semantic[0:8, 20:24] = 11                     # a person, id 3
    instance[0:8, 20:24] = 3
    semantic[12:16, 28:32] = 255                  # void
    t = compute_targets(semantic, instance, thing_classes=torch.tensor([11, 12, 13]))
    order = torch.argsort(t.ids)
    assert t.ids[order].tolist() == [3, 7]
    assert t.classes[order].tolist() == [0, 2]
    torch.testing.assert_close(t.boxes[order], torch.tensor([[20.0, 0, 24, 8], [2, 4, 10, 12]]))
    assert t.semantic.shape == (4, 8)
    assert t.semantic[3, 7] == IGNORE             # cell pixel (30, 14) is void
    assert t.things[1, 1] == 2 and t.things[0, 5] == 0 and t.things[3, 0] == -1
    assert t.cell_ids[1, 1] == 7 and t.cell_ids[0, 5] == 3 and t.cell_ids[3, 0] == 0


def test_mask_targets_crop_the_instance_inside_the_roi():
    instance = torch.zeros(20, 20, dtype=torch.int32)
    instance[0:10, 0:20] = 5                      # the top half
    t = mask_targets(instance, torch.tensor([[0.0, 0.0, 20.0, 20.0], [0.0, 10, 20, 20]]),
                     torch.tensor([5, 5]), size=4)
    assert t[0].tolist() == [[1.0] * 4, [1.0] * 4, [0.0] * 4, [0.0] * 4]
    assert t[1].sum() == 0


def test_ranking_scores_are_the_mean_score_map_over_each_mask():
    torch.manual_seed(0)
    model = OANet(num_classes=4, thing_classes=(2, 3), backbone='resnet18', fpn_channels=8,
                  stuff_channels=8, box_fc=8, mask_convs=0, mask_channels=8).eval()
    masks = (torch.rand(1, 3, 6, 7) > 0.5).float()
    classes = torch.tensor([[0, 1, 1]])
    valid = torch.tensor([[True, True, False]])
    with torch.no_grad():
        score = model.ranking(masks, classes, valid).softmax(1)
        # the module sees the union of the valid masks per class channel
        tensor = torch.zeros(1, 2, 6, 7)
        tensor[0, 0] = masks[0, 0]
        tensor[0, 1] = masks[0, 1]
        torch.testing.assert_close(score, model.srm(tensor).softmax(1))
    for d in range(2):
        c = classes[0, d]
        want = (score[0, c] * masks[0, d]).sum() / masks[0, d].sum()
        got = (torch.einsum('hw,hw->', masks[0, d], score[0, c]) / masks[0, d].sum())
        torch.testing.assert_close(got, want)


def _occlusion_outputs():
    """A confident bus (score 0.95, ranking 0.2) whose mask covers a pedestrian in front of it
    (score 0.7, ranking 0.9): stride-4 grid 16 x 16 of a 64 x 64 image."""
    stuff = torch.zeros(1, 3, 16, 16)
    stuff[0, 0] = 1.0                             # class 0 (stuff) everywhere
    masks = torch.ones(1, 2, 28, 28)
    boxes = torch.tensor([[[0.0, 0.0, 64.0, 64.0], [24.0, 24.0, 40.0, 48.0]]])
    return {'stuff_prob': stuff, 'boxes': boxes, 'scores': torch.tensor([[0.95, 0.7]]),
            'classes': torch.tensor([[1, 0]]), 'masks': masks,
            'rank': torch.tensor([[0.2, 0.9]])}


def test_ranking_order_pastes_the_occluding_person_over_the_bus():
    out = _occlusion_outputs()
    things = torch.tensor([1, 2])                 # thing index 0: person (1), 1: bus (2)
    is_thing = torch.tensor([False, True, True])
    kw = dict(min_stuff_area=0, overlap_threshold=0.5)
    by_rank = OANetPostprocess(order='rank', **kw)(out, things, is_thing, (64, 64))[0]
    by_score = OANetPostprocess(order='score', **kw)(out, things, is_thing, (64, 64))[0]
    person = by_rank.semantic == 1
    assert person[30:44, 26:38].all()              # the person's pixels stay the person's
    assert (by_rank.semantic[:8] == 2).all()       # the bus around it
    assert set(by_rank.segment_classes.tolist()) == {1, 2}
    # detection-score order: the bus takes every pixel and the person is dropped
    assert set(by_score.segment_classes.tolist()) == {2}
    assert (by_score.semantic == 2).all()
