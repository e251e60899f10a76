"""Recipes, the training command (loss falls, interrupted runs resume exactly) and weights."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from panoptic_ros.config import load_recipe
from panoptic_ros.errors import PanopticError
from panoptic_ros.synth.writer import write_dataset
from panoptic_ros.training import loop
from panoptic_ros.training.checkpoint import load_checkpoint
from panoptic_ros.models.backbones import get_backbone
from panoptic_ros import cli
from panoptic_ros.weights import load_model, read_card, save_weights

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / 'config' / 'models').glob('*.yaml'))

TINY = {
    'model': {'architecture': 'dense_detections', 'labels': 'cityscapes',
              'input_size': [128, 256],
              'params': {'backbone': 'resnet18', 'fpn_channels': 32, 'tower_convs': 1},
              'postprocess': {'min_stuff_area': 32}},
    'train': {'steps': 8, 'batch_size': 2, 'optimizer': 'adamw', 'lr': 0.002,
              'warmup_steps': 0, 'crop': [128, 256], 'scale': [1.0, 1.0], 'workers': 0,
              'checkpoint_every': 4, 'val_every': 0, 'val_images': 2, 'log_every': 2},
    'data': {'format': 'cityscapes'},
}


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny')
    write_dataset(root, 'train', num=2, height=128, width=256, seed=3, workers=1,
                  progress=False)
    write_dataset(root, 'val', num=2, height=128, width=256, seed=4, workers=1,
                  progress=False)
    return root


def _recipe(tmp_path, **train):
    d = {**TINY, 'train': {**TINY['train'], **train}}
    path = tmp_path / 'tiny.yaml'
    path.write_text(yaml.safe_dump(d))
    return load_recipe(path)


@pytest.mark.parametrize('path', RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_loads_and_names_its_model(path):
    recipe = load_recipe(path)
    # <architecture>_<backbone>_<dataset>_<size>[.<stage>].yaml
    arch, backbone, dataset, size = path.stem.split('.')[0].rsplit('_', 3)
    assert recipe.model.architecture == arch
    assert get_backbone(recipe.model.params['backbone']).short == backbone
    assert size == 'x'.join(map(str, recipe.model.input_size))
    kw = recipe.model.model_kwargs()
    assert kw['num_classes'] == recipe.model.label_set().num_classes
    recipe.model.postprocessor()        # post-processing arguments are valid
    recipe.model.objective(**recipe.train.objective)


def test_bad_recipes_fail_with_what_was_expected(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text(yaml.safe_dump({**TINY, 'train': {**TINY['train'], 'lr_sheduler': 1}}))
    with pytest.raises(PanopticError, match=r"unknown keys \['lr_sheduler'\]"):
        load_recipe(bad)
    bad.write_text(yaml.safe_dump({**TINY, 'model': {**TINY['model'], 'input_size': [128]}}))
    with pytest.raises(PanopticError, match=r'input_size must be \[height, width\]'):
        load_recipe(bad)
    bad.write_text('model: [unclosed')
    with pytest.raises(PanopticError, match=r'not valid YAML \(line 1, column 17\): expected'):
        load_recipe(bad)
    for key, value, expected in (('steps', 'many', r'train\.steps must be a number \(int\)'),
                                 ('lr', '1e-3', r'train\.lr must be a number \(float\)'),
                                 ('amp', 'yes please', r'train\.amp must be true or false'),
                                 ('crop', [64], r'train\.crop must be a list of 2 numbers'),
                                 ('lr_milestones', [10, 'x'], r'train\.lr_milestones must be a '
                                  r'list of numbers')):
        bad.write_text(yaml.safe_dump({**TINY, 'train': {**TINY['train'], key: value}}))
        with pytest.raises(PanopticError, match=expected) as err:
            load_recipe(bad)
        assert '\n' not in str(err.value) and str(bad) in str(err.value)
    with pytest.raises(PanopticError, match='cannot read config'):
        load_recipe(tmp_path / 'missing.yaml')
    bad.write_text(yaml.safe_dump({**TINY, 'model': {**TINY['model'],
                                                      'params': {'fpn_chanels': 8}}}))
    with pytest.raises(PanopticError, match='bad config arguments'):
        load_recipe(bad).model.build()


def _batch_loss(recipe, model, data_root):
    """Loss of ``model`` (train mode, no update) on the run's first batch."""
    from panoptic_ros.datasets.transforms import training_transforms

    objective = recipe.model.objective(**recipe.train.objective)
    ds = loop.TrainingSet(loop.open_dataset(recipe.data, data_root, 'train', None),
                          training_transforms(recipe.train.crop, recipe.train.scale),
                          objective, recipe.train.seed)
    images, targets = loop.collate([ds[0], ds[1]])
    model.train()
    with torch.no_grad():
        return float(objective(model(images), targets)['total'])


def test_tiny_training_run_learns(tiny_data, tmp_path):
    recipe = _recipe(tmp_path)
    summary = loop.train(recipe, tiny_data, tmp_path / 'run', progress=False)
    assert summary['steps'] == 8
    assert (tmp_path / 'run' / 'summary.json').is_file()
    assert any((tmp_path / 'run' / 'tensorboard').iterdir())
    torch.manual_seed(recipe.train.seed)
    initial = _batch_loss(recipe, recipe.model.build(), tiny_data)
    trained, spec, card = load_model(tmp_path / 'run' / 'model.safetensors')
    final = _batch_loss(recipe, trained, tiny_data)
    assert final < 0.6 * initial, (initial, final)
    assert spec == recipe.model and card['training']['steps'] == 8
    assert card['classes'][0] == 'road'
    # the card carries the learning curve (validation at the end here) and packages with
    # thresholds set after training, which every later load uses
    assert [h['step'] for h in card['training']['history']] == [8]
    eval_json = tmp_path / 'eval.json'
    assert cli.main(['eval', '--weights', str(tmp_path / 'run' / 'model.safetensors'),
                     '--data', str(tiny_data), '--out', str(eval_json), '--quiet']) == 0
    packed = tmp_path / 'packed.safetensors'
    assert cli.main(['card', '--weights', str(tmp_path / 'run' / 'model.safetensors'),
                     '--out', str(packed), '--fp16', '--postprocess', 'score_threshold=0.25']) == 0
    assert cli.main(['card', '--weights', str(packed), '--eval', str(eval_json)]) == 2
    assert read_card(packed)['spec'].postprocess['score_threshold'] == 0.25
    assert cli.main(['card', '--weights', str(packed), '--postprocess', 'colour=red']) == 2
    # model arguments that hold no weights can be set too; ones that change the weights cannot
    assert cli.main(['card', '--weights', str(packed), '--param', 'pre_nms_topk=300']) == 0
    assert read_card(packed)['spec'].params['pre_nms_topk'] == 300
    assert load_model(packed)[0].pre_nms_topk == 300
    assert cli.main(['card', '--weights', str(packed), '--param', 'fpn_channels=64']) == 2
    assert read_card(packed)['spec'].params['fpn_channels'] == 32
    md_eval = tmp_path / 'eval_packed.json'
    assert cli.main(['eval', '--weights', str(packed), '--data', str(tiny_data), '--out',
                     str(md_eval), '--quiet']) == 0
    assert cli.main(['card', '--weights', str(packed), '--eval', str(md_eval)]) == 0
    md = packed.with_suffix('.md').read_text()
    assert '## Learning curve' in md and '| 8 |' in md and 's per step of 2 images' in md
    assert '"score_threshold": 0.25' in md


def test_a_later_stage_starts_from_an_earlier_run(tiny_data, tmp_path):
    """train.init_weights: stage 2 starts from stage 1's weights (with lr 0 it keeps its
    parameters exactly); weights that do not fit the model are refused with what is wrong."""
    first = _recipe(tmp_path)
    loop.train(first, tiny_data, tmp_path / 'one', progress=False)
    stage1 = tmp_path / 'one' / 'model.safetensors'
    for source in (stage1, tmp_path / 'one' / 'checkpoints' / 'last.pt'):
        second = _recipe(tmp_path, init_weights=str(source), lr=0.0, steps=2)
        out = tmp_path / f'two_{source.suffix[1:]}'
        loop.train(second, tiny_data, out, progress=False)
        a = dict(load_model(stage1)[0].named_parameters())       # (batch-norm statistics
        b = dict(load_model(out / 'model.safetensors')[0].named_parameters())  # still move)
        assert a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())
    other = {**TINY['model'], 'params': {**TINY['model']['params'], 'fpn_channels': 64}}
    path = tmp_path / 'other.yaml'
    path.write_text(yaml.safe_dump({**TINY, 'model': other, 'train': {
        **TINY['train'], 'init_weights': str(stage1)}}))
    with pytest.raises(PanopticError, match='does not fit this recipe.s model.*wrong shape'):
        loop.train(load_recipe(path), tiny_data, tmp_path / 'three', progress=False)


def test_learning_rate_schedules():
    """Warm-up, step drops and the poly decay of PanoNet's recipe (lr x (1 - t/T)^0.9)."""
    from panoptic_ros.config import TrainSpec

    spec = TrainSpec.from_dict({'steps': 100, 'batch_size': 1, 'lr': 1.0, 'warmup_steps': 10,
                                'lr_milestones': [50], 'lr_gamma': 0.5})
    f = loop._lr_factor(spec)
    assert [f(0), f(9), f(49), f(50)] == pytest.approx([0.1, 1.0, 1.0, 0.5])
    poly = loop._lr_factor(TrainSpec.from_dict({'steps': 100, 'batch_size': 1, 'lr': 1.0,
                                                'warmup_steps': 0, 'lr_poly_power': 0.9}))
    assert [poly(0), poly(50), poly(100)] == pytest.approx([1.0, 0.5 ** 0.9, 0.0])
    with pytest.raises(PanopticError, match='sgd, adamw or adadelta'):
        TrainSpec.from_dict({'steps': 1, 'batch_size': 1, 'lr': 1.0, 'optimizer': 'adam'})


def test_init_map_starts_part_of_a_model_from_an_earlier_run(tiny_data, tmp_path):
    """train.init_map: only the mapped prefixes come from the file (renamed); everything else
    keeps the recipe's own initialisation (with lr 0 both stay exactly)."""
    loop.train(_recipe(tmp_path), tiny_data, tmp_path / 'one', progress=False)
    stage1 = tmp_path / 'one' / 'model.safetensors'
    loop.train(_recipe(tmp_path, lr=0.0, steps=2), tiny_data, tmp_path / 'fresh',
               progress=False)
    part = _recipe(tmp_path, lr=0.0, steps=2, init_weights=str(stage1),
                   init_map={'backbone.': 'backbone.'})
    loop.train(part, tiny_data, tmp_path / 'part', progress=False)
    a = dict(load_model(stage1)[0].named_parameters())
    fresh = dict(load_model(tmp_path / 'fresh' / 'model.safetensors')[0].named_parameters())
    b = dict(load_model(tmp_path / 'part' / 'model.safetensors')[0].named_parameters())
    for k, v in b.items():
        want = a[k] if k.startswith('backbone.') else fresh[k]
        assert torch.equal(v, want), k
    assert any(not torch.equal(a[k], fresh[k]) for k in a if not k.startswith('backbone.'))
    with pytest.raises(PanopticError, match="no tensors under 'trunk.'"):
        loop.train(_recipe(tmp_path, init_weights=str(stage1), init_map={'backbone.': 'trunk.'}),
                   tiny_data, tmp_path / 'bad', progress=False)


def test_interrupted_run_resumes_exactly(tiny_data, tmp_path, monkeypatch):
    recipe = _recipe(tmp_path, checkpoint_every=100)     # only the interrupt writes one
    loop.train(recipe, tiny_data, tmp_path / 'straight', progress=False)

    original = loop.TrainingSet.__getitem__

    def interrupt_at_step_3(self, g):                     # Ctrl-C while loading step 3
        if g >= 3 * recipe.train.batch_size:
            raise KeyboardInterrupt
        return original(self, g)
    monkeypatch.setattr(loop.TrainingSet, '__getitem__', interrupt_at_step_3)
    with pytest.raises(PanopticError, match='interrupted at step 3'):
        loop.train(recipe, tiny_data, tmp_path / 'resumed', progress=False)
    assert load_checkpoint(tmp_path / 'resumed' / 'checkpoints' / 'last.pt')['step'] == 3
    monkeypatch.setattr(loop.TrainingSet, '__getitem__', original)
    with pytest.raises(PanopticError, match='pass --resume'):
        loop.train(recipe, tiny_data, tmp_path / 'resumed', progress=False)
    loop.train(recipe, tiny_data, tmp_path / 'resumed', resume=True, progress=False)

    a = load_checkpoint(tmp_path / 'straight' / 'checkpoints' / 'last.pt')
    b = load_checkpoint(tmp_path / 'resumed' / 'checkpoints' / 'last.pt')
    assert a['step'] == b['step'] == 8
    for k in a['model']:
        assert torch.equal(a['model'][k], b['model'][k]), k
    assert a['optimizer']['state'][0]['exp_avg'].equal(b['optimizer']['state'][0]['exp_avg'])
    assert a['scheduler'] == b['scheduler']


def test_a_full_disk_stops_training_clearly_and_the_last_checkpoint_resumes(
        tiny_data, tmp_path, monkeypatch, capsys):
    """The disk fills while a checkpoint is written: ``panoptic train`` stops with one line
    naming the file and the reason, the previous checkpoint stays valid, and ``--resume``
    continues from it once there is room. The full disk is simulated (fsync of the third
    atomic write raises ENOSPC): these tests run as root, for whom no folder is read-only, and
    cannot mount a small file system."""
    import errno

    from panoptic_ros import fileio

    recipe = tmp_path / 'tiny.yaml'
    recipe.write_text(yaml.safe_dump({**TINY, 'train': {**TINY['train'], 'checkpoint_every': 2}}))
    real_fsync, calls = fileio.os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 3:                   # checkpoints at steps 2 and 4 fit, step 6 not
            raise OSError(errno.ENOSPC, 'No space left on device')
        real_fsync(fd)
    monkeypatch.setattr(fileio.os, 'fsync', fsync)
    out = tmp_path / 'run'
    args = ['train', '--config', str(recipe), '--data', str(tiny_data), '--out', str(out),
            '--quiet']
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    ckpt = out / 'checkpoints' / 'last.pt'
    assert f'cannot write {ckpt}: No space left on device; the earlier file is unchanged' in err
    assert 'Traceback' not in err
    assert load_checkpoint(ckpt)['step'] == 4
    assert not [p.name for p in ckpt.parent.iterdir() if p.suffix == '.tmp']
    monkeypatch.setattr(fileio.os, 'fsync', real_fsync)
    assert cli.main(args + ['--resume']) == 0
    assert load_checkpoint(ckpt)['step'] == 8


def test_resume_refuses_a_different_recipe(tiny_data, tmp_path):
    recipe = _recipe(tmp_path, steps=2, checkpoint_every=2)
    loop.train(recipe, tiny_data, tmp_path / 'run', progress=False)
    other = _recipe(tmp_path, steps=4, checkpoint_every=2, lr=0.01)
    with pytest.raises(PanopticError, match='recipe differs'):
        loop.train(other, tiny_data, tmp_path / 'run', resume=True, progress=False)


def test_batches_depend_only_on_seed_and_step(tiny_data):
    from panoptic_ros.training.data import StepSampler

    s = list(StepSampler(0, 4, 2, rank=1, world=2))
    assert s[0] == [2, 3] and s[3] == [14, 15]            # rank 1 takes the second half
    assert list(StepSampler(2, 4, 2, rank=1, world=2)) == s[2:]   # resuming at step 2
    recipe = load_recipe(RECIPES[0])
    ds = loop.TrainingSet(loop.open_dataset({}, tiny_data, 'train', None),
                          lambda s, rng: s, recipe.model.objective(), seed=5)
    epoch0 = sorted(ds.image_index(g) for g in range(len(ds)))
    assert epoch0 == list(range(len(ds)))                 # each image once per epoch


def test_weights_files_fail_clearly(tmp_path):
    with pytest.raises(PanopticError, match='does not exist'):
        read_card(tmp_path / 'none.safetensors')
    junk = tmp_path / 'junk.safetensors'
    junk.write_bytes(b'\x00' * 100)
    with pytest.raises(PanopticError, match='not a safetensors file'):
        read_card(junk)
    from safetensors.torch import save_file
    plain = tmp_path / 'plain.safetensors'
    save_file({'w': torch.zeros(2)}, str(plain))
    with pytest.raises(PanopticError, match='no .panoptic_ros.card. metadata'):
        read_card(plain)
    recipe = load_recipe(RECIPES[-1])
    model = recipe.model.build()
    wrong = tmp_path / 'wrong.safetensors'
    save_weights(wrong, torch.nn.Linear(2, 2), recipe.model, {})
    with pytest.raises(PanopticError, match='does not fit'):
        load_model(wrong)
    good = tmp_path / 'good.safetensors'
    save_weights(good, model, recipe.model, {}, half=True)
    truncated = tmp_path / 'truncated.safetensors'
    truncated.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    with pytest.raises(PanopticError, match='truncated.safetensors'):
        load_model(truncated)
    loaded, _, card = load_model(good)
    assert card['dtype'] == 'float16'
    for k, v in model.state_dict().items():
        expected = v.half().float() if v.is_floating_point() else v
        assert torch.equal(loaded.state_dict()[k], expected), k


@pytest.mark.parametrize('section, key, value, expected', [
    ('postprocess', 'sigma', 'abc', r'model\.postprocess\.sigma must be a number \(float\)'),
    ('postprocess', 'fusion_stride', 2.5, r'model\.postprocess\.fusion_stride must be a '
                                          r'number \(int\)'),
    ('params', 'fpn_channels', 'many', r'model\.params\.fpn_channels must be a number'),
    ('params', 'frozen_bn', 'yes', r'model\.params\.frozen_bn must be true or false'),
])
def test_a_card_with_a_mistyped_field_fails_at_load_naming_it(tmp_path, tiny_data, capsys,
                                                              section, key, value, expected):
    """A weights file whose card holds a value of the wrong type (edited by hand, or written
    by another tool) is refused by ``panoptic eval`` in one line naming the field; before,
    ``sigma: "abc"`` loaded and failed in the middle of the first frame with a TypeError."""
    import dataclasses

    good = _recipe(tmp_path).model
    edited = dataclasses.replace(good, **{section: {**getattr(good, section), key: value}})
    path = tmp_path / 'edited.safetensors'
    save_weights(path, good.build(), edited, {})
    assert cli.main(['eval', '--weights', str(path), '--data', str(tiny_data)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(expected, err), err


@pytest.mark.slow
def test_torchrun_two_processes_train_one_model(tiny_data, tmp_path):
    """DistributedDataParallel over gloo on CPU: two ranks, one run folder, one set of weights."""
    import os
    import subprocess
    import sys

    recipe = _recipe(tmp_path, steps=2, checkpoint_every=2)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}           # the installed package
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node',
         '2', '-m', 'panoptic_ros.cli', 'train', '--config', recipe.path, '--data',
         str(tiny_data), '--out', str(tmp_path / 'ddp'), '--quiet', '--device', 'cpu'],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = load_checkpoint(tmp_path / 'ddp' / 'checkpoints' / 'last.pt')
    assert state['step'] == 2
    model, _, card = load_model(tmp_path / 'ddp' / 'model.safetensors')
    assert card['training']['hardware'].startswith('2 x CPU')
