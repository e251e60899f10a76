"""RoIAlign of OANet: against a loop-by-loop reference, FPN levels, gradients, ONNX export."""

from __future__ import annotations

import io
import math

import pytest
import torch

from panoptic_ros.models.oanet.roi_align import multilevel_roi_align, roi_align, roi_levels

STRIDES = (4, 8, 16, 32)


def _bilinear(fmap: list[list[float]], y: float, x: float) -> float:
    """RoIAlign's bilinear sample of one [H][W] map (0 more than a cell outside)."""
    h, w = len(fmap), len(fmap[0])
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = math.floor(y), math.floor(x)
    if y_low >= h - 1:
        y_low = y_high = h - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= w - 1:
        x_low = x_high = w - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    return ((1 - ly) * (1 - lx) * fmap[y_low][x_low] + (1 - ly) * lx * fmap[y_low][x_high]
            + ly * (1 - lx) * fmap[y_high][x_low] + ly * lx * fmap[y_high][x_high])


def reference_roi_align(feature: torch.Tensor, rois: torch.Tensor, out: int, scale: float,
                        ratio: int, aligned: bool) -> torch.Tensor:
    """The RoIAlign definition, one RoI, channel, cell and sample at a time (float64)."""
    fmaps = feature.double().tolist()
    result = torch.zeros(len(rois), feature.shape[1], out, out, dtype=torch.float64)
    offset = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois.double().tolist()):
        x_start, y_start = x1 * scale - offset, y1 * scale - offset
        roi_w, roi_h = (x2 - x1) * scale, (y2 - y1) * scale
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_w, bin_h = roi_w / out, roi_h / out
        for ch, fmap in enumerate(fmaps[int(b)]):
            for ph in range(out):
                for pw in range(out):
                    total = 0.0
                    for iy in range(ratio):
                        y = y_start + ph * bin_h + (iy + 0.5) * bin_h / ratio
                        for ix in range(ratio):
                            x = x_start + pw * bin_w + (ix + 0.5) * bin_w / ratio
                            total += _bilinear(fmap, y, x)
                    result[k, ch, ph, pw] = total / ratio ** 2
    return result


def random_rois(gen: torch.Generator, num: int, batch: int, height: float,
                width: float) -> torch.Tensor:
    """[num, 5] RoIs over ``batch`` images of height x width pixels: a third of them smaller
    than a pixel, many sticking out of the image."""
    size = torch.rand(num, 2, generator=gen) * torch.tensor([width, height]) * 0.8
    size[: num // 3] = torch.rand(num // 3, 2, generator=gen) * 0.9 + 0.05
    corner = (torch.rand(num, 2, generator=gen) * 1.4 - 0.3) * torch.tensor([width, height])
    index = torch.randint(0, batch, (num, 1), generator=gen).float()
    return torch.cat([index, corner, corner + size], dim=1)


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('ratio', [1, 2])
@pytest.mark.parametrize('stride', [4, 8])
def test_roi_align_matches_the_reference(aligned, ratio, stride):
    gen = torch.Generator().manual_seed(stride * 10 + ratio + 2 * aligned)
    feature = torch.randn(3, 2, 7, 9, generator=gen)
    rois = random_rois(gen, 15, 3, 7 * stride, 9 * stride)
    got = roi_align(feature, rois, 3, 1.0 / stride, sampling_ratio=ratio, aligned=aligned)
    want = reference_roi_align(feature, rois, 3, 1.0 / stride, ratio, aligned)
    assert got.shape == (15, 2, 3, 3) and got.dtype == torch.float32
    assert (got.double() - want).abs().max() < 1e-5


def test_roi_align_of_a_linear_ramp():
    # bilinear sampling reproduces a linear map inside the image, so every cell is the ramp at
    # the mean of its samples: the bin centre
    ys, xs = torch.meshgrid(torch.arange(10.0), torch.arange(12.0), indexing='ij')
    feature = torch.stack([torch.zeros(2, 10, 12), torch.stack([2 * xs - 3 * ys + 1, -xs])])
    rois = torch.tensor([[1.0, 8.0, 10.0, 32.0, 26.0]])       # stride 4: x 1.5..7.5, y 2..6
    got = roi_align(feature, rois, 3, 0.25, sampling_ratio=2, aligned=True)
    cx = torch.tensor([2.5, 4.5, 6.5])
    cy = torch.tensor([2.0 + 2 / 3, 4.0, 5.0 + 1 / 3])
    want = torch.stack([2 * cx[None, :] - 3 * cy[:, None] + 1, -cx[None, :].expand(3, 3)])
    assert torch.allclose(got[0], want, atol=1e-5)


def test_roi_align_edge_cases():
    feature = torch.randn(1, 2, 6, 6)
    assert roi_align(feature, torch.zeros(0, 5), 4, 0.25).shape == (0, 2, 4, 4)
    far = torch.tensor([[0.0, 200.0, 200.0, 300.0, 300.0]])
    assert torch.all(roi_align(feature, far, 2, 0.25) == 0)
    with pytest.raises(ValueError, match='sampling_ratio'):
        roi_align(feature, far, 2, 0.25, sampling_ratio=0)
    full = roi_align(feature, far * 0.1, 2, 0.25)
    for dtype in (torch.float16, torch.bfloat16):
        low = roi_align(feature.to(dtype), far * 0.1, 2, 0.25)
        assert low.dtype == dtype and torch.allclose(low.float(), full, atol=5e-2)


def test_roi_levels():
    def box(side_w: float, side_h: float) -> list[float]:
        return [10.0, 20.0, 10.0 + side_w, 20.0 + side_h]

    boxes = torch.tensor([box(224, 224), box(112, 112), box(448, 448), box(56, 56),
                          box(2, 3), box(0, 0), box(5000, 4000), box(112, 448), box(223, 224)])
    levels = roi_levels(boxes, STRIDES)
    assert levels.dtype == torch.int64
    assert levels.tolist() == [2, 1, 3, 0, 0, 0, 3, 2, 1]
    assert roi_levels(boxes, (8, 16), canonical_size=112.0, canonical_level=3).tolist() == [
        1, 0, 1, 0, 0, 0, 1, 1, 0]
    with pytest.raises(ValueError, match='powers of two'):
        roi_levels(boxes, (4, 16))


def _pyramid(gen: torch.Generator, batch: int, size: int) -> list[torch.Tensor]:
    return [torch.randn(batch, 2, size // s, size // s, generator=gen) for s in STRIDES]


def _pyramid_rois(gen: torch.Generator, batch: int, size: int) -> torch.Tensor:
    sides = torch.tensor([6.0, 30.0, 60.0, 120.0, 150.0, 230.0, 300.0, 440.0, 460.0, 700.0])
    centre = torch.rand(len(sides), 2, generator=gen) * size
    aspect = torch.rand(len(sides), 1, generator=gen) + 0.5
    half = torch.stack([sides * aspect[:, 0], sides / aspect[:, 0]], dim=1) / 2
    index = torch.arange(len(sides))[:, None].float() % batch
    return torch.cat([index, centre - half, centre + half], dim=1)


def test_multilevel_static_and_dynamic_match_the_reference():
    gen = torch.Generator().manual_seed(3)
    features, rois = _pyramid(gen, 2, 128), _pyramid_rois(gen, 2, 128)
    levels = roi_levels(rois[:, 1:], STRIDES)
    assert set(levels.tolist()) == {0, 1, 2, 3}
    dynamic = multilevel_roi_align(features, STRIDES, rois, 4, static=False)
    static = multilevel_roi_align(features, STRIDES, rois, 4, static=True)
    want = torch.cat([reference_roi_align(features[lv], rois[k:k + 1], 4, 1.0 / STRIDES[lv], 2,
                                          True) for k, lv in enumerate(levels.tolist())])
    assert dynamic.shape == static.shape == (len(rois), 2, 4, 4)
    assert torch.allclose(dynamic, static, atol=1e-6)
    assert (static.double() - want).abs().max() < 1e-5


def test_gradients_reach_the_sampled_features():
    feature = torch.zeros(1, 1, 16, 16, requires_grad=True)
    rois = torch.tensor([[0.0, 9.0, 8.0, 25.0, 20.0]])   # stride 4: x 1.75..5.75, y 1.5..4.5
    roi_align(feature, rois, 2, 0.25).sum().backward()
    grad = feature.grad[0, 0]
    # samples at x 2.25..5.25 and y 1.875..4.125; the 4 cells' weights sum to 1 each
    assert torch.all(grad[1:6, 2:7] > 0) and grad.sum().item() == pytest.approx(4.0)
    assert torch.all(grad[0] == 0) and torch.all(grad[6:] == 0)
    assert torch.all(grad[:, :2] == 0) and torch.all(grad[:, 7:] == 0)

    rois = _pyramid_rois(torch.Generator().manual_seed(4), 2, 64)
    grads = []
    for static in (False, True):
        features = [f.requires_grad_() for f in _pyramid(torch.Generator().manual_seed(5), 2, 64)]
        pooled = multilevel_roi_align(features, STRIDES, rois, 3, static=static)
        (pooled * torch.arange(pooled.numel()).reshape(pooled.shape)).sum().backward()
        grads.append([f.grad for f in features])
    for dynamic, static in zip(*grads):
        assert dynamic.abs().sum() > 0 and torch.allclose(dynamic, static, atol=1e-5)


class _Pooler(torch.nn.Module):
    def forward(self, p2, p3, p4, p5, rois):
        return multilevel_roi_align([p2, p3, p4, p5], STRIDES, rois, 4, static=True)


def test_onnx_export_with_static_shapes_matches_onnxruntime():
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    from panoptic_ros.export.onnx_export import graph_ops, supported_tensorrt_ops

    gen = torch.Generator().manual_seed(6)
    names = ['p2', 'p3', 'p4', 'p5', 'rois']
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(_Pooler().eval(), (*_pyramid(gen, 2, 128), _pyramid_rois(gen, 2, 128)),
                          buf, input_names=names, output_names=['pooled'], opset_version=17,
                          do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    assert 'GridSample' in graph_ops(proto) and not graph_ops(proto) - supported_tensorrt_ops()
    # new inputs of the same shapes: nothing of the export's example may be baked in
    inputs = (*_pyramid(gen, 2, 128), _pyramid_rois(gen, 2, 128))
    session = ort.InferenceSession(buf.getvalue(), providers=['CPUExecutionProvider'])
    (got,) = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})
    want = multilevel_roi_align(list(inputs[:4]), STRIDES, inputs[4], 4, static=False)
    assert got.shape == (10, 2, 4, 4)
    assert torch.allclose(torch.from_numpy(got), want, atol=1e-4)
