"""ONNX export, the engines behind one interface, TensorRT's parts that run here, eval CLI.

The export, parity and card tests run for every bundled model (``bundled_models()``: one per
architecture that ships one), through ``--model NAME`` as a user would.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from panoptic_ros import cli
from panoptic_ros.engines import create_engine
from panoptic_ros.errors import PanopticError
from panoptic_ros.export.onnx_export import export_onnx, graph_ops, supported_tensorrt_ops
from panoptic_ros.export.tensorrt import engine_key
from panoptic_ros.inference import Predictor
from panoptic_ros.datasets.cityscapes import CityscapesDataset
from panoptic_ros.synth.writer import write_dataset
from panoptic_ros.weights import bundled_models, load_model, resolve_model

DEFAULT = resolve_model()
BUNDLED = sorted(bundled_models())


def _tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.fixture(scope='module', params=BUNDLED)
def bundled(request):
    """Name and weights file of a bundled model."""
    return request.param, resolve_model(request.param)


@pytest.fixture(scope='module')
def val_data(tmp_path_factory):
    """Synthetic val images at 512x1024 (the bundled models' evaluation size), from a seed no
    training run used."""
    root = tmp_path_factory.mktemp('val')
    write_dataset(root, 'val', num=4, height=512, width=1024, seed=2031, workers=1,
                  progress=False)
    return root


@pytest.fixture(scope='module')
def onnx_file(bundled, tmp_path_factory):
    """``panoptic export --model NAME --format onnx`` (checker, ONNX Runtime, op list)."""
    name, weights = bundled
    path = tmp_path_factory.mktemp('onnx') / f'{name}.onnx'
    assert cli.main(['export', '--model', name, '--format', 'onnx', '--out', str(path)]) == 0
    import onnx
    return path, onnx.load(str(path))


def test_onnx_graph_is_static_and_uses_only_tensorrt_ops(bundled, onnx_file):
    path, proto = onnx_file
    model, spec, _ = load_model(bundled[1])
    assert proto.opset_import[0].version >= 17
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, *spec.input_size]                # static shape
    assert [o.name for o in proto.graph.output] == list(model.output_names)
    unsupported = graph_ops(proto) - supported_tensorrt_ops()
    assert not unsupported, f'ops TensorRT cannot parse: {unsupported}'
    # TensorRT needs TopK's K as a constant: every K is an initializer or a Constant node
    consts = {i.name for i in proto.graph.initializer} | {
        o for n in proto.graph.node if n.op_type == 'Constant' for o in n.output}
    assert all(n.input[1] in consts for n in proto.graph.node if n.op_type == 'TopK')
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta['panoptic_ros.card'])['classes'][0] == 'road'


def test_onnxruntime_matches_torch(bundled, onnx_file, val_data):
    """Probabilities and scores within 1e-4 (detection scores compared sorted: their order
    among equal scores is free) and identical panoptic maps."""
    from panoptic_ros.engines.onnxruntime_engine import OnnxRuntimeEngine

    model, spec, _ = load_model(bundled[1])
    ort_engine = OnnxRuntimeEngine(onnx_file[0])
    torch_engine, _, _ = create_engine('torch', bundled[1])
    ds = CityscapesDataset(val_data, 'val')
    p_torch, p_ort = Predictor(torch_engine, spec), Predictor(ort_engine, spec)
    for i in range(len(ds)):
        image = ds[i].image
        x = torch.from_numpy(image).permute(2, 0, 1)[None]
        a, b = torch_engine(x), ort_engine(x)
        assert set(a) == set(b) == set(model.output_names)
        # IO binding (outputs written into torch tensors) gives exactly what a plain run does
        plain = ort_engine.session.run(None, {ort_engine.input_name: x.float().numpy()})
        for (name, _, _, _), value in zip(ort_engine.outputs, plain):
            assert b[name].dtype == torch.from_numpy(value).dtype, name
            assert torch.equal(b[name], torch.from_numpy(value)), name
        for k in (k for k in model.output_names if k.endswith(('_prob', '_scores'))):
            ta, tb = a[k].float(), b[k].float()
            if k == 'cand_scores':
                ta, tb = ta.sort(descending=True).values, tb.sort(descending=True).values
            assert torch.allclose(ta, tb, atol=1e-4), k
        ra, rb = p_torch([image])[0], p_ort([image])[0]
        assert torch.equal(ra.panoptic, rb.panoptic), ds[i].name
        assert torch.equal(ra.segment_ids, rb.segment_ids)


def test_engine_factory_errors():
    with pytest.raises(PanopticError, match="unknown engine 'openvino'"):
        create_engine('openvino', DEFAULT)
    with pytest.raises(PanopticError, match='precision must be fp32 or fp16'):
        create_engine('torch', DEFAULT, precision='int4')


@pytest.mark.skipif(_tensorrt_available(), reason='TensorRT is installed: the build test runs')
def test_tensorrt_missing_is_a_clear_error(tmp_path, capsys):
    code = cli.main(['export', '--format', 'tensorrt', '--out', str(tmp_path / 'm.plan')])
    assert code == 2
    assert 'needs NVIDIA TensorRT' in capsys.readouterr().err


@pytest.mark.skipif(not _tensorrt_available(),
                    reason='TensorRT libraries and a CUDA GPU are not available here (they '
                    'cannot be installed in this environment)')
def test_tensorrt_engine_matches_torch(bundled, val_data, tmp_path):
    trt_engine, spec, _ = create_engine('tensorrt', bundled[1], device='cuda',
                                        cache_dir=tmp_path)
    torch_engine, _, _ = create_engine('torch', bundled[1], device='cuda')
    image = CityscapesDataset(val_data, 'val')[0].image
    x = torch.from_numpy(image).permute(2, 0, 1)[None].cuda()
    a, b = torch_engine(x), trt_engine(x)
    assert torch.allclose(a['semantic_prob'], b['semantic_prob'], atol=1e-3)
    # a second build with the same key comes from the cache
    plan = sorted(tmp_path.glob('*.plan'))
    create_engine('tensorrt', bundled[1], device='cuda', cache_dir=tmp_path)
    assert sorted(tmp_path.glob('*.plan')) == plan


def test_a_damaged_onnx_cache_entry_is_rebuilt_not_loaded(tmp_path, caplog):
    """A cache entry cut short (a full disk, a killed copy) or changed fails its checksum and is
    exported again; the engine then loads the rebuilt file."""
    from panoptic_ros.export.artifacts import cached_onnx, file_sha256

    path = cached_onnx(DEFAULT, cache_dir=tmp_path)
    seal = path.with_name(path.name + '.sha256')
    assert seal.read_text().strip() == file_sha256(path)
    good = path.read_bytes()
    path.write_bytes(good[:len(good) // 2])                   # truncated
    with caplog.at_level('WARNING', logger='panoptic_ros'):
        again = cached_onnx(DEFAULT, cache_dir=tmp_path)
    assert again == path and 'fails its checksum' in caplog.text
    assert file_sha256(path) == seal.read_text().strip()
    engine, _, _ = create_engine('onnxruntime', DEFAULT, cache_dir=tmp_path)
    out = engine(torch.zeros(1, 3, *engine.input_size))
    assert set(out) == set(engine.output_names)
    seal.unlink()                                             # an entry without a seal
    caplog.clear()
    with caplog.at_level('WARNING', logger='panoptic_ros'):
        cached_onnx(DEFAULT, cache_dir=tmp_path)
    assert 'has no checksum' in caplog.text and seal.is_file()


def test_engine_cache_key_covers_every_part():
    base = ('10.3', 'H100', (1, 3, 256, 512), 'fp16', 'abc')
    keys = {engine_key(*base)}
    for i, other in enumerate(('10.4', 'A100', (1, 3, 512, 1024), 'fp32', 'abd')):
        changed = list(base)
        changed[i] = other
        keys.add(engine_key(*changed))
    assert len(keys) == 6


def test_eval_cli_agrees_with_panoptic_pq_on_its_predictions(bundled, val_data, tmp_path):
    out, pred = tmp_path / 'results.json', tmp_path / 'pred'
    assert cli.main(['eval', '--model', bundled[0], '--data', str(val_data), '--out', str(out),
                     '--predictions', str(pred), '--quiet']) == 0
    results = json.loads(out.read_text())
    assert 0 <= results['miou'] <= 1 and results['meta']['images'] == 4
    assert set(results) >= {'All', 'Things', 'Stuff', 'per_class', 'miou'}
    gt = val_data / 'gtFine'
    assert cli.main(['pq', '--gt-json', str(gt / 'cityscapes_panoptic_val.json'),
                     '--gt-dir', str(gt / 'cityscapes_panoptic_val'),
                     '--pred-json', str(pred / 'predictions.json'),
                     '--pred-dir', str(pred / 'panoptic'), '--out',
                     str(tmp_path / 'pq.json'), '--workers', '1']) == 0
    official_layout = json.loads((tmp_path / 'pq.json').read_text())
    for group in ('All', 'Things', 'Stuff'):
        assert official_layout[group]['pq'] == pytest.approx(results[group]['pq'], abs=1e-9)
    assert results['All']['pq'] > 0.3                      # a trained model, not noise
    assert results['Things']['pq'] > 0.05      # and it finds objects (10-20 on 200 held-out)


def test_eval_on_onnxruntime_equals_torch(bundled, val_data, tmp_path, monkeypatch):
    """``panoptic eval --engine onnxruntime`` exports into the user's cache and gives the
    torch engine's numbers."""
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    results = {}
    for engine in ('torch', 'onnxruntime'):
        out = tmp_path / f'{engine}.json'
        assert cli.main(['eval', '--model', bundled[0], '--engine', engine, '--data',
                         str(val_data), '--num', '2', '--out', str(out), '--quiet']) == 0
        results[engine] = json.loads(out.read_text())
    assert list((tmp_path / 'cache' / 'panoptic_ros').glob('*.onnx'))
    for group in ('All', 'Things', 'Stuff'):
        assert results['onnxruntime'][group]['pq'] == pytest.approx(
            results['torch'][group]['pq'], abs=1e-6)


def test_commands_default_to_the_bundled_model_and_say_so_when_weights_are_bad(tmp_path,
                                                                              capsys):
    bad = tmp_path / 'bad.safetensors'
    bad.write_text('not weights')
    assert cli.main(['bench', '--weights', str(bad)]) == 2
    assert 'not a safetensors file' in capsys.readouterr().err
    assert DEFAULT.is_file()


def test_model_names_resolve_to_bundled_files_and_unknown_names_are_listed(capsys):
    for name in BUNDLED:
        path = resolve_model(name)
        assert path.is_file() and path.stat().st_size <= 20 * 2 ** 20, path   # 20 MB at most
        assert load_model(path)[1].architecture == name
        assert resolve_model(path.stem) == path            # a file stem works too
    assert cli.main(['bench', '--model', 'no_such_model', '--iters', '1']) == 2
    err = capsys.readouterr().err
    assert "unknown model 'no_such_model'" in err and 'dense_detections' in err


@pytest.mark.parametrize('args, message', [
    (['bench', '--iters', '0'], "argument --iters: expected a positive integer, got '0'"),
    (['eval', '--data', 'x', '--num', 'abc'], "argument --num: expected a positive integer"),
    (['zoo', '--data', 'x', '--num', '-5'], "argument --num: expected a positive integer"),
    (['bench', '--warmup', '-1'], "argument --warmup: expected an integer >= 0, got '-1'"),
])
def test_counts_and_sizes_out_of_range_are_refused_by_the_parser(args, message, capsys):
    """``panoptic bench --iters 0`` used to end in an IndexError from the statistics."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_bundled_model_reproduces_its_card_on_fresh_val_data(bundled, tmp_path):
    """The card's PQ (200 held-out images) within 2 points on 200 images of another seed."""
    from panoptic_ros.weights import read_card

    card = read_card(bundled[1])
    write_dataset(tmp_path, 'val', num=200, height=512, width=1024, seed=2026, workers=2,
                  progress=False)
    out = tmp_path / 'r.json'
    assert cli.main(['eval', '--model', bundled[0], '--data', str(tmp_path), '--out', str(out),
                     '--quiet']) == 0
    pq = json.loads(out.read_text())['All']['pq'] * 100
    assert abs(pq - card['metrics']['pq']) <= 2.0, (pq, card['metrics'])


def test_zoo_table_lists_every_bundled_model_and_keeps_the_page(val_data, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    page = tmp_path / 'models.md'
    page.write_text('# Models\n\nintro\n\n<!-- zoo:begin -->\nold table\n<!-- zoo:end -->\n\n'
                    '## Ablations\n\nkept\n')
    assert cli.main(['zoo', '--data', str(val_data), '--num', '2', '--iters', '1',
                     '--warmup', '0', '--image-size', '256', '512', '--out', str(page),
                     '--json', str(tmp_path / 'zoo.json')]) == 0
    text = page.read_text()
    assert text.startswith('# Models\n\nintro\n') and text.endswith('## Ablations\n\nkept\n')
    assert 'old table' not in text
    rows = json.loads((tmp_path / 'zoo.json').read_text())
    assert sorted(r['model'] for r in rows) == BUNDLED
    for r in rows:
        assert f'| `{r["model"]}` |' in text
        assert r['images'] == 2 and 0 <= r['pq']['All'] <= 100
        assert all(r['latency_ms'][e]['inference'] > 0 for e in ('torch', 'onnxruntime'))
