"""``panoptic bag make``: a Cityscapes-layout dataset (real or ``panoptic synth``) as a rosbag2
camera recording with panoptic ground truth.

Topics (all with ``frame_id`` ``camera`` and the same header stamp per frame, spaced by
``1 / rate`` seconds):

- ``/camera/image_raw`` (``sensor_msgs/Image`` ``rgb8``), or
  ``/camera/image_raw/compressed`` (``sensor_msgs/CompressedImage``, JPEG or PNG, the format
  string image_transport writes);
- ``/camera/camera_info`` (``sensor_msgs/CameraInfo``: a nominal pinhole, focal length = image
  width, no distortion; datasets do not ship the intrinsics we could trust here);
- ``/ground_truth/panoptic`` (``sensor_msgs/Image`` ``32SC1``: ``class_id * label_divisor +
  instance_id``, void -1; the encoding of the node's ``panoptic/panoptic``; a thing region with
  instance 0 is a crowd region).

Frames keep the dataset's order (sequence by sequence, frame by frame) and are spaced evenly.
When the dataset is video (sequences of several frames), the ground-truth ``instance_id`` is
a track id: the same object has the same id in every frame of its sequence, and objects of
different sequences have different ids (numbered per class in order of appearance across the
bag, so a bag of several sequences is one recording with scene cuts).

The bag's custom data records the label set, the label divisor and whether the ground truth
carries track ids.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from panoptic_ros.bag import types
from panoptic_ros.encoding import LABEL_DIVISOR
from panoptic_ros.errors import PanopticError

IMAGE_TOPIC = '/camera/image_raw'
CAMERA_INFO_TOPIC = '/camera/camera_info'
GT_TOPIC = '/ground_truth/panoptic'
FRAME_ID = 'camera'
START_S = 1_700_000_000        # first stamp (2023-11-14), well inside builtin_interfaces' int32
DIVISOR_KEY = 'panoptic_ros.label_divisor'
LABELS_KEY = 'panoptic_ros.label_set'
TRACKS_KEY = 'panoptic_ros.gt_track_ids'     # 'true': ground-truth instance ids are track ids


def _header(store, stamp_ns: int):
    Header = store.types['std_msgs/msg/Header']
    Time = store.types['builtin_interfaces/msg/Time']
    return Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=FRAME_ID)


def _camera_info(store, header, h: int, w: int):
    f, cx, cy = float(w), (w - 1) / 2.0, (h - 1) / 2.0
    k = np.array([f, 0, cx, 0, f, cy, 0, 0, 1], np.float64)
    r = np.eye(3).ravel()
    p = np.array([f, 0, cx, 0, 0, f, cy, 0, 0, 0, 1, 0], np.float64)
    roi = store.types['sensor_msgs/msg/RegionOfInterest'](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return store.types[types.CAMERA_INFO](
        header=header, height=h, width=w, distortion_model='plumb_bob', d=np.zeros(5), k=k,
        r=r, p=p, binning_x=0, binning_y=0, roi=roi)


def _image(store, header, array: np.ndarray, encoding: str):
    h, w = array.shape[:2]
    data = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
    return store.types[types.IMAGE](header=header, height=h, width=w, encoding=encoding,
                                    is_bigendian=0, step=data.size // h, data=data)


def _compressed(store, header, rgb: np.ndarray, fmt: str, quality: int):
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == 'jpeg' else []
    ok, buf = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png',
                           cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise PanopticError(f'OpenCV could not encode a {fmt} image')
    return store.types[types.COMPRESSED_IMAGE](
        header=header, format=f'rgb8; {fmt} compressed bgr8', data=buf.reshape(-1))


def make_bag(data: str | Path, split: str, out: str | Path, *, storage: str = 'mcap',
             rate: float = 10.0, compressed: str | None = None, quality: int = 90,
             num: int | None = None, compress: bool = False, progress: bool = True) -> dict:
    """Write the bag; returns ``{'frames', 'topics', 'bytes', 'seconds'}``.

    Args:
        data, split: Cityscapes-layout dataset root and split.
        out: bag folder to create (must not exist); written inside ``.<name>.partial/`` and
            moved when complete, so an interrupted run leaves no half bag under the final name.
        storage: ``mcap`` or ``sqlite3``.
        rate: frames per second of the recording (stamp spacing).
        compressed: ``None`` (raw ``rgb8``), ``'jpeg'`` or ``'png'``.
        quality: JPEG quality.
        num: first ``num`` images only.
        compress: zstd compression (MCAP chunks; per message for sqlite3).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
    from tqdm import tqdm

    from panoptic_ros.datasets.cityscapes import CityscapesDataset
    from panoptic_ros.datasets.sample import TrackNumbering

    if rate <= 0:
        raise PanopticError(f'--rate must be positive, got {rate}')
    if compressed not in (None, 'jpeg', 'png'):
        raise PanopticError(f"compressed must be 'jpeg' or 'png', got {compressed!r}")
    plugins = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise PanopticError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    out = Path(out)
    if out.exists():
        raise PanopticError(f'{out} exists; remove it or choose another --out')
    dataset = CityscapesDataset(data, split)
    count = len(dataset) if num is None else min(num, len(dataset))
    sequences = [dataset.sequence(i)[0] for i in range(count)]
    numbering = None
    if len(set(sequences)) < count:      # video: ground truth with track ids
        dataset = CityscapesDataset(data, split, tracks=True)
        numbering = TrackNumbering(LABEL_DIVISOR)
    store = types.typestore()
    tmp = out.with_name(f'.{out.name}.partial')
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writer = Writer(tmp / out.name, version=9, storage_plugin=plugins[storage])
    if compress:
        writer.set_compression(CompressionMode.STORAGE if storage == 'mcap'
                               else CompressionMode.MESSAGE, CompressionFormat.ZSTD)
    t0 = time.perf_counter()
    image_topic = IMAGE_TOPIC + ('/compressed' if compressed else '')
    with writer:
        writer.set_custom_data(DIVISOR_KEY, str(LABEL_DIVISOR))
        writer.set_custom_data(LABELS_KEY, dataset.label_set.name)
        writer.set_custom_data(TRACKS_KEY, 'true' if numbering else 'false')
        image_conn = writer.add_connection(
            image_topic, types.COMPRESSED_IMAGE if compressed else types.IMAGE, typestore=store)
        info_conn = writer.add_connection(CAMERA_INFO_TOPIC, types.CAMERA_INFO, typestore=store)
        gt_conn = writer.add_connection(GT_TOPIC, types.IMAGE, typestore=store)
        for i in tqdm(range(count), unit='frame', disable=not progress, desc='bag make'):
            sample = dataset[i]
            stamp = START_S * 10**9 + round(i * 1e9 / rate)
            header = _header(store, stamp)
            h, w = sample.image.shape[:2]
            img = (_compressed(store, header, sample.image, compressed, quality) if compressed
                   else _image(store, header, sample.image, 'rgb8'))
            writer.write(image_conn, stamp, store.serialize_cdr(img, image_conn.msgtype))
            writer.write(info_conn, stamp, store.serialize_cdr(
                _camera_info(store, header, h, w), types.CAMERA_INFO))
            gt_ids = (numbering.panoptic(sample, sequences[i]) if numbering
                      else sample.panoptic(LABEL_DIVISOR))
            gt = _image(store, header, gt_ids.astype('<i4'), '32SC1')
            writer.write(gt_conn, stamp, store.serialize_cdr(gt, types.IMAGE))
    (tmp / out.name).rename(out)
    tmp.rmdir()
    size = sum(f.stat().st_size for f in out.rglob('*') if f.is_file())
    return {'frames': count, 'topics': [image_topic, CAMERA_INFO_TOPIC, GT_TOPIC],
            'bytes': size, 'seconds': time.perf_counter() - t0,
            'sequences': len(set(sequences)), 'track_ids': numbering is not None}
