"""Dense-detections losses: values against direct formulas, gradients, and behaviour."""

import math

import numpy as np
import pytest
import torch

from panoptic_ros.models.dense_detections.losses import (LossConfig, bootstrapped_cross_entropy,
                                                         dense_detections_loss, iou_loss,
                                                         mask_loss, mask_loss_from_maps,
                                                         sigmoid_focal_loss)
from panoptic_ros.models.dense_detections.targets import box_instance_map, compute_targets
from panoptic_ros.models.geometry import instance_boxes
from panoptic_ros.models.dense_detections.oracle import oracle_outputs
from test_dense_detections import STRIDES, THING_INDEX, small_model  # noqa

torch.manual_seed(0)


def test_iou_loss_values_and_gradient():
    same = torch.tensor([[2., 3., 4., 5.]])
    assert iou_loss(same, same).item() == pytest.approx(0.0, abs=1e-6)
    # a 10x10 box vs its left half (5x10): IoU = 50/100 (with the +1 smoothing: 51/101)
    pred, tgt = torch.tensor([[5., 5., 0., 5.]]), torch.tensor([[5., 5., 5., 5.]])
    assert iou_loss(pred, tgt).item() == pytest.approx(-math.log(51 / 101))
    x = torch.rand(6, 4, dtype=torch.double) * 5 + 1
    y = torch.rand(6, 4, dtype=torch.double) * 5 + 1
    assert torch.autograd.gradcheck(lambda a: iou_loss(a, y).sum(), (x.requires_grad_(),))


def test_focal_loss_matches_formula_and_gradient():
    logits = torch.tensor([2.0, -1.0, 0.5])
    t = torch.tensor([1.0, 0.0, 0.0])
    p = torch.sigmoid(logits)
    ref = torch.stack([-0.25 * (1 - p[0]) ** 2 * torch.log(p[0]),
                       -0.75 * p[1] ** 2 * torch.log(1 - p[1]),
                       -0.75 * p[2] ** 2 * torch.log(1 - p[2])])
    assert torch.allclose(sigmoid_focal_loss(logits, t), ref, atol=1e-6)
    x = torch.randn(10, dtype=torch.double, requires_grad=True)
    tt = (torch.rand(10) > 0.5).double()
    assert torch.autograd.gradcheck(lambda a: sigmoid_focal_loss(a, tt).sum(), (x,))


def test_bootstrapped_cross_entropy_takes_the_worst_30_percent():
    logits = torch.randn(1, 3, 4, 5)
    target = torch.randint(0, 3, (1, 4, 5))
    target[0, 0] = 255
    ce = torch.nn.functional.cross_entropy(logits, target, ignore_index=255, reduction='none')
    valid = ce[target != 255]
    k = round(0.3 * valid.numel())
    assert bootstrapped_cross_entropy(logits, target).item() == pytest.approx(
        valid.topk(k).values.mean().item())
    assert bootstrapped_cross_entropy(logits, torch.full_like(target, 255)).item() == 0


def test_weak_targets_use_boxes():
    inst = torch.zeros(20, 20, dtype=torch.long)
    inst[2:10, 2:4] = 1                       # an L shape: its box covers more than its mask
    inst[8:10, 2:12] = 1
    inst[12:18, 12:18] = 2
    boxes = instance_boxes(inst)
    assert boxes[1].tolist() == [2, 2, 12, 10]
    weak = box_instance_map(inst)
    assert weak[3, 8] == 1 and inst[3, 8] == 0
    sem = torch.where(inst > 0, torch.tensor(13), torch.tensor(0))
    t = compute_targets(sem, inst, THING_INDEX, STRIDES, weak=True)
    t_full = compute_targets(sem, inst, THING_INDEX, STRIDES)
    assert (t.levelness > 0).sum() > (t_full.levelness > 0).sum()


def test_total_loss_on_a_model_is_finite_and_backpropagates(samples):
    model = small_model().train()
    s = samples[0]
    image = torch.from_numpy(s.image).permute(2, 0, 1)[None].float()
    t = compute_targets(torch.from_numpy(s.semantic.astype(np.int64)),
                        torch.from_numpy(s.instance), THING_INDEX, STRIDES)
    losses = dense_detections_loss(model(image), [t], STRIDES)
    assert set(losses) == {'box_reg', 'center', 'box_cls', 'levelness', 'semantics', 'mask',
                           'total'}
    assert all(torch.isfinite(v) and v >= 0 for v in losses.values())
    losses['total'].backward()
    grads = [p.grad for p in model.head.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_mask_loss_trains_the_box_regression():
    """Two large objects: gradient steps on the box offsets lower the mask loss.

    (Comparing exact with perturbed boxes says little: beta_j, the query's IoU with its
    target, down-weights poor queries by design.)
    """
    sem = torch.zeros(128, 256, dtype=torch.long)
    inst = torch.zeros(128, 256, dtype=torch.long)
    inst[30:90, 20:100], inst[40:110, 140:230] = 1, 2
    sem[inst > 0] = 13
    t = compute_targets(sem, inst, THING_INDEX, STRIDES)
    raw = oracle_outputs(t, inst, STRIDES, num_things=8, num_classes=19, extend=False)
    raw['box_reg'] = [r.clone().requires_grad_() for r in raw['box_reg']]
    opt = torch.optim.Adam(raw['box_reg'], lr=1.0)
    first = None
    for _ in range(20):
        loss = mask_loss(raw, [t], STRIDES)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for r in raw['box_reg']:
                r.clamp_(min=0)
    assert loss.item() < 0.5 * first
    off = dense_detections_loss(raw, [t], STRIDES, LossConfig(mask_loss=False))
    assert off['mask'] == 0


def test_mask_loss_formula_hand_computed():
    in_mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    in_mask[0, :2, :2] = True                                 # N = 4
    beta = torch.tensor([0.8])
    assert mask_loss_from_maps(in_mask.float(), in_mask, beta) == 0      # perfect
    half = torch.full((1, 4, 4), 0.5)
    # E_FP = 0.5 x 12 outside, E_FN = 0.5 x 4 inside: 0.8 / 4 x 8 = 1.6
    assert mask_loss_from_maps(half, in_mask, beta).item() == pytest.approx(1.6)
