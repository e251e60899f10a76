"""Every registered architecture, through the registry only: build, raw and engine outputs,
post-processing, one training step, ONNX export with ONNX Runtime parity.

Parametrised over ``available_models()``, so an architecture is covered from the day it
registers; each builds its registry ``small`` configuration. The bundled models are covered by
test_export.py (parametrised over ``bundled_models()``) and test_node.py.
"""

import numpy as np
import pytest
import torch

from panoptic_ros.config import ModelSpec
from panoptic_ros.datasets.cityscapes import CityscapesDataset
from panoptic_ros.export.onnx_export import export_onnx, graph_ops, supported_tensorrt_ops
from panoptic_ros.models.registry import available_models, get_architecture
from panoptic_ros.synth.writer import write_dataset

ARCHITECTURES = available_models()
SIZE = (128, 256)


def _spec(name: str) -> ModelSpec:
    return ModelSpec(name, 'cityscapes', SIZE, get_architecture(name).small,
                     {'min_stuff_area': 32})


@pytest.fixture(scope='module')
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp('arch')
    write_dataset(root, 'val', num=2, height=SIZE[0], width=SIZE[1], seed=21, workers=1,
                  progress=False)
    ds = CityscapesDataset(root, 'val')
    return [ds[i] for i in range(len(ds))]


def _images(samples) -> torch.Tensor:
    return torch.stack([torch.from_numpy(s.image).permute(2, 0, 1) for s in samples])


@pytest.mark.parametrize('name', ARCHITECTURES)
def test_small_model_is_small_and_its_engine_outputs_have_static_shapes(name, samples):
    torch.manual_seed(0)
    model = _spec(name).build().eval()
    assert sum(p.numel() for p in model.parameters()) < 20_000_000
    x = _images(samples)
    with torch.no_grad():
        out = model.infer(x)
        again = model.infer(torch.zeros_like(x))
    assert tuple(out) == tuple(model.output_names)
    for key in model.output_names:
        assert out[key].shape == again[key].shape, key        # shape independent of content
        assert out[key].shape[0] == 2, key
        assert torch.isfinite(out[key].float()).all(), key


@pytest.mark.parametrize('name', ARCHITECTURES)
def test_post_processing_gives_consistent_results_at_any_output_size(name, samples):
    spec = _spec(name)
    torch.manual_seed(0)
    model = spec.build().eval()
    labels = spec.label_set()
    with torch.no_grad():
        out = model.infer(_images(samples))
    post = spec.postprocessor(score_threshold=0.0)
    for size in (SIZE, (200, 333)):
        results = post(out, torch.tensor(labels.thing_ids), torch.tensor(labels.is_thing), size)
        assert len(results) == 2
        for r in results:
            assert tuple(r.semantic.shape) == size and tuple(r.panoptic.shape) == size
            ids, counts = torch.unique(r.panoptic[r.panoptic >= 0], return_counts=True)
            order = torch.argsort(r.segment_ids)
            assert torch.equal(ids.int(), r.segment_ids[order].int())
            assert torch.equal(counts, r.segment_areas[order])
            thing = torch.tensor(labels.is_thing)[r.segment_classes]
            assert torch.equal(thing, r.segment_is_thing)
            assert torch.all((r.segment_instance_ids > 0) == thing)


@pytest.mark.parametrize('name', ARCHITECTURES)
def test_training_steps_lower_the_loss_on_a_batch(name, samples):
    spec = _spec(name)
    torch.manual_seed(0)
    model = spec.build().train()
    objective = spec.objective()
    targets = [objective.targets(torch.from_numpy(s.semantic.astype(np.int64)),
                                 torch.from_numpy(s.instance.astype(np.int64))) for s in samples]
    x = _images(samples)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(6):
        loss = objective(model(x), targets)
        assert torch.isfinite(loss['total']), loss
        opt.zero_grad()
        loss['total'].backward()
        opt.step()
        losses.append(float(loss['total']))
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
@pytest.mark.parametrize('name', ARCHITECTURES)
def test_onnx_export_is_static_tensorrt_parsable_and_matches_torch(name, samples, tmp_path):
    ort = pytest.importorskip('onnxruntime')
    torch.manual_seed(0)
    model = _spec(name).build().eval()
    proto = export_onnx(model, tmp_path / 'm.onnx', height=SIZE[0], width=SIZE[1])
    assert not model.training          # exporting left the caller's model as it was
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [
        1, 3, *SIZE]
    assert [o.name for o in proto.graph.output] == list(model.output_names)
    assert not graph_ops(proto) - supported_tensorrt_ops()
    session = ort.InferenceSession(str(tmp_path / 'm.onnx'), providers=['CPUExecutionProvider'])
    x = _images(samples[:1])
    got = dict(zip(model.output_names,
                   session.run(None, {session.get_inputs()[0].name: x.float().numpy()})))
    with torch.no_grad():
        want = model.infer(x)
    for key in model.output_names:
        w = want[key].numpy()
        if w.dtype.kind in 'iu':
            continue    # indices of near-tied candidates may differ; scores are compared
        np.testing.assert_allclose(np.sort(got[key], axis=None), np.sort(w, axis=None),
                                   atol=1e-3, rtol=1e-3, err_msg=key)
