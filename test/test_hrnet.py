"""HRNet trunks: the published sizes, the official module names (so official checkpoints
load), output strides, weight loading and freezing, and CASNet on HRNetV2 end to end."""

import pytest
import torch

from panoptic_ros.errors import PanopticError
from panoptic_ros.models.backbones import build_backbone, get_backbone
from panoptic_ros.models.necks.concat import ConcatNeck


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _seg_head(channels: int, classes: int = 19) -> int:
    """HRNetV2's segmentation head: 1x1 conv + BN over the concatenation, 1x1 to classes."""
    return channels * channels + channels + 2 * channels + channels * classes + classes


@pytest.mark.parametrize('name,width,published', [('hrnet_w18_small', 18, 3.9),
                                                  ('hrnet_w48', 48, 65.9)])
def test_parameter_counts_equal_the_published_ones(name, width, published):
    """HRNet paper (TPAMI), Cityscapes table: HRNetV2-W18-Small-v2 3.9M, HRNetV2-W48 65.9M
    parameters, trunk plus the segmentation head over the 15 W channels."""
    trunk = _params(build_backbone(name))
    assert round((trunk + _seg_head(15 * width)) / 1e6, 1) == published


def test_module_names_follow_the_official_implementation():
    keys = set(build_backbone('hrnet_w18').state_dict())
    for key in ('conv1.weight', 'bn2.running_var', 'layer1.0.downsample.0.weight',
                'layer1.3.conv3.weight', 'transition1.0.0.weight', 'transition1.1.0.0.weight',
                'transition3.3.0.0.weight', 'stage2.0.branches.1.3.bn2.running_var',
                'stage3.3.fuse_layers.0.2.0.weight', 'stage4.2.fuse_layers.3.0.2.0.weight',
                'stage4.2.fuse_layers.3.2.0.1.weight'):
        assert key in keys, key
    assert not any(k.startswith(('stage4.3', 'transition4', 'last_layer')) for k in keys)


@pytest.mark.parametrize('size', [(128, 256), (100, 180)])
def test_four_branches_at_strides_4_to_32(size):
    torch.manual_seed(0)
    m = build_backbone('hrnet_w18_small').eval()
    spec = get_backbone('hrnet_w18_small')
    with torch.no_grad():
        out = m(torch.randn(1, 3, *size))
    for k, s in spec.strides.items():
        assert out[k].shape == (1, spec.channels[k], -(-size[0] // s), -(-size[1] // s)), k
    assert m.out_channels == spec.channels == {'c2': 18, 'c3': 36, 'c4': 72, 'c5': 144}
    neck = ConcatNeck(m.out_channels).eval()
    assert neck(out).shape == (1, 270, -(-size[0] // 4), -(-size[1] // 4))


def test_official_checkpoint_loads_and_wrong_ones_are_refused(tmp_path):
    torch.manual_seed(0)
    src = build_backbone('hrnet_w18_small')
    state = {k: v.clone() for k, v in src.state_dict().items()}
    # an official ImageNet file carries its classification head: ignored
    state['incre_modules.0.0.conv1.weight'] = torch.zeros(32, 18, 1, 1)
    state['classifier.weight'] = torch.zeros(1000, 2048)
    path = tmp_path / 'hrnet.pth'
    torch.save(state, path)
    m = build_backbone('hrnet_w18_small', weights=str(path), frozen_bn=False)
    for k, v in src.state_dict().items():
        assert torch.equal(m.state_dict()[k], v), k
    with pytest.raises(PanopticError, match='does not match hrnet_w48.*wrong shape'):
        build_backbone('hrnet_w48', weights=str(path))


def test_freezing_stops_gradients_of_the_stem_and_early_stages():
    m = build_backbone('hrnet_w18_small', frozen_stages=3)
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert 'conv1.weight' in frozen and 'layer1.0.conv1.weight' in frozen
    assert 'stage2.0.branches.0.0.conv1.weight' in frozen
    assert 'stage3.0.branches.0.0.conv1.weight' not in frozen


def test_casnet_on_hrnetv2_trains_and_exports(tmp_path):
    """The paper's pairing: HRNet branches concatenated at stride 4 (HRNetV2), CASNet heads."""
    from panoptic_ros.export.onnx_export import export_onnx, graph_ops, supported_tensorrt_ops
    from panoptic_ros.labels import cityscapes
    from panoptic_ros.models.registry import build_model

    labels = cityscapes()
    torch.manual_seed(0)
    model = build_model('casnet', num_classes=19, thing_classes=labels.thing_ids,
                        backbone='hrnet_w18_small', neck='concat', head_convs=1,
                        head_channels=16).eval()
    x = torch.randint(0, 255, (1, 3, 128, 256), dtype=torch.uint8)
    with torch.no_grad():
        out = model.infer(x)
    assert out['boxes'].shape == (1, 4, 32, 64) and out['box_prob'].shape == (1, 8, 32, 64)
    onnx_model = export_onnx(model, tmp_path / 'casnet.onnx', height=128, width=256)
    assert graph_ops(onnx_model) <= supported_tensorrt_ops()
