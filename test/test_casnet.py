"""CASNet: targets and losses on hand-made cases, voting against a direct per-cell loop, seeds,
the network's outputs, and inference end to end from oracle outputs."""

import numpy as np
import pytest
import torch

from panoptic_ros.evaluation.pq import PQAccumulator, SegmentTable
from panoptic_ros.labels import cityscapes
from panoptic_ros.models.casnet.losses import (LossConfig, box_probability_bce, casnet_loss,
                                               common_attribute_l1)
from panoptic_ros.models.casnet.oracle import oracle_outputs
from panoptic_ros.models.casnet.postprocess import CASNetPostprocess
from panoptic_ros.models.casnet.targets import IGNORE, compute_targets
from panoptic_ros.models.casnet.voting import select_seeds, vote
from panoptic_ros.models.geometry import box_iou
from panoptic_ros.models.registry import build_model

LABELS = cityscapes()
THINGS = torch.tensor(LABELS.thing_ids)
IS_THING = torch.tensor(LABELS.is_thing)
CAR, PERSON, ROAD = (LABELS.names.index(n) for n in ('car', 'person', 'road'))


def small_model(**kw):
    return build_model('casnet', num_classes=19, thing_classes=LABELS.thing_ids,
                       backbone='resnet18', neck='fpn', neck_channels=16, head_convs=1,
                       head_channels=16, **kw)


# --------------------------------------------------------------------------- targets

def test_targets_on_a_hand_made_image():
    """A 16x16 image, stride 4: cell (i, j) looks at pixel (2 + 4 j, 2 + 4 i). One car fills
    x 2..9, y 4..11 (box x1, y1, x2, y2 = 2, 4, 10, 12, centre (6, 8)); a crowd of persons
    (thing class, no instance id) fills the bottom-right corner."""
    sem = torch.full((16, 16), ROAD)
    inst = torch.zeros(16, 16, dtype=torch.long)
    sem[4:12, 2:10] = CAR
    inst[4:12, 2:10] = 1
    sem[12:, 12:] = PERSON
    sem[2, 2] = 255                  # void, at the pixel cell (0, 0) looks at
    t = compute_targets(sem, inst, thing_classes=THINGS, stride=4, radius=0.5)
    assert t.distances.shape == (4, 4, 4) and t.box_prob.shape == (8, 4, 4)
    inside = torch.zeros(4, 4, dtype=torch.bool)
    inside[1:3, 0:2] = True          # pixels (2|6, 6|10)
    assert torch.equal(t.instance, inside)
    # cell (1, 0) -> pixel (2, 6): l, t, r, b = 0, 2, 8, 6 px = 0, 0.5, 2, 1.5 strides
    assert t.distances[:, 1, 0].tolist() == [0.0, 0.5, 2.0, 1.5]
    assert t.distances[:, 2, 1].tolist() == [1.0, 1.5, 1.0, 0.5]
    assert float(t.distances[:, ~inside].abs().sum()) == 0
    # centre region radius 0.5 strides = 2 px around (6, 8): pixels (6, 6) and (6, 10)
    car = list(LABELS.thing_ids).index(CAR)
    pos = torch.zeros(8, 4, 4)
    pos[car, 1, 1] = pos[car, 2, 1] = 1
    assert torch.equal(t.box_prob, pos)
    # crowd cell (3, 3) -> pixel (14, 14) and the void pixel are outside eq. 3
    assert not t.valid[3, 3] and not t.valid[0, 0] and int(t.valid.sum()) == 14
    assert t.semantic[2, 2] == IGNORE and t.semantic.shape == (16, 16)


def test_every_instance_gets_a_positive_even_off_its_box_centre():
    """An L-shaped instance whose box centre lies outside it: its cell nearest to the centre
    is the positive."""
    sem = torch.full((32, 32), ROAD)
    inst = torch.zeros(32, 32, dtype=torch.long)
    sem[0:32, 0:4] = CAR
    sem[28:32, 0:32] = CAR
    inst[sem == CAR] = 1
    t = compute_targets(sem, inst, thing_classes=THINGS, stride=4)
    car = list(LABELS.thing_ids).index(CAR)
    assert int(t.box_prob.sum()) >= 1
    assert torch.equal(t.box_prob.sum(0) > 0, t.box_prob[car] > 0)
    assert bool((t.box_prob[car] > 0)[t.instance].any()) and not bool(
        (t.box_prob[car] > 0)[~t.instance].any())


# --------------------------------------------------------------------------- losses

def test_common_attribute_l1_value_and_gradient():
    pred = torch.tensor([[[[1.0, 5.0]], [[2.0, 5.0]], [[3.0, 5.0]], [[4.0, 5.0]]]],
                        requires_grad=True)                          # [1, 4, 1, 2]
    target = torch.zeros(1, 4, 1, 2)
    mask = torch.tensor([[[True, False]]])
    loss = common_attribute_l1(pred, target, mask)
    assert float(loss) == pytest.approx((1 + 2 + 3 + 4) / 4)
    loss.backward()
    assert pred.grad[0, :, 0, 0].tolist() == [0.25] * 4
    assert pred.grad[0, :, 0, 1].tolist() == [0.0] * 4              # not an instance cell
    empty = common_attribute_l1(pred, target, torch.zeros_like(mask))
    assert float(empty) == 0 and empty.requires_grad


def test_box_probability_bce_value_and_weights():
    logits = torch.tensor([[[[0.0, 2.0, -1.0]]]], requires_grad=True)   # [1, 1, 1, 3]
    target = torch.tensor([[[[1.0, 0.0, 0.0]]]])
    valid = torch.tensor([[[True, True, False]]])
    ln2 = np.log(2.0)
    expected = (ln2 + np.log1p(np.exp(2.0))) / 2
    assert float(box_probability_bce(logits, target, valid)) == pytest.approx(expected)
    weighted = box_probability_bce(logits, target, valid, positive_weight=3.0)
    assert float(weighted) == pytest.approx((3 * ln2 + np.log1p(np.exp(2.0))) / 2)
    weighted.backward()
    # d/dx of -3 log sigmoid(x) at 0 is -1.5, of -log(1 - sigmoid(x)) at 2 is sigmoid(2),
    # both over 2 valid cells; the invalid cell gets none
    assert logits.grad[0, 0, 0].tolist() == pytest.approx([-0.75, 0.5 / (1 + np.exp(-2.0)),
                                                           0.0])


def test_total_loss_is_eq_4():
    sem = torch.full((16, 16), ROAD)
    inst = torch.zeros(16, 16, dtype=torch.long)
    sem[4:12, 2:10] = CAR
    inst[4:12, 2:10] = 1
    t = compute_targets(sem, inst, thing_classes=THINGS)
    torch.manual_seed(0)
    raw = {'semantic': torch.randn(1, 19, 4, 4), 'distances': torch.rand(1, 4, 4, 4) * 3,
           'box_logits': torch.randn(1, 8, 4, 4)}
    cfg = LossConfig(semantic_weight=0.5, common_weight=2.0, prob_weight=3.0)
    out = casnet_loss(raw, [t], cfg)
    assert float(out['total']) == pytest.approx(
        0.5 * float(out['semantic']) + 2 * float(out['common']) + 3 * float(out['prob']))
    perfect = casnet_loss(oracle_outputs(t, 19), [t])
    assert float(perfect['common']) == 0 and float(perfect['prob']) < 1e-6


# --------------------------------------------------------------------------- voting

def _loop_vote(cell_boxes, cell_thing, seed_boxes, seed_thing, seed_valid, tie, mode):
    """The rule of section III-C written cell by cell, seed by seed."""
    out = []
    for b, t in zip(cell_boxes.tolist(), cell_thing.tolist()):
        c = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
        cands = []
        for k, (sb, st, ok) in enumerate(zip(seed_boxes.tolist(), seed_thing.tolist(),
                                             seed_valid.tolist())):
            if not ok or st != t:
                continue
            iou = float(box_iou(torch.tensor([b]), torch.tensor([sb]))[0, 0])
            sc = ((sb[0] + sb[2]) / 2, (sb[1] + sb[3]) / 2)
            cands.append((k, iou, (c[0] - sc[0]) ** 2 + (c[1] - sc[1]) ** 2))
        if not cands:
            out.append(-1)
        elif mode == 'centre':
            out.append(min(cands, key=lambda x: (x[2], x[0]))[0])
        else:
            best = max(x[1] for x in cands)
            if best <= 0:
                out.append(-1)
                continue
            near = [x for x in cands if x[1] >= best - tie]
            out.append(min(near, key=lambda x: (x[2], x[0]))[0])
    return torch.tensor(out)


def _random_boxes(g, n, size=64.0):
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 3 + 1
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize('mode', ['iou', 'centre'])
def test_voting_matches_a_direct_loop(mode):
    g = torch.Generator().manual_seed(3)
    for trial in range(5):
        seeds = _random_boxes(g, 12)
        # cells predict jittered copies of seed boxes, and some boxes of their own
        pick = torch.randint(0, 12, (300,), generator=g)
        cells = seeds[pick] + torch.randn(300, 4, generator=g) * 3
        cells[::7] = _random_boxes(g, cells[::7].shape[0])
        cells = torch.cat([cells[:, :2].minimum(cells[:, 2:]), cells[:, :2].maximum(
            cells[:, 2:])], 1)
        cell_thing = torch.randint(0, 3, (300,), generator=g)
        seed_thing = torch.randint(0, 3, (12,), generator=g)
        valid = torch.rand(12, generator=g) > 0.2
        want = _loop_vote(cells, cell_thing, seeds, seed_thing, valid, 0.05, mode)
        for budget in (1 << 22, 50):          # one chunk, and chunks of 4 cells
            got = vote(cells, cell_thing, seeds, seed_thing, valid, tie=0.05, mode=mode,
                       budget=budget)
            assert torch.equal(got, want), (trial, budget)


def test_iou_voting_keeps_a_border_pixel_with_its_own_object():
    """The paper's case for common attributes: a pixel at the edge of a large object, right
    next to a small one. Its box says it belongs to the large object (IoU voting); its box
    centre is nearer the small object's (nearest-centre voting gets it wrong)."""
    big = torch.tensor([0.0, 0.0, 100.0, 40.0])
    small = torch.tensor([96.0, 10.0, 116.0, 30.0])
    seeds = torch.stack([big, small])
    cell = torch.tensor([[1.0, 1.0, 99.0, 39.0]]) + torch.tensor([[30.0, 0.0, 30.0, 0.0]])
    # the cell's box is the big one shifted 30 px right: centre (80, 20), 20 px from the
    # small seed's centre (106, 20) and 30 px from the big seed's (50, 20)
    args = (cell, torch.tensor([0]), seeds, torch.tensor([0, 0]), torch.tensor([True, True]))
    assert vote(*args, mode='iou').tolist() == [0]
    assert vote(*args, mode='centre').tolist() == [1]


def test_seed_selection_thresholds_peaks_and_suppresses():
    prob = torch.zeros(2, 8, 8)
    prob[0, 2, 2], prob[0, 2, 3] = 0.9, 0.8        # one object, two neighbouring cells
    prob[0, 6, 6] = 0.7                            # a second object of that class
    prob[1, 2, 2] = 0.6                            # another class at the same place
    prob[1, 5, 1] = 0.4                            # under the threshold
    boxes = torch.zeros(4, 8, 8)
    boxes[:, 2, 2] = torch.tensor([0.0, 0.0, 20.0, 20.0])
    boxes[:, 2, 3] = torch.tensor([1.0, 0.0, 21.0, 20.0])
    boxes[:, 6, 6] = torch.tensor([20.0, 20.0, 30.0, 30.0])
    boxes[:, 5, 1] = torch.tensor([0.0, 20.0, 8.0, 28.0])
    for kernel in (1, 3):
        s = select_seeds(prob, boxes, k=6, threshold=0.5, nms_iou=0.5, peak_kernel=kernel)
        kept = {(int(t), int(c)) for t, c, v in zip(s['thing'], s['cell'], s['valid']) if v}
        # (0, 2*8+3) is suppressed by NMS (kernel 1) or is not a peak (kernel 3); the other
        # class's seed at the same box is kept
        assert kept == {(0, 2 * 8 + 2), (0, 6 * 8 + 6), (1, 2 * 8 + 2)}, kernel


def test_post_processing_gives_one_id_per_pixel_and_drops_unsupported_seeds():
    """Two touching cars and a seed of a third car no pixel supports."""
    h, w = 8, 16
    sem = torch.full((h, w), ROAD)
    sem[2:6, 1:8] = CAR
    sem[2:6, 8:15] = CAR
    prob = torch.nn.functional.one_hot(sem, 19).permute(2, 0, 1).float()
    boxes = torch.zeros(4, h, w)
    boxes[:, :, :8] = torch.tensor([4.0, 8.0, 32.0, 24.0])[:, None, None]
    boxes[:, :, 8:] = torch.tensor([32.0, 8.0, 60.0, 24.0])[:, None, None]
    car = list(LABELS.thing_ids).index(CAR)
    box_prob = torch.zeros(8, h, w)
    box_prob[car, 4, 4] = box_prob[car, 4, 11] = 0.9
    box_prob[car, 0, 0] = 0.8               # a seed on the road whose box no car cell overlaps
    boxes[:, 0, 0] = torch.tensor([100.0, 100.0, 120.0, 120.0])
    out = {'semantic': sem[None], 'semantic_prob': prob[None], 'box_prob': box_prob[None],
           'boxes': boxes[None]}
    r = CASNetPostprocess(peak_kernel=1)(out, THINGS, IS_THING, (h, w))[0]
    inst = r.instance
    assert inst[2:6, 1:8].unique().numel() == 1 and inst[2:6, 8:15].unique().numel() == 1
    assert int(inst[3, 2]) != int(inst[3, 12])
    assert int(inst.max()) == 2                           # the third seed had no support
    assert int((r.semantic == 255).sum()) == 0            # no holes
    assert sorted(r.segment_classes.tolist()) == sorted([CAR, CAR, ROAD])


# --------------------------------------------------------------------------- network

def test_raw_and_engine_outputs():
    torch.manual_seed(0)
    model = small_model(distance_scale=2.0).eval()
    x = torch.randint(0, 255, (2, 3, 64, 96), dtype=torch.uint8)
    with torch.no_grad():
        raw = model(x)
        out = model.decode(raw)
    assert raw['semantic'].shape == (2, 19, 16, 24)
    assert raw['distances'].shape == (2, 4, 16, 24) and float(raw['distances'].min()) >= 0
    assert raw['box_logits'].shape == (2, 8, 16, 24)
    assert tuple(out) == model.output_names
    # a cell's box contains the pixel the cell looks at, stride-4 units turned into pixels
    b = out['boxes']
    assert torch.allclose(b[0, 0, 3, 5], torch.tensor(2.0 + 5 * 4) - 4 * raw['distances'][0, 0, 3, 5])
    assert torch.allclose(b[0, 3, 3, 5], torch.tensor(2.0 + 3 * 4) + 4 * raw['distances'][0, 3, 3, 5])
    assert torch.allclose(out['semantic_prob'].sum(1), torch.ones(2, 16, 24))
    assert float(out['box_prob'].max()) < 0.05                 # the prior of the box head
    for neck in ('concat', 'fpn'):
        m = build_model('casnet', num_classes=19, thing_classes=LABELS.thing_ids,
                        backbone='resnet18', neck=neck, neck_channels=16, head_convs=0)
        assert m(x.float())['semantic'].shape == (2, 19, 16, 24)


def test_separated_mode_keeps_the_semantic_branch_fixed():
    """Tab. II's separated training: the semantic head on its own trunk, not trained and in
    eval mode while the rest trains."""
    model = small_model(semantic_branch='separate', freeze_semantic=True).train()
    frozen = {n.split('.')[0] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {'semantic_backbone', 'semantic_neck', 'semantic_head'}
    assert not model.semantic_backbone.training and model.backbone.training
    x = torch.randint(0, 255, (1, 3, 64, 96), dtype=torch.uint8)
    raw = model(x)
    (raw['semantic'].sum() + raw['distances'].sum() + raw['box_logits'].sum()).backward()
    assert model.semantic_head[-1].weight.grad is None
    assert model.distance_head[-1].weight.grad is not None
    with pytest.raises(Exception, match='freeze_semantic needs semantic_branch: separate'):
        small_model(freeze_semantic=True)


# --------------------------------------------------------------------------- end to end

def _pq(samples, post):
    model = small_model()
    cats = {c.class_id: {'isthing': int(c.is_thing)} for c in LABELS.classes}
    acc = PQAccumulator(cats)
    for s in samples:
        sem = torch.from_numpy(s.semantic.astype(np.int64))
        inst = torch.from_numpy(s.instance.astype(np.int64))
        t = compute_targets(sem, inst, thing_classes=THINGS)
        res = post(model.decode(oracle_outputs(t, 19)), THINGS, IS_THING, s.semantic.shape)[0]
        gt = SegmentTable.build([g.id for g in s.segments], [g.class_id for g in s.segments],
                                [g.iscrowd for g in s.segments])
        pred = SegmentTable.build(res.segment_ids.tolist(), res.segment_classes.tolist())
        acc.add(s.panoptic(), gt, res.panoptic.numpy(), pred, void=-1)
    return acc.summarize()


def test_inference_from_oracle_outputs_recovers_the_ground_truth(samples):
    """Targets -> perfect stride-4 outputs -> decode -> voting -> PQ.

    Perfect outputs lose what the stride-4 grid cannot hold (thin and few-pixel objects).
    Measured at 256x512 on these 4 images (printed by -s)."""
    r = _pq(samples, CASNetPostprocess(peak_kernel=3))
    centre = _pq(samples, CASNetPostprocess(peak_kernel=3, voting='centre'))
    print({g: round(100 * r[g]['pq'], 1) for g in ('All', 'Things', 'Stuff')},
          'centre voting', {g: round(100 * centre[g]['pq'], 1) for g in ('All', 'Things')})
    assert r['All']['pq'] > 0.60, r['All']
    assert r['Things']['pq'] > 0.45, r['Things']
    assert r['per_class'][LABELS.names.index('car')]['pq'] > 0.65
    assert r['Things']['pq'] >= centre['Things']['pq']
