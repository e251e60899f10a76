"""Generated panoptic prediction/ground-truth pairs covering the cases PQ must handle.

Each case is a ground-truth and a predicted RGB-id image with COCO ``segments_info``; the kinds
exercise wrong classes, split and merged instances, void and crowd regions, empty predictions,
one-pixel segments and large ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from panoptic_ros.encoding import write_id_png
from panoptic_ros.labels import cityscapes

KINDS = ('identical', 'wrong_class', 'split', 'merge', 'shift', 'void_spill', 'crowd',
         'empty', 'one_pixel', 'large_ids', 'noise', 'area_mismatch')


def categories() -> list[dict]:
    return cityscapes().to_categories()


def _paint_scene(rng, h, w, cats, n_segments, with_crowd):
    """Ground truth: stuff background bands, thing boxes on top, some void, some crowd."""
    stuff = [c for c in cats if not c['isthing']]
    things = [c for c in cats if c['isthing']]
    seg_map = np.zeros((h, w), np.int64)  # segment index + 1; 0 = void
    segs = []
    bands = rng.integers(2, 5)
    edges = np.sort(rng.choice(np.arange(1, h), bands - 1, replace=False))
    for k, (a, b) in enumerate(zip([0, *edges], [*edges, h])):
        cat = stuff[rng.integers(len(stuff))]
        # one stuff segment per category (COCO convention): reuse when repeated
        idx = next((i for i, s in enumerate(segs) if s['category_id'] == cat['id']), None)
        if idx is None:
            segs.append({'category_id': cat['id'], 'iscrowd': 0})
            idx = len(segs) - 1
        seg_map[a:b] = idx + 1
    for _ in range(n_segments):
        cat = things[rng.integers(len(things))]
        y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
        y1, x1 = y0 + rng.integers(3, h // 2), x0 + rng.integers(3, w // 2)
        crowd = int(with_crowd and rng.random() < 0.3)
        segs.append({'category_id': cat['id'], 'iscrowd': crowd})
        seg_map[y0:y1, x0:x1] = len(segs)
    # void: a random box and a few scattered pixels
    y0, x0 = rng.integers(0, h - 5), rng.integers(0, w - 5)
    seg_map[y0:y0 + rng.integers(2, 10), x0:x0 + rng.integers(2, 12)] = 0
    seg_map[rng.integers(0, h, 5), rng.integers(0, w, 5)] = 0
    return seg_map, segs


def _assign_ids(rng, seg_map, segs, large):
    present = np.unique(seg_map)
    present = present[present > 0]
    lo = (1 << 24) - 5000 if large else 1
    ids = rng.choice(np.arange(lo, min(lo + 100000, 1 << 24)), len(segs), replace=False)
    lut = np.zeros(len(segs) + 1, np.int64)
    lut[1:] = ids
    id_map = lut[seg_map]
    info = []
    for k in present:
        s = dict(segs[k - 1])
        s['id'] = int(ids[k - 1])
        s['area'] = int((seg_map == k).sum())
        info.append(s)
    return id_map, info


def make_case(kind: str, seed: int, h: int = 48, w: int = 64):
    """Returns ``(gt_ids, gt_info, pred_ids, pred_info)`` for one case kind."""
    rng = np.random.default_rng(seed)
    cats = categories()
    thing_ids = [c['id'] for c in cats if c['isthing']]
    stuff_ids = [c['id'] for c in cats if not c['isthing']]
    seg_map, segs = _paint_scene(rng, h, w, cats, rng.integers(2, 8), kind == 'crowd')
    large = kind == 'large_ids'
    gt_ids, gt_info = _assign_ids(rng, seg_map, segs, large)
    if kind == 'area_mismatch':  # the official evaluator trusts the JSON area of ground truth
        for s in gt_info:
            s['area'] = int(s['area'] * rng.uniform(0.7, 1.5)) + 1

    pmap = seg_map.copy()
    psegs = [dict(s, iscrowd=0) for s in segs]
    if kind == 'wrong_class':
        for s in psegs:
            if rng.random() < 0.5:
                s['category_id'] = int(rng.choice(thing_ids if s['category_id'] in thing_ids
                                                  else stuff_ids))
    elif kind == 'split':
        for k in range(1, len(segs) + 1):
            ys, xs = np.nonzero(pmap == k)
            if len(ys) > 4 and rng.random() < 0.6:
                cut = np.median(xs)
                psegs.append(dict(psegs[k - 1]))
                pmap[(pmap == k) & (np.arange(w)[None, :] > cut + rng.integers(-3, 4))] = \
                    len(psegs)
    elif kind == 'merge':
        by_cat: dict = {}
        for k, s in enumerate(segs, 1):
            by_cat.setdefault(s['category_id'], []).append(k)
        for ks in by_cat.values():
            for k in ks[1:]:
                if rng.random() < 0.7:
                    pmap[pmap == k] = ks[0]
    elif kind == 'shift':
        pmap = np.roll(pmap, (rng.integers(-6, 7), rng.integers(-8, 9)), axis=(0, 1))
    elif kind == 'void_spill':
        pmap[pmap == 0] = rng.integers(1, len(segs) + 1)
    elif kind == 'crowd':
        for k, s in enumerate(segs, 1):
            if s['iscrowd']:
                ys, xs = np.nonzero(seg_map == k)
                if len(ys):
                    psegs.append({'category_id': s['category_id'], 'iscrowd': 0})
                    sel = rng.random(len(ys)) < rng.uniform(0.3, 1.0)
                    pmap[ys[sel], xs[sel]] = len(psegs)
    elif kind == 'empty':
        pmap[:] = 0
    elif kind == 'one_pixel':
        for _ in range(6):
            y, x = rng.integers(0, h), rng.integers(0, w)
            psegs.append({'category_id': int(rng.choice(thing_ids)), 'iscrowd': 0})
            pmap[y, x] = len(psegs)
        # and one-pixel ground truth segments that the prediction gets right
        gy, gx = rng.integers(0, h, 3), rng.integers(0, w, 3)
        for y, x in zip(gy, gx):
            segs.append({'category_id': int(rng.choice(thing_ids)), 'iscrowd': 0})
            seg_map[y, x] = len(segs)
            psegs.append(dict(segs[-1]))
            pmap[y, x] = len(psegs)
        gt_ids, gt_info = _assign_ids(rng, seg_map, segs, large)
    elif kind == 'noise':
        noise = rng.random((h, w)) < 0.2
        pmap[noise] = rng.integers(0, len(psegs) + 1, noise.sum())
    if kind != 'identical' and rng.random() < 0.3:  # occasional false positive blob
        psegs.append({'category_id': int(rng.choice(thing_ids)), 'iscrowd': 0})
        y0, x0 = rng.integers(0, h - 6), rng.integers(0, w - 6)
        pmap[y0:y0 + 6, x0:x0 + 6] = len(psegs)
    pred_ids, pred_info = _assign_ids(rng, pmap, psegs, large)
    for s in pred_info:
        del s['area']
        del s['iscrowd']
    return gt_ids, gt_info, pred_ids, pred_info


def write_cases(root: Path, cases: list[tuple[str, int]], h: int = 48, w: int = 64):
    """Write cases as a COCO panoptic GT/prediction pair of folders + JSONs; return paths."""
    gt_dir, pred_dir = root / 'gt', root / 'pred'
    gt_dir.mkdir(parents=True)
    pred_dir.mkdir(parents=True)
    gt_anns, pred_anns, images = [], [], []
    for kind, seed in cases:
        image_id = f'{kind}_{seed:04d}'
        gt_ids, gt_info, pred_ids, pred_info = make_case(kind, seed, h, w)
        write_id_png(gt_dir / f'{image_id}.png', gt_ids)
        write_id_png(pred_dir / f'{image_id}.png', pred_ids)
        images.append({'id': image_id, 'file_name': f'{image_id}.png', 'height': h, 'width': w})
        gt_anns.append({'image_id': image_id, 'file_name': f'{image_id}.png',
                        'segments_info': gt_info})
        pred_anns.append({'image_id': image_id, 'file_name': f'{image_id}.png',
                          'segments_info': pred_info})
    gt_json, pred_json = root / 'gt.json', root / 'pred.json'
    gt_json.write_text(json.dumps({'images': images, 'annotations': gt_anns,
                                   'categories': categories()}))
    pred_json.write_text(json.dumps({'annotations': pred_anns}))
    return gt_json, gt_dir, pred_json, pred_dir
