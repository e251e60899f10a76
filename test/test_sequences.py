"""Video from ``panoptic synth --sequence-length`` through the dataset, the tracker and
``panoptic eval --video``: ids persist in the ground truth, and the tracker keeps them where
per-frame ids do not."""

import json

import numpy as np
import pytest
import torch

from panoptic_ros import cli
from panoptic_ros.datasets.cityscapes import CityscapesDataset
from panoptic_ros.datasets.sample import TrackNumbering
from panoptic_ros.evaluation.sequences import PER_FRAME, evaluate_sequences
from panoptic_ros.evaluation.video import VIDEO_DIVISOR
from panoptic_ros.labels import cityscapes
from panoptic_ros.models.result import grid_result
from panoptic_ros.synth.writer import write_dataset
from panoptic_ros.tracking import TrackerConfig

LABELS = cityscapes()
LENGTH = 8


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    root = tmp_path_factory.mktemp('video')
    write_dataset(root, 'val', num=3, height=128, width=256, seed=17, workers=1,
                  progress=False, sequence_length=LENGTH)
    return root


def test_sequences_are_named_and_ordered_as_cityscapes_video(video):
    ds = CityscapesDataset(video, 'val', tracks=True)
    assert len(ds) == 3 * LENGTH
    seqs = [ds.sequence(i) for i in range(len(ds))]
    assert seqs[:LENGTH] == [('alderley_000000', k) for k in range(LENGTH)]
    assert seqs[LENGTH] == ('brookmere_000001', 0)
    meta = json.loads((video / 'gtFine' / 'cityscapes_panoptic_val.json').read_text())
    assert meta['images'][LENGTH + 2]['sequence'] == 'brookmere_000001'
    assert meta['images'][LENGTH + 2]['frame'] == 2


def test_objects_keep_their_ids_and_move(video):
    ds = CityscapesDataset(video, 'val', tracks=True)
    frames = [ds[i] for i in range(LENGTH)]
    ids = [set(np.unique(s.track[s.track > 0]).tolist()) for s in frames]
    # most objects of a frame are still there in the next one, under the same id
    kept = [len(a & b) / max(1, len(a)) for a, b in zip(ids, ids[1:])]
    assert min(kept) >= 0.5, kept
    # and their pixels move: the camera drives and traffic moves
    first = frames[0]
    moved = [k for k in ids[0] & ids[-1]
             if not np.array_equal(first.track == k, frames[-1].track == k)]
    assert moved
    assert not np.array_equal(frames[0].image, frames[1].image)
    # per frame, the track map marks exactly the instances of the sample
    for s in frames:
        np.testing.assert_array_equal(s.track > 0, s.instance > 0)
        for k in np.unique(s.track[s.track > 0]):
            assert len(np.unique(s.instance[s.track == k])) == 1


def test_both_ground_truth_sources_give_the_same_tracks(video):
    a = CityscapesDataset(video, 'val', source='panoptic', tracks=True)
    b = CityscapesDataset(video, 'val', source='instanceIds', tracks=True)
    for i in (0, LENGTH + 3):
        np.testing.assert_array_equal(a[i].track, b[i].track)


def test_video_ground_truth_renumbers_tracks_per_class(video):
    ds = CityscapesDataset(video, 'val', tracks=True)
    numbering = TrackNumbering(VIDEO_DIVISOR)
    maps = [numbering.panoptic(ds[i], ds.sequence(i)[0]) for i in range(LENGTH)]
    ids = np.unique(np.concatenate([m[(m >= 0) & (m % VIDEO_DIVISOR > 0)] for m in maps]))
    for c, count in numbering.count.items():         # every class: ids 1..count, all used
        assert sorted((ids[ids // VIDEO_DIVISOR == c] % VIDEO_DIVISOR).tolist()) == \
            list(range(1, count + 1))
    assert sum(numbering.count.values()) == len(numbering.ids) == len(ids)
    for s, m in zip((ds[i] for i in range(LENGTH)), maps):
        np.testing.assert_array_equal(m < 0, s.semantic == 255)
        np.testing.assert_array_equal(m[m >= 0] // VIDEO_DIVISOR, s.semantic[m >= 0])
        np.testing.assert_array_equal(m[m >= 0] % VIDEO_DIVISOR > 0, s.track[m >= 0] > 0)


def _oracle(dataset):
    """A predictor that returns each frame's ground truth (masks and classes exact, instance
    ids 1..N per frame as the dataset numbers them): tracking alone decides association."""
    is_thing = torch.tensor(LABELS.is_thing)
    order = iter(range(len(dataset)))

    def predict(images):
        s = dataset[next(order)]
        assert np.array_equal(images[0], s.image)
        sem = torch.from_numpy(s.semantic.astype(np.int64))
        inst = torch.from_numpy(s.instance.astype(np.int64))
        n = int(inst.max())
        return [grid_result(sem, inst, torch.ones(n), torch.ones(19, *sem.shape) / 19,
                            is_thing, min_stuff_area=0, void_id=255, label_divisor=1000,
                            out_size=sem.shape)]
    return predict


def test_the_tracker_associates_what_per_frame_ids_lose(video):
    ds = CityscapesDataset(video, 'val', tracks=True)
    out = evaluate_sequences(_oracle(ds), ds, LABELS, {'tracker': TrackerConfig()})
    assert out['sequences'] == 3 and out['frames'] == 3 * LENGTH
    per_frame, tracked = out['video'][PER_FRAME], out['video']['tracker']
    assert tracked['sq'] == per_frame['sq'] == pytest.approx(1.0)
    assert tracked['aq'] > per_frame['aq'] + 0.15, (tracked, per_frame)
    assert tracked['vpq'] > per_frame['vpq']
    assert tracked['id_switches'] < per_frame['id_switches']
    assert tracked['tracked_objects'] == per_frame['tracked_objects'] > 10


def test_eval_video_cli_with_the_bundled_model(video, tmp_path):
    out = tmp_path / 'r.json'
    assert cli.main(['eval', '--model', 'dense_detections', '--data', str(video), '--video',
                     '--num', str(LENGTH + 2), '--track-max-age', '3', '--out', str(out),
                     '--quiet']) == 0
    r = json.loads(out.read_text())
    assert r['meta']['sequences'] == 2 and r['meta']['tracker']['max_age'] == 3
    assert set(r['video']) == {PER_FRAME, 'tracker'}
    for v in r['video'].values():
        assert 0 <= v['aq'] <= 1 and 0 <= v['vpq'] <= 1 and set(v['vpq_windows']) == \
            {'1', '2', '3', '4'}
    assert 0 <= r['All']['pq'] <= 1
    assert cli.main(['eval', '--model', 'dense_detections', '--data', str(video), '--video',
                     '--batch', '2', '--quiet']) == 2


def test_synth_cli_writes_sequences_and_refuses_bad_ones(tmp_path, capsys):
    assert cli.main(['synth', '--out', str(tmp_path), '--split', 'train', '--num', '2',
                     '--sequence-length', '3', '--height', '64', '--width', '128',
                     '--quiet']) == 0
    assert '2 sequences of 3 frames at 10 Hz' in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / 'leftImg8bit' / 'train').glob('*/*.png'))
    assert names == [f'{c}_{s:06d}_{f:06d}_leftImg8bit.png' for c, s in
                     (('alderley', 0), ('brookmere', 1)) for f in range(3)]
    assert cli.main(['synth', '--out', str(tmp_path / 'x'), '--sequence-length', '0',
                     '--height', '64', '--width', '128', '--quiet']) == 2
    assert 'sequence length >= 1' in capsys.readouterr().err
