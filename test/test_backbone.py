"""ResNet trunks, frozen batch norm, weight loading and the P3..P7 feature pyramid."""

import io
import pickle

import pytest
import torch
from torch import nn

from panoptic_ros.errors import PanopticError
from panoptic_ros.models.backbones.norm import FrozenBatchNorm2d
from panoptic_ros.models.backbones.resnet import build_resnet
from panoptic_ros.models.necks.fpn import FPN

# torchvision's published totals (11,689,512 / 21,797,672 / 25,557,032) minus the classifier:
# fc has 512 * 1000 + 1000 = 513,000 parameters for 18/34 and 2048 * 1000 + 1000 = 2,049,000
# for 50.
TRUNK_PARAMS = {18: 11_689_512 - 513_000, 34: 21_797_672 - 513_000, 50: 25_557_032 - 2_049_000}
CHANNELS = {18: (64, 128, 256, 512), 34: (64, 128, 256, 512), 50: (256, 512, 1024, 2048)}


@pytest.fixture(scope='module')
def models():
    """One randomly initialised, eval-mode trunk per depth, shared to keep the file fast."""
    torch.manual_seed(0)
    return {d: build_resnet(d).eval() for d in (18, 34, 50)}


def _trainable_size(state_dict):
    """Entries torchvision counts as parameters: conv weights and BN weight/bias."""
    return sum(v.numel() for k, v in state_dict.items()
               if k.rsplit('.', 1)[-1] in ('weight', 'bias'))


@pytest.mark.parametrize('depth', [18, 34, 50])
def test_parameter_counts_equal_torchvision(depth, models):
    assert TRUNK_PARAMS == {18: 11_176_512, 34: 21_284_672, 50: 23_508_032}
    frozen = models[depth]
    assert _trainable_size(frozen.state_dict()) == TRUNK_PARAMS[depth]
    # With frozen BN the affine terms are buffers, so parameters are exactly the conv weights.
    conv = sum(m.weight.numel() for m in frozen.modules() if isinstance(m, nn.Conv2d))
    assert sum(p.numel() for p in frozen.parameters()) == conv
    live = build_resnet(depth, frozen_bn=False)
    assert sum(p.numel() for p in live.parameters()) == TRUNK_PARAMS[depth]
    assert _trainable_size(live.state_dict()) == TRUNK_PARAMS[depth]
    assert set(live.state_dict()) - set(frozen.state_dict()) == {
        k for k in live.state_dict() if k.endswith('num_batches_tracked')}


@pytest.mark.parametrize('depth', [18, 34, 50])
def test_module_names_follow_torchvision(depth, models):
    keys = set(models[depth].state_dict())
    assert {'conv1.weight', 'bn1.weight', 'bn1.bias', 'bn1.running_mean', 'bn1.running_var',
            'layer1.0.conv1.weight', 'layer2.0.downsample.0.weight',
            'layer2.0.downsample.1.running_var', 'layer4.1.bn2.bias'} <= keys
    assert not any(k.startswith('fc.') for k in keys)
    assert ('layer1.0.conv3.weight' in keys) == (depth == 50)
    # v1.5 bottleneck: the stride sits on the 3x3 conv, not the first 1x1.
    if depth == 50:
        block = models[depth].layer2[0]
        assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)


@pytest.mark.parametrize('depth', [18, 34, 50])
@pytest.mark.parametrize('size', [(128, 256), (100, 180)])
def test_output_shapes_and_strides(depth, size, models):
    model = models[depth]
    h, w = size
    assert model.out_channels == dict(zip(('c2', 'c3', 'c4', 'c5'), CHANNELS[depth]))
    assert model.strides == {'c2': 4, 'c3': 8, 'c4': 16, 'c5': 32}
    with torch.no_grad():
        out = model(torch.randn(1, 3, h, w))
    assert list(out) == ['c2', 'c3', 'c4', 'c5']
    for key, stride in model.strides.items():
        assert out[key].dtype == torch.float32
        assert out[key].shape == (1, model.out_channels[key], -(-h // stride), -(-w // stride))

    fpn = FPN(model.out_channels, out_channels=64).eval()
    with torch.no_grad():
        levels = fpn(out)           # c2 is there too: the FPN reads c3..c5
    assert fpn.strides == (8, 16, 32, 64, 128)
    assert [tuple(p.shape) for p in levels] == [
        (1, 64, -(-h // s), -(-w // s)) for s in fpn.strides]
    assert all(torch.isfinite(p).all() for p in levels)


def test_fpn_top_down_path_and_init():
    torch.manual_seed(0)
    fpn = FPN({'c3': 8, 'c4': 16, 'c5': 32}, out_channels=16)
    assert fpn.strides == (8, 16, 32, 64, 128)
    for m in fpn.modules():
        if isinstance(m, nn.Conv2d):
            assert torch.count_nonzero(m.bias) == 0
            # kaiming_uniform(a=1): U(-b, b) with b = sqrt(3 / fan_in).
            bound = (3 / m.weight[0].numel()) ** 0.5
            assert m.weight.abs().max() <= bound
    feats = {'c3': torch.randn(2, 8, 13, 23), 'c4': torch.randn(2, 16, 7, 12),
             'c5': torch.randn(2, 32, 4, 6)}
    base = fpn(feats)
    # C5 reaches P3 through the top-down path; C3 reaches neither P4 nor the coarser levels.
    changed5 = fpn({**feats, 'c5': torch.randn(2, 32, 4, 6)})
    assert not torch.allclose(base[0], changed5[0])
    changed3 = fpn({**feats, 'c3': torch.randn(2, 8, 13, 23)})
    assert not torch.allclose(base[0], changed3[0])
    for a, b in zip(base[1:], changed3[1:]):
        assert torch.equal(a, b)
    with pytest.raises(PanopticError, match='c4'):
        FPN({'c3': 8, 'c5': 32})


@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # the TorchScript-based exporter
def test_fpn_exports_to_onnx_with_odd_sizes():
    ort = pytest.importorskip('onnxruntime')

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = build_resnet(18)
            self.fpn = FPN(self.backbone.out_channels, out_channels=32)

        def forward(self, x):
            return tuple(self.fpn(self.backbone(x)))

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(1, 3, 100, 180)
    buf = io.BytesIO()
    torch.onnx.export(net, (x,), buf, dynamo=False, opset_version=17)
    session = ort.InferenceSession(buf.getvalue(), providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = net(x)
    for g, w in zip(got, want):
        assert g.shape == tuple(w.shape)
        assert torch.allclose(torch.from_numpy(g), w, atol=1e-4, rtol=1e-4)


def test_frozen_batch_norm_matches_batch_norm_in_eval_mode():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(7, eps=1e-5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.1, 3.0)
    bn.num_batches_tracked.fill_(123)
    bn.eval()
    frozen = FrozenBatchNorm2d(7)
    frozen.load_state_dict(bn.state_dict())  # strict, with num_batches_tracked in it
    assert list(frozen.parameters()) == []
    x = torch.randn(3, 7, 5, 9)
    torch.testing.assert_close(frozen(x), bn(x), atol=1e-6, rtol=1e-5)
    frozen.train()
    torch.testing.assert_close(frozen(x), bn(x), atol=1e-6, rtol=1e-5)


def test_saved_weights_reload_into_a_fresh_model(tmp_path, models):
    path = tmp_path / 'r18.pth'
    torch.save(models[18].state_dict(), path)
    torch.manual_seed(1)
    fresh = build_resnet(18, weights=str(path)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        want, got = models[18](x), fresh(x)
    for key in want:
        assert torch.equal(want[key], got[key])


@pytest.mark.parametrize('frozen_bn', [True, False])
def test_torchvision_style_checkpoint_loads(tmp_path, frozen_bn):
    """fc.* (the classifier), num_batches_tracked and a DataParallel 'module.' prefix."""
    torch.manual_seed(0)
    source = build_resnet(18, frozen_bn=False)
    with torch.no_grad():
        for m in source.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    source.eval()
    state = dict(source.state_dict())
    assert any(k.endswith('num_batches_tracked') for k in state)
    state['fc.weight'] = torch.randn(1000, 512)
    state['fc.bias'] = torch.randn(1000)
    plain = tmp_path / 'tv.pth'
    torch.save(state, plain)
    wrapped = tmp_path / 'dp.pth'
    torch.save({'module.' + k: v for k, v in state.items()}, wrapped)

    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = source(x)
        for path in (plain, wrapped):
            model = build_resnet(18, weights=path, frozen_bn=frozen_bn).eval()
            got = model(x)
            for key in want:
                # Frozen BN folds the statistics into one scale and shift: rounding differs.
                torch.testing.assert_close(got[key], want[key], atol=1e-4, rtol=1e-4)
    # Plain load_state_dict accepts a torchvision state dict as well (strict).
    build_resnet(18, frozen_bn=frozen_bn).load_state_dict(state)


def test_checkpoint_from_frozen_model_loads_into_live_batch_norm(tmp_path, models):
    path = tmp_path / 'frozen.pth'
    torch.save(models[18].state_dict(), path)  # no num_batches_tracked keys
    live = build_resnet(18, weights=path, frozen_bn=False).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(live(x)['c5'], models[18](x)['c5'])


def test_mismatched_checkpoints_are_refused_naming_file_and_keys(tmp_path, models):
    r18 = tmp_path / 'resnet18.pth'
    torch.save(models[18].state_dict(), r18)
    with pytest.raises(PanopticError, match=r'resnet18\.pth') as info:
        build_resnet(34, weights=r18)
    assert 'missing' in str(info.value) and 'layer1.2.conv1.weight' in str(info.value)

    r50 = tmp_path / 'resnet50.pth'
    torch.save(models[50].state_dict(), r50)
    with pytest.raises(PanopticError, match=r'resnet50\.pth') as info:
        build_resnet(18, weights=r50)
    message = str(info.value)
    assert 'unexpected' in message and 'ResNet-18' in message
    assert len(message) < 1500  # only the first few keys are listed

    state = dict(models[18].state_dict())
    state['conv1.weight'] = torch.zeros(64, 3, 3, 3)
    bad_shape = tmp_path / 'bad_shape.pth'
    torch.save(state, bad_shape)
    with pytest.raises(PanopticError, match=r'bad_shape\.pth.*conv1\.weight'):
        build_resnet(18, weights=bad_shape)


def test_missing_or_unreadable_files_are_refused(tmp_path):
    missing = tmp_path / 'nowhere.pth'
    with pytest.raises(PanopticError, match='nowhere.pth'):
        build_resnet(18, weights=missing)
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint')
    with pytest.raises(PanopticError, match='garbage.pth'):
        build_resnet(18, weights=garbage)
    not_a_dict = tmp_path / 'tensor.pth'
    torch.save(torch.zeros(3), not_a_dict)
    with pytest.raises(PanopticError, match='tensor.pth'):
        build_resnet(18, weights=not_a_dict)


class _Payload:
    """Unpickling this creates a file: it must never happen when loading weights."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_arbitrary_pickles_are_never_unpickled(tmp_path):
    marker = tmp_path / 'executed'
    evil = tmp_path / 'evil.pth'
    torch.save({'conv1.weight': torch.zeros(1), 'x': _Payload(str(marker))}, evil)
    plain = tmp_path / 'plain.pkl'
    with open(plain, 'wb') as f:
        pickle.dump(_Payload(str(marker)), f, protocol=2)
    for path in (evil, plain):
        with pytest.raises(PanopticError, match=path.name):
            build_resnet(18, weights=path)
    assert not marker.exists()


def test_unknown_depth_lists_valid_depths():
    with pytest.raises(PanopticError, match=r'\[18, 34, 50\].*101'):
        build_resnet(101)


def test_frozen_stem_and_batch_norm_get_no_gradient():
    torch.manual_seed(0)
    model = build_resnet(18)  # frozen_bn=True, freeze_stem=True
    model.train()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    names = {n for n, _ in model.named_parameters()}
    assert not any('bn' in n or 'downsample.1' in n for n in names)
    stats = {k: v.clone() for k, v in model.state_dict().items() if 'running' in k}
    out = model(torch.randn(2, 3, 64, 64))
    sum(v.square().mean() for v in out.values()).backward()
    assert not model.conv1.weight.requires_grad and model.conv1.weight.grad is None
    for name, p in model.named_parameters():
        if name.startswith('layer'):
            assert p.requires_grad and p.grad is not None, name
    assert all(p.grad.abs().sum() > 0 for p in model.layer1.parameters())
    # Training mode does not touch the frozen statistics.
    for k, v in model.state_dict().items():
        if k in stats:
            assert torch.equal(v, stats[k]), k


def test_unfrozen_stem_and_live_batch_norm_train():
    torch.manual_seed(0)
    model = build_resnet(18, frozen_bn=False, freeze_stem=False).train()
    out = model(torch.randn(2, 3, 64, 64))
    sum(v.mean() for v in out.values()).backward()
    assert model.conv1.weight.grad is not None and model.bn1.weight.grad is not None
    assert model.layer1[0].bn1.weight.grad is not None
    stem_frozen = build_resnet(18, frozen_bn=False)
    assert not stem_frozen.bn1.weight.requires_grad and not stem_frozen.conv1.weight.requires_grad
    assert stem_frozen.layer1[0].bn1.weight.requires_grad
