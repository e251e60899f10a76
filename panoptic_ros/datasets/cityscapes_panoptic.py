"""Cityscapes ``instanceIds`` images to COCO panoptic format, vectorised.

Produces what cityscapesscripts' ``preparation/createPanopticImgs.py`` produces (same segment
ids, categories, areas, boxes, crowd flags and order), without a loop over pixels per segment.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from panoptic_ros.segments import segment_stats


@lru_cache(maxsize=2)
def _label_tables(use_train_id: bool):
    """Per labelId: evaluated?, has instances, category id; and the categories list."""
    from cityscapesscripts.helpers.labels import labels

    evaluated = np.zeros(256, bool)
    things = np.zeros(256, bool)
    category = np.zeros(256, np.int64)
    categories = []
    for lab in labels:
        if lab.id < 0 or lab.ignoreInEval:
            continue
        evaluated[lab.id] = True
        things[lab.id] = lab.hasInstances
        category[lab.id] = lab.trainId if use_train_id else lab.id
        categories.append({'id': int(category[lab.id]), 'name': lab.name,
                           'color': list(lab.color), 'supercategory': lab.category,
                           'isthing': int(lab.hasInstances)})
    return evaluated, things, category, categories


def panoptic_categories(use_train_id: bool = False) -> list[dict]:
    """The ``categories`` list of Cityscapes panoptic JSON files."""
    return [dict(c) for c in _label_tables(use_train_id)[3]]


def instance_ids_to_panoptic(instance_ids: np.ndarray, use_train_id: bool = False):
    """Convert one ``instanceIds`` image.

    Args:
        instance_ids: ``[H, W]`` integer image: ``labelId * 1000 + k`` for instances,
            ``labelId`` for stuff and crowd groups.
        use_train_id: category ids are trainIds instead of labelIds.

    Returns:
        ``ids [H, W] uint32`` panoptic ids (0 for void: labels not evaluated), and
        ``segments_info``: one dict per segment (``id``, ``category_id``, ``area``, ``bbox``
        ``[x, y, w, h]``, ``iscrowd``), in increasing id order.
    """
    evaluated, things, category, _ = _label_tables(use_train_id)
    uniq, area, bbox, _ = segment_stats(instance_ids)
    label = np.where(uniq < 1000, uniq, uniq // 1000)
    keep = (label < 256) & evaluated[np.minimum(label, 255)]
    lut = np.zeros(int(uniq[-1]) + 1, np.uint32)
    lut[uniq[keep]] = uniq[keep]
    ids = lut[instance_ids]
    segments = []
    for k in np.flatnonzero(keep):
        lab = int(label[k])
        segments.append({
            'id': int(uniq[k]),
            'category_id': int(category[lab]),
            'area': int(area[k]),
            'bbox': [int(v) for v in bbox[k]],
            'iscrowd': int(bool(things[lab]) and uniq[k] < 1000),
        })
    return ids, segments
