"""STQ and VPQ on hand-computed cases: identity, an id switch, a split track, a missed frame."""

import numpy as np
import pytest

from panoptic_ros.evaluation.video import STQAccumulator, VPQAccumulator
from panoptic_ros.labels import cityscapes

LABELS = cityscapes()
D = 1000
ROAD, CAR = LABELS.names.index('road'), LABELS.names.index('car')


def frame(car_id: int | None, road_where_car: bool = False, split: int | None = None):
    """A 4x8 frame of road with a 2x2 car (4 px) at columns 2-3 of rows 1-2: ``car_id`` its
    id (None: no car, road there); ``split``: the car's right column gets that id."""
    m = np.full((4, 8), ROAD * D, np.int64)
    if car_id is not None:
        m[1:3, 2:4] = CAR * D + car_id
        if split is not None:
            m[1:3, 3] = CAR * D + split
    return m


def _run(gts, preds):
    stq, vpq = STQAccumulator(LABELS), VPQAccumulator(LABELS)
    for g, p in zip(gts, preds):
        stq.add('seq', g, p)
        vpq.add('seq', g, p)
    return stq.summarize(), vpq.summarize()


def test_identity_scores_one():
    gts = [frame(7) for _ in range(4)]
    s, v = _run(gts, [g.copy() for g in gts])
    assert (s['stq'], s['aq'], s['sq'], s['tracks']) == (1.0, 1.0, 1.0, 1)
    assert v['vpq'] == 1.0 and set(v['windows']) == {1, 2, 3, 4}


def test_an_id_switch_halves_association_and_breaks_long_tubes():
    """Track 7 over 4 frames (16 px); predicted id 1 in frames 1-2 and id 2 in frames 3-4.
    AQ = 1/16 (8 * 8/16 + 8 * 8/16) = 0.5; SQ = 1; STQ = sqrt(0.5).
    VPQ: windows of 1 frame are perfect; of 2: the window across the switch has two car
    segments of IoU 1/2 (no match: car TP 2, FP 2, FN 1, PQ 2/3.5); of 3: the larger part
    matches with IoU 2/3 (TP 2 with IoU 4/3, FP 2: PQ 2/3 * 2/3); of 4: IoU 1/2 twice (PQ 0).
    Road is perfect everywhere; PQ of a window size is the mean of car and road."""
    gts = [frame(7) for _ in range(4)]
    preds = [frame(1), frame(1), frame(2), frame(2)]
    s, v = _run(gts, preds)
    assert s['aq'] == pytest.approx(0.5) and s['sq'] == 1.0
    assert s['stq'] == pytest.approx(np.sqrt(0.5))
    car = {1: 1.0, 2: 2 / 3.5, 3: 4 / 9, 4: 0.0}
    for w, pq in car.items():
        assert v['windows'][w]['per_class'][CAR]['pq'] == pytest.approx(pq), w
        assert v['windows'][w]['All']['pq'] == pytest.approx((pq + 1) / 2), w
    assert v['vpq'] == pytest.approx(np.mean([(pq + 1) / 2 for pq in car.values()]))


def test_a_split_track_halves_association():
    """Every frame the car's left column is id 1 and its right column id 2: AQ = 1/12 (6 *
    6/12 + 6 * 6/12) = 0.5 over 3 frames; each half has IoU 1/2 in every window (no match)."""
    gts = [frame(7) for _ in range(3)]
    preds = [frame(1, split=2) for _ in range(3)]
    s, v = _run(gts, preds)
    assert s['aq'] == pytest.approx(0.5) and s['sq'] == 1.0
    assert all(v['windows'][w]['per_class'][CAR]['pq'] == 0 for w in (1, 2, 3))


def test_a_missed_frame():
    """The car is missed (road predicted) in the middle of 3 frames: AQ = 1/12 * 8 * 8/12 =
    4/9; car IoU 8/12, road IoU 84/88 (3 x 28 road px, 4 more predicted)."""
    gts = [frame(7) for _ in range(3)]
    preds = [frame(3), frame(None), frame(3)]
    s, v = _run(gts, preds)
    assert s['aq'] == pytest.approx(4 / 9)
    assert s['sq'] == pytest.approx((8 / 12 + 84 / 88) / 2)
    assert s['stq'] == pytest.approx(np.sqrt(4 / 9 * (8 / 12 + 84 / 88) / 2))
    # windows of 1: two perfect car matches and one miss (RQ 2 / 2.5); windows of 2: car
    # IoU 4/8 in both (no match)
    assert v['windows'][1]['per_class'][CAR]['pq'] == pytest.approx(0.8)
    assert v['windows'][2]['per_class'][CAR]['pq'] == 0


def test_crowd_and_void_are_not_judged():
    """Crowd (car id 0) and void pixels of the ground truth: predictions there count in no
    track; void predicted on a labelled pixel is a miss of its class."""
    g = frame(7)
    g[0, :2] = CAR * D            # crowd
    g[3, 6:] = -1                 # void
    p = frame(7)
    p[0, :2] = CAR * D + 9        # a predicted track on the crowd: ignored
    p[3, 6:] = CAR * D + 9        # on void: part of predicted track 9, which matches nothing
    p[0, 7] = -1                  # void predicted on road
    s, _ = _run([g], [p])
    assert s['aq'] == 1.0 and s['tracks'] == 1
    stq = STQAccumulator(LABELS)
    stq.add(0, g, p)
    assert stq.void_fn[ROAD] == 1


def test_bad_input_is_refused():
    stq = STQAccumulator(LABELS)
    with pytest.raises(ValueError, match='differ in size'):
        stq.add(0, frame(1), frame(1)[:, :4])
    with pytest.raises(ValueError, match='class id'):
        stq.add(0, frame(1), np.full((4, 8), 40 * D))
    with pytest.raises(ValueError, match='windows'):
        VPQAccumulator(LABELS, windows=(0,))


def _switches(gts, preds):
    from panoptic_ros.evaluation.video import IdSwitchCounter

    counter = IdSwitchCounter(LABELS)
    for g, p in zip(gts, preds):
        counter.add('seq', g, p)
    return counter.summarize()


def test_id_switches_count_changes_of_the_matched_id():
    gts = [frame(7) for _ in range(5)]
    assert _switches(gts, [frame(3)] * 5) == {'id_switches': 0, 'tracked_objects': 1,
                                              'per_100': 0.0}
    # 3 3 4 4 3: two switches (away and back)
    r = _switches(gts, [frame(i) for i in (3, 3, 4, 4, 3)])
    assert (r['id_switches'], r['per_100']) == (2, 200.0)


def test_a_missed_frame_or_a_half_mask_is_no_switch():
    gts = [frame(7) for _ in range(3)]
    # missed in frame 1 (road predicted), same id after the gap: no switch
    assert _switches(gts, [frame(3), frame(None), frame(3)])['id_switches'] == 0
    # in frame 1 only half the car carries id 4 (IoU 0.5 is not a match): no switch either
    assert _switches(gts, [frame(3), frame(3, split=4), frame(3)])['id_switches'] == 0
    # an object never matched is not a tracked object
    assert _switches(gts, [frame(None)] * 3)['tracked_objects'] == 0
