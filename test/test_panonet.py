"""PanoNet: mean-shift against scikit-learn, the discriminative loss against a direct loop,
ICNet's static pyramid pooling and shapes, the coordinate input, and inference end to end from
ideal embeddings."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from panoptic_ros.labels import cityscapes
from panoptic_ros.models.backbones.icnet import ICNet, static_pool
from panoptic_ros.models.panonet.losses import discriminative_loss
from panoptic_ros.models.panonet.meanshift import mean_shift
from panoptic_ros.models.panonet.objective import compute_targets
from panoptic_ros.models.panonet.postprocess import PanoNetPostprocess
from panoptic_ros.models.registry import build_model

LABELS = cityscapes()
THINGS = torch.tensor(LABELS.thing_ids)
IS_THING = torch.tensor(LABELS.is_thing)
CAR, ROAD = LABELS.names.index('car'), LABELS.names.index('road')


def _partition(labels: np.ndarray) -> set:
    return {frozenset(np.nonzero(labels == v)[0].tolist()) for v in np.unique(labels)}


def test_mean_shift_matches_scikit_learn_class_by_class():
    """All classes at once, each with its own bandwidth: the same clusters, centres and
    numbering as scikit-learn's MeanShift(bin_seeding=True) run on each class alone."""
    sklearn = pytest.importorskip('sklearn.cluster')
    for seed in range(12):
        rng = np.random.default_rng(seed)
        xs, cs = [], []
        for c in range(3):
            centres = rng.normal(0, 3, (rng.integers(1, 5), 4))
            pts = np.concatenate([m + rng.normal(0, 0.15, (rng.integers(5, 40), 4))
                                  for m in centres])
            xs.append(pts)
            cs.append(np.full(len(pts), c))
        x, cls = np.concatenate(xs), np.concatenate(cs)
        bws = np.array([0.5, 0.7, 1.0])
        labels, centres, centre_cls = mean_shift(torch.from_numpy(x), torch.from_numpy(cls),
                                                 torch.from_numpy(bws))
        for c in range(3):
            ref = sklearn.MeanShift(bandwidth=bws[c], bin_seeding=True).fit(x[cls == c])
            mine = labels.numpy()[cls == c]
            assert np.array_equal(mine - mine.min(), ref.labels_), (seed, c)
            assert np.allclose(centres.numpy()[centre_cls.numpy() == c], ref.cluster_centers_,
                               atol=1e-6), (seed, c)
        # min_bin_freq: seeds only from bins holding that many points
        labels3, _, _ = mean_shift(torch.from_numpy(x), torch.from_numpy(cls),
                                   torch.from_numpy(bws), min_bin_freq=3)
        for c in range(3):
            ref = sklearn.MeanShift(bandwidth=bws[c], bin_seeding=True,
                                    min_bin_freq=3).fit(x[cls == c])
            assert _partition(labels3.numpy()[cls == c]) == _partition(ref.labels_), (seed, c)


def test_mean_shift_with_one_bin_per_point_seeds_from_the_points():
    """scikit-learn's fallback: when binning gives every point its own bin, the points are
    the seeds."""
    sklearn = pytest.importorskip('sklearn.cluster')
    x = np.array([[0.0, 0.0], [3.1, 0.0], [0.0, 3.2], [6.3, 6.1]])
    labels, centres, _ = mean_shift(torch.from_numpy(x), torch.zeros(4, dtype=torch.long),
                                    torch.tensor([1.0]))
    ref = sklearn.MeanShift(bandwidth=1.0, bin_seeding=True).fit(x)
    assert _partition(labels.numpy()) == _partition(ref.labels_)
    assert len(centres) == 4


def _loop_discriminative(emb, inst, dv, dd, dr):
    """De Brabandere et al.'s loss written image by image, instance by instance."""
    var, dist, reg = [], [], []
    for b in range(emb.shape[0]):
        ids = [i for i in inst[b].unique().tolist() if i > 0]
        if not ids:
            continue
        mus, v, r = [], 0, 0
        for i in ids:
            x = emb[b][:, inst[b] == i].T
            mu = x.mean(0)
            mus.append(mu)
            v = v + (torch.relu((x - mu).norm(dim=1) - dv) ** 2).mean()
            r = r + torch.relu(mu.norm() - dr)
        var.append(v / len(ids))
        reg.append(r / len(ids))
        if len(ids) > 1:
            s = sum(torch.relu(2 * dd - (mus[a] - mus[c]).norm()) ** 2
                    for a in range(len(ids)) for c in range(len(ids)) if a != c)
            dist.append(s / (len(ids) * (len(ids) - 1)))
    return torch.stack(var).mean(), torch.stack(dist).mean(), torch.stack(reg).mean()


def test_discriminative_loss_and_gradient_equal_a_direct_loop():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(3, 4, 6, 7, generator=g) * 3 + 2
    inst = torch.randint(0, 4, (3, 6, 7), generator=g)
    inst[1] = (inst[1] > 0).long()              # one instance: no pairs
    inst[2] = 0                                 # none: not averaged in
    a = emb.clone().requires_grad_()
    out = discriminative_loss(a, inst, delta_v=0.25, delta_d=1.0, delta_r=2.0)
    b = emb.clone().requires_grad_()
    ref = _loop_discriminative(b, inst, 0.25, 1.0, 2.0)
    for got, want in zip((out['var'], out['dist'], out['reg']), ref):
        assert float(got) == pytest.approx(float(want), rel=1e-5)
    assert float(out['reg']) > 0 and float(out['dist']) > 0
    (out['var'] + out['dist'] + out['reg']).backward()
    sum(ref).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-5)
    none = discriminative_loss(a, torch.zeros_like(inst))
    assert all(float(v) == 0 and v.requires_grad for v in none.values())


def test_static_pyramid_pooling_equals_adaptive_pooling_where_bins_divide():
    x = torch.randn(2, 3, 12, 18)
    for b in (1, 2, 3, 6):
        assert torch.allclose(static_pool(x, b), F.adaptive_avg_pool2d(x, b), atol=1e-6)
    odd = torch.randn(1, 3, 16, 32)             # 1/32 of 512x1024: 6 does not divide 16
    assert static_pool(odd, 6).shape == (1, 3, 6, 6)


def test_icnet_cascade_shapes():
    torch.manual_seed(0)
    net = ICNet(7, backbone='resnet18', channels=16).eval()
    with torch.no_grad():
        out, aux8, aux16 = net(torch.randn(1, 3, 128, 192))
    assert out.shape == (1, 7, 32, 48) and aux8.shape == (1, 7, 16, 24)
    assert aux16.shape == (1, 7, 8, 12)


def test_coordinates_start_at_zero_and_stage_2_matches_stage_1():
    """Stage 2 adds the coordinate maps through zero-initialised weights: with stage 1's
    weights it computes exactly what stage 1 computed."""
    torch.manual_seed(0)
    kw = dict(num_classes=19, thing_classes=LABELS.thing_ids, backbone='efficientnet_lite0',
              pretrained=False, channels=16)
    one = build_model('panonet', coordinates=False, **kw).eval()
    two = build_model('panonet', coordinates=True, **kw).eval()
    missing, unexpected = two.load_state_dict(one.state_dict(), strict=False)
    assert missing == ['coord_weight'] and not unexpected
    x = torch.randint(0, 255, (1, 3, 64, 128), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(one(x)['embedding'], two(x)['embedding'])
        two.coord_weight.fill_(0.5)
        assert not torch.equal(one(x)['embedding'], two(x)['embedding'])


def test_inference_from_ideal_embeddings_recovers_the_instances(samples):
    """Embeddings that put every instance at its own point (and noise well inside delta_v)
    through the post-processing: every instance of the 1/4 grid comes back whole."""
    post = PanoNetPostprocess(bandwidth=0.5)
    g = torch.Generator().manual_seed(1)
    for s in samples[:2]:
        sem = torch.from_numpy(s.semantic.astype(np.int64))
        inst = torch.from_numpy(s.instance.astype(np.int64))
        t = compute_targets(sem, inst)
        h, w = t.instance.shape
        k = int(t.instance.max()) + 1
        centres = torch.randn(k, 12, generator=g) * 10
        emb = centres[t.instance].permute(2, 0, 1) + torch.randn(12, h, w, generator=g) * 0.02
        cell_sem = sem[2::4, 2::4][:h, :w]                 # the pixels the cells look at
        cell_sem = torch.where(cell_sem == 255, ROAD, cell_sem)   # an argmax is never void
        prob = F.one_hot(cell_sem, 19).permute(2, 0, 1).float()
        out = {'semantic': cell_sem[None], 'semantic_prob': prob[None], 'embedding': emb[None]}
        r = post(out, THINGS, IS_THING, (h, w))[0]
        # cells of one ground-truth instance (of a thing class in the semantic map) share one
        # predicted id, and different instances get different ids
        thing_cells = IS_THING[cell_sem] & (t.instance > 0)
        pairs = torch.stack([t.instance[thing_cells], r.instance[thing_cells].long()], 1)
        uniq = torch.unique(pairs, dim=0)
        assert torch.unique(uniq[:, 0]).numel() == uniq.shape[0]
        assert torch.unique(uniq[:, 1]).numel() == uniq.shape[0]


def test_half_bandwidth_bins_keep_tight_clusters_in_12_dimensions():
    """Why the post-processing seeds from bins of half a bandwidth: with scikit-learn's bins
    of one bandwidth, a 12-dimensional bin centre can be 1.7 bandwidths from every point of a
    tight cluster, and the cluster has no mode."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(40, 12, generator=g) * 10
    x = centres.repeat_interleave(5, 0) + torch.randn(200, 12, generator=g) * 0.02
    cls = torch.zeros(200, dtype=torch.long)
    found = {f: mean_shift(x, cls, torch.tensor([0.5]), bin_fraction=f)[1].shape[0]
             for f in (1.0, 0.5)}
    assert found[0.5] == 40 and found[1.0] < 40, found


def test_a_class_without_seeds_leaves_its_points_unlabelled():
    """min_bin_freq removes every bin of class 1 (three scattered points): those points get
    -1, never a mode of another class; the post-processing makes them void."""
    x = torch.tensor([[0.0, 0.0], [0.01, 0.0], [0.0, 0.01], [5.0, 5.0], [9.0, 0.0],
                      [0.0, 9.0]])
    cls = torch.tensor([0, 0, 0, 1, 1, 1])
    labels, centres, centre_cls = mean_shift(x, cls, torch.tensor([1.0, 1.0]), min_bin_freq=2)
    assert labels.tolist() == [0, 0, 0, -1, -1, -1] and centre_cls.tolist() == [0]
