"""Dense-detections model: registry build, raw outputs, targets, and inference end to end."""

import numpy as np
import pytest
import torch

from panoptic_ros.evaluation.pq import PQAccumulator, SegmentTable
from panoptic_ros.labels import cityscapes
from panoptic_ros.models.dense_detections.oracle import oracle_outputs
from panoptic_ros.models.dense_detections.postprocess import DenseDetectionsPostprocess
from panoptic_ros.models.dense_detections.targets import compute_targets
from panoptic_ros.models.registry import available_models, build_model, register_model
from panoptic_ros.errors import PanopticError

STRIDES = (8, 16, 32, 64, 128)
LABELS = cityscapes()
THING_INDEX = torch.full((19,), -1, dtype=torch.long)
THING_INDEX[LABELS.thing_ids] = torch.arange(8)
THINGS = torch.tensor(LABELS.thing_ids)
IS_THING = torch.tensor(LABELS.is_thing)


def small_model():
    return build_model('dense_detections', num_classes=19, thing_classes=LABELS.thing_ids,
                       backbone='resnet18', fpn_channels=64, tower_convs=2)


def test_registry():
    assert 'dense_detections' in available_models()
    with pytest.raises(PanopticError, match='already registered'):
        register_model('dense_detections', postprocess=dict, objective=dict)(lambda: None)
    with pytest.raises(PanopticError, match="unknown model 'nope'"):
        build_model('nope')
    with pytest.raises(PanopticError, match='bad config arguments'):
        build_model('dense_detections', num_classes=19, thing_classes=[11], colour='red')


def test_raw_output_shapes_and_inference_on_a_random_model():
    torch.manual_seed(0)
    model = small_model().eval()
    image = torch.randint(0, 255, (1, 3, 128, 256), dtype=torch.uint8)
    with torch.no_grad():
        raw = model(image)
    assert [tuple(r.shape) for r in raw['box_reg']] == [
        (1, 4, 16, 32), (1, 4, 8, 16), (1, 4, 4, 8), (1, 4, 2, 4), (1, 4, 1, 2)]
    assert raw['box_cls'][0].shape == (1, 8, 16, 32)
    assert raw['levelness'].shape == (1, 6, 32, 64)
    assert raw['semantic'].shape == (1, 19, 32, 64)
    assert all(torch.all(r >= 0) for r in raw['box_reg'])
    res = DenseDetectionsPostprocess()(model.decode(raw), THINGS, IS_THING, (128, 256))[0]
    assert res.semantic.shape == (128, 256)
    assert int(res.segment_areas.sum()) == int((res.panoptic >= 0).sum())


def test_targets_on_a_real_sample(samples):
    s = samples[0]
    sem, inst = torch.from_numpy(s.semantic.astype(np.int64)), torch.from_numpy(s.instance)
    t = compute_targets(sem, inst, THING_INDEX, STRIDES)
    # every foreground location lies in its instance's box and is on exactly one level
    for i, stride in enumerate(STRIDES):
        fg = t.box_class[i] >= 0
        assert torch.all(t.box[i][:, fg] >= 0)
        m = t.box[i].max(0).values[fg]
        lo, hi = (0, 64, 128, 256, 512, float('inf'))[i:i + 2]
        assert torch.all((m >= lo) & (m <= hi))
        assert torch.all((t.centerness[i][fg] >= 0) & (t.centerness[i][fg] <= 1))  # 0 on box edges
        ys, xs = torch.nonzero(fg, as_tuple=True)
        px = inst[(ys * stride + stride // 2).clamp(max=255), (xs * stride + stride // 2)]
        assert torch.equal(px, t.instance[i][fg])
    assert t.levelness.shape == (64, 128) and t.semantic.shape == (64, 128)
    assert set(t.levelness.unique().tolist()) <= set(range(6))
    assert torch.equal(t.levelness > 0, t.instance_quarter > 0)


def test_inference_from_oracle_outputs_recovers_the_ground_truth(samples):
    """Targets -> perfect raw outputs -> post-processing -> PQ against the ground truth."""
    post = DenseDetectionsPostprocess(min_stuff_area=64)
    model = small_model()
    cats = {c.class_id: {'isthing': int(c.is_thing)} for c in LABELS.classes}
    acc = PQAccumulator(cats)
    for s in samples:
        sem, inst = torch.from_numpy(s.semantic.astype(np.int64)), torch.from_numpy(s.instance)
        t = compute_targets(sem, inst, THING_INDEX, STRIDES)
        raw = oracle_outputs(t, inst, STRIDES, num_things=8, num_classes=19)
        res = post(model.decode(raw), THINGS, IS_THING, s.semantic.shape)[0]
        gt_ids = s.panoptic()
        gt = SegmentTable.build([g.id for g in s.segments], [g.class_id for g in s.segments],
                                [g.iscrowd for g in s.segments])
        pred = SegmentTable.build(res.segment_ids.tolist(), res.segment_classes.tolist())
        acc.add(gt_ids, gt, res.panoptic.numpy(), pred, void=-1)
    r = acc.summarize()
    # Perfect logits still lose what the 1/4 output grid cannot hold (poles, traffic lights,
    # bicycle frames, far persons): measured ceiling at 256x512 on these 4 images is printed
    # by -s; the bounds sit just under it and catch regressions in targets or inference.
    print({g: round(100 * r[g]['pq'], 1) for g in ('All', 'Things', 'Stuff')})
    assert r['All']['pq'] > 0.60, r['All']
    assert r['Things']['pq'] > 0.50, r['Things']
    assert r['Stuff']['pq'] > 0.65, r['Stuff']
    assert r['per_class'][LABELS.names.index('road')]['pq'] > 0.95
    assert r['per_class'][LABELS.names.index('car')]['pq'] > 0.5


def test_semantic_instance_class_recovers_wrongly_classified_detections(samples):
    """Oracle outputs whose detections all carry the wrong class: eq. 5 with the detection's
    class gives their masks no semantic probability (the objects are lost); the semantic
    head's vote (instance_class='semantic') gives them back."""
    model = small_model()
    cats = {c.class_id: {'isthing': int(c.is_thing)} for c in LABELS.classes}
    acc = {k: PQAccumulator(cats) for k in ('detection', 'semantic')}
    for s in samples:
        sem, inst = torch.from_numpy(s.semantic.astype(np.int64)), torch.from_numpy(s.instance)
        t = compute_targets(sem, inst, THING_INDEX, STRIDES)
        out = model.decode(oracle_outputs(t, inst, STRIDES, num_things=8, num_classes=19))
        out['cand_classes'] = (out['cand_classes'] + 1) % 8
        gt = SegmentTable.build([g.id for g in s.segments], [g.class_id for g in s.segments],
                                [g.iscrowd for g in s.segments])
        for mode, a in acc.items():
            res = DenseDetectionsPostprocess(min_stuff_area=64, instance_class=mode)(
                out, THINGS, IS_THING, s.semantic.shape)[0]
            pred = SegmentTable.build(res.segment_ids.tolist(), res.segment_classes.tolist())
            a.add(s.panoptic(), gt, res.panoptic.numpy(), pred, void=-1)
    things = {k: a.summarize()['Things']['pq'] for k, a in acc.items()}
    assert things['detection'] < 0.05, things
    assert things['semantic'] > 0.50, things


def test_instance_class_must_be_known():
    with pytest.raises(ValueError, match='instance_class'):
        DenseDetectionsPostprocess(instance_class='box')
