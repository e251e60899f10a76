"""``panoptic synth``: render scenes in parallel and write them in the Cityscapes layout.

Layout (what cityscapesscripts and Cityscapes loaders read)::

    leftImg8bit/<split>/<city>/<city>_<seq>_000019_leftImg8bit.png
    gtFine/<split>/<city>/<city>_<seq>_000019_gtFine_{labelIds,instanceIds,color}.png
    gtFine/cityscapes_panoptic_<split>.json
    gtFine/cityscapes_panoptic_<split>/<city>_<seq>_000019_gtFine_panoptic.png

Image ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``, so the output is
the same for any number of workers.

With ``sequence_length`` N, sequence ``i`` is N frames of the world of image ``i`` while the
camera drives (:meth:`~panoptic_ros.synth.scene.SceneRenderer.render_sequence`), in the
Cityscapes layout above with the frame naming of Cityscapes' video snippets
(``leftImg8bit_sequence``: ``<city>_<sequence>_<frame>``, here ``alderley_000004_000000`` ..
``_0000NN``), and every object keeps its ``instanceIds`` value, hence its panoptic segment id,
in all frames of its sequence, as objects keep their ids within a Cityscapes-VPS video. Image
records in the panoptic JSON carry ``sequence`` and ``frame``. (Cityscapes-VPS's own release,
``img/`` and ``panoptic_video/`` folders with a video JSON, is not read directly; renamed into
this layout, it is.)
"""

from __future__ import annotations

import contextlib
import os
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from panoptic_ros.errors import PanopticError
from panoptic_ros.parallel import process_pool

CITIES = ('alderley', 'brookmere', 'castleton', 'dunmore')


def image_name(i: int, frame: int = 19) -> tuple[str, str]:
    """``(city, stem)`` of image ``i`` (a still: Cityscapes' annotated frame 19), or of frame
    ``frame`` of sequence ``i``, e.g. ``('alderley', 'alderley_000004_000019')``."""
    city = CITIES[i % len(CITIES)]
    return city, f'{city}_{i:06d}_{frame:06d}'


@lru_cache(maxsize=1)
def _color_lut_bgr() -> np.ndarray:
    """``[256, 1, 3] uint8`` BGR colour of each labelId, for ``cv2.LUT``."""
    from cityscapesscripts.helpers.labels import labels

    lut = np.zeros((256, 1, 3), np.uint8)
    for lab in labels:
        if lab.id >= 0:
            lut[lab.id, 0] = lab.color[::-1]
    return lut


def _write_png(path: Path, array: np.ndarray, photo: bool = False) -> None:
    import cv2

    # Level 1 with the up filter and RLE for label images (flat regions), Huffman coding
    # without filter for the noisy photo: 3-4x faster than OpenCV's default, files <15% larger.
    strategy, filt = ((cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY, cv2.IMWRITE_PNG_FILTER_NONE)
                      if photo else (cv2.IMWRITE_PNG_STRATEGY_RLE, cv2.IMWRITE_PNG_FILTER_UP))
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, strategy,
              cv2.IMWRITE_PNG_FILTER, filt]
    if not cv2.imwrite(str(path), array, params):
        raise PanopticError(f'cannot write {path}')


_STATE: dict = {}


def _init(root: str, split: str, height: int, width: int, seed: int,
          sequence_length: int | None = None, frame_rate: float = 10.0) -> None:
    from panoptic_ros.synth.scene import SceneRenderer

    _STATE.update(root=Path(root), split=split, seed=seed, length=sequence_length,
                  rate=frame_rate, renderer=SceneRenderer(height, width))


def _render_one(i: int) -> list[dict]:
    """Image ``i``, or every frame of sequence ``i``: their JSON records."""
    seed, length = _STATE['seed'], _STATE['length']
    if length is None:
        scene = _STATE['renderer'].render(np.random.default_rng([seed, i]))
        return [_write(i, 19, *scene)]
    frames = _STATE['renderer'].render_sequence([seed, i], length, _STATE['rate'])
    items = []
    for k, scene in enumerate(frames):
        item = _write(i, k, *scene)
        item['image'].update(sequence=image_name(i)[1].rsplit('_', 1)[0], frame=k)
        items.append(item)
    return items


def _write(i: int, frame: int, image: np.ndarray, label: np.ndarray,
           instance: np.ndarray) -> dict:
    import cv2

    from panoptic_ros.datasets.cityscapes_panoptic import instance_ids_to_panoptic
    from panoptic_ros.encoding import id_to_bgr

    root, split = _STATE['root'], _STATE['split']
    city, stem = image_name(i, frame)
    img_dir = root / 'leftImg8bit' / split / city
    gt_dir = root / 'gtFine' / split / city
    _write_png(img_dir / f'{stem}_leftImg8bit.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
               photo=True)
    _write_png(gt_dir / f'{stem}_gtFine_labelIds.png', label)
    _write_png(gt_dir / f'{stem}_gtFine_instanceIds.png', instance.astype(np.uint16))
    _write_png(gt_dir / f'{stem}_gtFine_color.png',
               cv2.LUT(cv2.merge([label, label, label]), _color_lut_bgr()))
    ids, segments = instance_ids_to_panoptic(instance)
    pan_dir = root / 'gtFine' / f'cityscapes_panoptic_{split}'
    _write_png(pan_dir / f'{stem}_gtFine_panoptic.png', id_to_bgr(ids))
    h, w = label.shape
    return {'image': {'id': stem, 'file_name': f'{stem}_leftImg8bit.png', 'height': h,
                      'width': w},
            'annotation': {'image_id': stem, 'file_name': f'{stem}_gtFine_panoptic.png',
                           'segments_info': segments}}


def write_dataset(root: Path, split: str, num: int, height: int, width: int, seed: int,
                  workers: int | None = None, progress: bool = True,
                  sequence_length: int | None = None, frame_rate: float = 10.0) -> dict:
    """Render ``num`` scenes (or ``num`` sequences of ``sequence_length`` frames at
    ``frame_rate`` Hz) into ``root``; returns ``{'num', 'images', 'seconds', 'workers'}``."""
    from panoptic_ros.datasets.cityscapes_panoptic import panoptic_categories
    from panoptic_ros.fileio import atomic_write_json

    if num < 1 or height < 64 or width < 64:
        raise PanopticError(f'need num >= 1 and a size of at least 64x64, got num={num}, '
                            f'{height}x{width}')
    if sequence_length is not None and (sequence_length < 1 or frame_rate <= 0):
        raise PanopticError(f'need a sequence length >= 1 and a positive frame rate, got '
                            f'{sequence_length} frames at {frame_rate} Hz')
    start = time.perf_counter()
    for city in CITIES[:num]:
        (root / 'leftImg8bit' / split / city).mkdir(parents=True, exist_ok=True)
        (root / 'gtFine' / split / city).mkdir(parents=True, exist_ok=True)
    (root / 'gtFine' / f'cityscapes_panoptic_{split}').mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, num))
    init_args = (str(root), split, height, width, seed, sequence_length, frame_rate)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num, desc=f'synth {split}',
                   unit='img' if sequence_length is None else 'seq')
    items = []
    with contextlib.ExitStack() as stack:
        if workers == 1:
            _init(*init_args)
            results = map(_render_one, range(num))
        else:
            # rendering alternates Python drawing and OpenCV calls: OpenCV keeps its threads
            pool = stack.enter_context(process_pool(workers, _init, init_args,
                                                    opencv_single=False))
            results = pool.imap(_render_one, range(num),
                                chunksize=4 if sequence_length is None else 1)
        for rendered in results:
            items += rendered
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    atomic_write_json(root / 'gtFine' / f'cityscapes_panoptic_{split}.json', {
        'images': [it['image'] for it in items],
        'annotations': [it['annotation'] for it in items],
        'categories': panoptic_categories(),
    }, indent=None)
    return {'num': num, 'images': len(items), 'seconds': time.perf_counter() - start,
            'workers': workers}
