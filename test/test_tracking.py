"""The instance tracker on hand-made frames: ids follow moving objects, survive short gaps,
respect classes; greedy assignment against brute force; STQ with and without tracking."""

import itertools

import numpy as np
import pytest
import torch

from panoptic_ros.evaluation.video import STQAccumulator
from panoptic_ros.labels import cityscapes
from panoptic_ros.models.result import grid_result
from panoptic_ros.tracking import InstanceTracker, TrackerConfig, greedy_match

LABELS = cityscapes()
IS_THING = torch.tensor(LABELS.is_thing)
ROAD, CAR, PERSON = (LABELS.names.index(n) for n in ('road', 'car', 'person'))


def result_of(objects, h=16, w=32):
    """A result on an ``h x w`` grid of road with ``objects``: ``(class, y, x, size)``
    squares, numbered 1.. in the given order."""
    sem = torch.full((h, w), ROAD)
    inst = torch.zeros(h, w, dtype=torch.long)
    for i, (c, y, x, s) in enumerate(objects, start=1):
        sem[y:y + s, x:x + s] = c
        inst[y:y + s, x:x + s] = i
    prob = torch.nn.functional.one_hot(sem, 19).permute(2, 0, 1).float()
    return grid_result(sem, inst, torch.ones(len(objects)), prob, IS_THING, min_stuff_area=0,
                       void_id=255, label_divisor=1000, out_size=(h, w))


def _tracks(tracker, res):
    """``{instance id in the frame: track id}``."""
    ids = tracker.update(res)
    return {int(i): int(t) for i, t, th in zip(res.segment_instance_ids, ids,
                                                 res.segment_is_thing) if th}


def test_a_moving_car_keeps_its_id_and_a_newcomer_gets_a_new_one():
    tr = InstanceTracker(TrackerConfig(iou_threshold=0.3))
    seen = []
    for t in range(10):
        objects = [(CAR, 4, 2 + t, 4)]              # 1 cell a frame: IoU 12/20 = 0.6
        if t >= 3:
            objects.insert(0, (CAR, 10, 20, 3))     # listed first: its frame id is 1
        seen.append(_tracks(tr, result_of(objects)))
    assert all(s[len(s)] == 1 for s in seen)        # the first car is always track 1
    assert all(s[1] == 2 for s in seen[3:])         # the newcomer is track 2 throughout


def test_short_gaps_keep_the_id_and_long_ones_do_not():
    for gap, same in ((3, True), (7, False)):
        tr = InstanceTracker(TrackerConfig(max_age=5))
        first = _tracks(tr, result_of([(CAR, 4, 4, 4)]))[1]
        for _ in range(gap):
            assert _tracks(tr, result_of([])) == {}
        again = _tracks(tr, result_of([(CAR, 4, 4, 4)]))[1]
        assert (again == first) is same, gap


def test_classes_never_share_a_track_and_stuff_gets_zero():
    tr = InstanceTracker()
    car = _tracks(tr, result_of([(CAR, 4, 4, 4)]))[1]
    res = result_of([(PERSON, 4, 4, 4)])            # exactly where the car was
    ids = tr.update(res)
    assert int(ids[res.segment_is_thing][0]) != car
    assert ids[~res.segment_is_thing].tolist() == [0]


def test_a_new_grid_size_starts_afresh():
    tr = InstanceTracker()
    a = _tracks(tr, result_of([(CAR, 4, 4, 4)]))[1]
    b = _tracks(tr, result_of([(CAR, 4, 4, 4)], h=8, w=16))[1]
    assert b != a and tr.ids.tolist() == [b]


def _sequential_greedy(iou, thr):
    iou = iou.clone()
    match = [-1] * iou.shape[0]
    while iou.numel() and float(iou.max()) >= thr:
        i, k = divmod(int(iou.argmax()), iou.shape[1])
        match[i] = k
        iou[i, :] = -1
        iou[:, k] = -1
    return match


def test_greedy_match_equals_sorted_greedy_and_optimal_at_half():
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        n, k = (int(v) for v in torch.randint(1, 6, (2,), generator=g))
        iou = torch.rand(n, k, generator=g)
        for thr in (0.1, 0.5):
            assert greedy_match(iou, thr).tolist() == _sequential_greedy(iou, thr), trial
    # disjoint masks: above 0.5 the greedy matching is the maximum-IoU one
    for trial in range(50):
        cur = torch.randint(0, 5, (60,), generator=g)          # 4 disjoint masks + background
        prev = torch.randint(0, 5, (60,), generator=g)
        cur[:30] = prev[:30]                                   # half the cells agree
        a = torch.stack([cur == i for i in range(1, 5)]).float()
        b = torch.stack([prev == i for i in range(1, 5)]).float()
        inter = a @ b.T
        iou = inter / (a.sum(1)[:, None] + b.sum(1)[None] - inter).clamp(min=1)
        m = greedy_match(iou, 0.5)
        best = max(sum(float(iou[i, p[i]]) for i in range(4) if iou[i, p[i]] >= 0.5)
                   for p in itertools.permutations(range(4)))
        got = sum(float(iou[i, m[i]]) for i in range(4) if m[i] >= 0)
        assert got == pytest.approx(best), trial


def test_tracking_raises_association_quality_over_per_frame_ids():
    """Two cars drive past each other for 8 frames; per-frame ids number them left to right
    (so they swap when they cross), the tracker follows each. AQ from STQ: 1 with tracking."""
    stq_frame, stq_track = STQAccumulator(LABELS), STQAccumulator(LABELS)
    tr = InstanceTracker(TrackerConfig(iou_threshold=0.3))
    for t in range(8):
        a, b = (CAR, 2, 4 + 2 * t, 4), (CAR, 9, 22 - 2 * t, 4)  # 2 cells a frame: IoU 1/3
        gt = np.full((16, 32), ROAD * 1000)
        gt[2:6, 4 + 2 * t:8 + 2 * t] = CAR * 1000 + 1
        gt[9:13, 22 - 2 * t:26 - 2 * t] = CAR * 1000 + 2
        objects = sorted([a, b], key=lambda o: o[2])             # per-frame: left first
        res = result_of(objects)
        per_frame = res.panoptic.numpy()
        ids = tr.update(res)
        tracked = per_frame.copy()
        for inst, tid, th in zip(res.segment_instance_ids, ids, res.segment_is_thing):
            if th:
                tracked[res.instance.numpy() == int(inst)] = CAR * 1000 + int(tid)
        stq_frame.add(0, gt, per_frame)
        stq_track.add(0, gt, tracked)
    frame_aq, track_aq = stq_frame.summarize()['aq'], stq_track.summarize()['aq']
    assert track_aq == pytest.approx(1.0) and frame_aq < 0.6, (frame_aq, track_aq)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match='iou_threshold'):
        TrackerConfig(iou_threshold=0)
    with pytest.raises(ValueError, match='max_age'):
        TrackerConfig(max_age=-1)


def test_motion_prediction_keeps_an_accelerating_car():
    """A 4x4 car moving 2, 2, 3, 3, 4, 4 cells a frame: from 3 cells on, its last mask
    overlaps the new one by IoU 1/7, under the threshold; moved by the velocity of its last
    two matches, by 3/5 or more."""
    steps = [0, 2, 2, 3, 3, 4, 4]
    xs = np.cumsum(steps)
    for motion in (False, True):
        tr = InstanceTracker(TrackerConfig(iou_threshold=0.3, predict_motion=motion))
        ids = [_tracks(tr, result_of([(CAR, 4, int(x), 4)], w=40))[1] for x in xs]
        assert (len(set(ids)) == 1) is motion, (motion, ids)
