"""Panoptic quality (Kirillov et al., 2019), vectorised, official semantics.

Follows cityscapesscripts' ``evalPanopticSemanticLabeling`` and COCO panopticapi's
``pq_compute`` exactly:

* a ground-truth and a predicted segment of the same category match when IoU > 0.5, where the
  union leaves out the predicted pixels that fall on void (id 0);
* crowd ground truth (``iscrowd``) is never matched and never a false negative; an unmatched
  prediction is not a false positive when more than half of it lies on void or on the (last
  listed) crowd region of its category;
* the ground-truth area is the JSON ``area`` when given, the predicted area is counted in the
  image;
* a predicted id in the image but not in the JSON, in the JSON but not in the image, or with a
  category not in the ground-truth categories is an error.

Per image, one joint histogram of segment codes gives every intersection at once: computed over
the runs of equal (ground truth, prediction) pixel pairs (label images are mostly long runs), or
for noisy maps over pixels with a lookup table; no loop over pixels or segments. Matching is a
``[G, P]`` matrix operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from panoptic_ros.errors import PanopticError

VOID = 0
_LUT_MAX_ID = 1 << 26  # lookup tables up to 64 Mi entries (calloc: only touched pages count)


@dataclass(frozen=True)
class SegmentTable:
    """The segments of one image.

    Attributes:
        ids: ``[S] int64`` segment ids (pixel values of the id image), unique.
        category_ids: ``[S] int64`` category (dataset) id of each segment.
        iscrowd: ``[S] bool`` crowd flag (ground truth only).
        areas: ``[S] int64`` areas stated by the annotation, or None to count pixels.
    """

    ids: np.ndarray
    category_ids: np.ndarray
    iscrowd: np.ndarray
    areas: np.ndarray | None = None

    @classmethod
    def from_segments_info(cls, segments_info: Sequence[Mapping], use_area: bool,
                           image_id: str = '') -> 'SegmentTable':
        """From COCO ``segments_info`` dicts (``id``, ``category_id``, ``iscrowd``, ``area``)."""
        n = len(segments_info)
        ids = np.empty(n, np.int64)
        cats = np.empty(n, np.int64)
        crowd = np.zeros(n, bool)
        areas = np.empty(n, np.int64) if use_area else None
        for i, s in enumerate(segments_info):
            try:
                ids[i] = s['id']
                cats[i] = s['category_id']
                crowd[i] = bool(s.get('iscrowd', 0))
                if areas is not None:
                    areas[i] = s['area']
            except (KeyError, TypeError, ValueError) as exc:
                raise PanopticError(f'image {image_id!r}: segment {i} needs integer "id", '
                                    f'"category_id"{", area" if use_area else ""}; '
                                    f'got {dict(s)!r}') from exc
        return cls(ids, cats, crowd, areas)

    @classmethod
    def build(cls, ids: Iterable[int], category_ids: Iterable[int],
              iscrowd: Iterable[bool] | None = None) -> 'SegmentTable':
        ids = np.fromiter(ids, np.int64)
        cats = np.fromiter(category_ids, np.int64)
        crowd = (np.zeros(len(ids), bool) if iscrowd is None
                 else np.fromiter(iscrowd, bool, count=len(ids)))
        return cls(ids, cats, crowd)

    def __len__(self) -> int:
        return len(self.ids)


def _codes(values: np.ndarray, seg_ids: np.ndarray, void: int) -> np.ndarray:
    """Map ids to codes: 0 unknown id, ``1..S`` the segments in order, ``S+1`` void.

    Any integer ids (negative, huge); meant for small arrays (run values).
    """
    n = len(seg_ids)
    codes = np.zeros(values.shape, np.int64)
    if n:
        order = np.argsort(seg_ids)
        pos = np.minimum(np.searchsorted(seg_ids[order], values), n - 1)
        hit = seg_ids[order][pos] == values
        codes[hit] = order[pos[hit]] + 1
    codes[values == void] = n + 1
    return codes


def _compact(ids: np.ndarray, seg_ids: np.ndarray, void: int) -> np.ndarray:
    """:func:`_codes` for whole images: ``[H*W]`` ids to ``uint8``/``uint16`` codes."""
    n = len(seg_ids)
    dtype = np.uint8 if n + 2 <= 256 else (np.uint16 if n + 2 <= 65536 else np.int64)
    lo = int(ids.min()) if ids.size else 0
    hi = int(ids.max()) if ids.size else 0
    if lo >= 0 and hi < _LUT_MAX_ID:
        lut = np.zeros(hi + 1, dtype)  # calloc'd: untouched pages cost nothing
        keep = (seg_ids >= 0) & (seg_ids <= hi)
        lut[seg_ids[keep]] = np.arange(1, n + 1, dtype=np.int64)[keep].astype(dtype)
        if 0 <= void <= hi:
            lut[void] = n + 1
        return np.take(lut, ids)
    uniq, inverse = np.unique(ids, return_inverse=True)
    return _codes(uniq, seg_ids, void).astype(dtype)[inverse.reshape(ids.shape)]


def _pair_runs(a: np.ndarray, b: np.ndarray, max_runs: int):
    """Start and length of the runs of equal ``(a, b)`` pairs in two flat arrays.

    Label images are mostly long runs of one id, so the joint histogram over runs (tens of
    thousands) is much cheaper than over pixels (millions). Returns None when there are more
    than ``max_runs`` runs (noisy maps), where the per-pixel path is faster.
    """
    change = np.empty(a.size, bool)
    change[:1] = True
    np.not_equal(a[1:], a[:-1], out=change[1:])
    change[1:] |= b[1:] != b[:-1]
    starts = np.flatnonzero(change)
    if len(starts) > max_runs:
        return None
    return starts, np.diff(starts, append=a.size)


def confusion(gt_ids: np.ndarray, gt_seg_ids: np.ndarray, pred_ids: np.ndarray,
              pred_seg_ids: np.ndarray, void: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel counts of every (ground-truth code, predicted code) pair.

    Args:
        gt_ids, pred_ids: ``[H, W]`` id images of equal shape.
        gt_seg_ids, pred_seg_ids: ``[G]``, ``[P]`` segment ids (codes ``1..G``, ``1..P``).
        void: the void id (code ``G+1`` / ``P+1``); other ids not listed get code 0.

    Returns:
        ``conf [G+2, P+2] int64`` and ``unknown_pred [K]`` predicted ids with code 0.
    """
    g, p = gt_ids.ravel(), pred_ids.ravel()
    ng, npr = len(gt_seg_ids) + 2, len(pred_seg_ids) + 2
    runs = _pair_runs(g, p, max_runs=g.size // 4)
    if runs is not None:
        starts, lengths = runs
        gc = _codes(g[starts], gt_seg_ids, void)
        pc = _codes(p[starts], pred_seg_ids, void)
        conf = np.bincount(gc * npr + pc, weights=lengths, minlength=ng * npr)
        unknown = np.unique(p[starts][pc == 0])
        return conf.astype(np.int64).reshape(ng, npr), unknown
    gc = _compact(g, gt_seg_ids, void)
    pc = _compact(p, pred_seg_ids, void)
    if gc.dtype == np.uint8 and pc.dtype == np.uint8 and g.size < (1 << 24):
        import cv2

        conf = cv2.calcHist([gc, pc], [0, 1], None, [ng, npr], [0, ng, 0, npr])
    else:
        conf = np.bincount(gc.astype(np.int64) * npr + pc, minlength=ng * npr)
    conf = conf.astype(np.int64).reshape(ng, npr)
    unknown = np.unique(p[pc == 0]) if conf[:, 0].any() else p[:0]
    return conf, unknown


class PQAccumulator:
    """Accumulates PQ statistics image by image, then summarises.

    Args:
        categories: ``{category id: {'isthing': 0/1, 'name': str, ...}}`` (the ground
            truth's categories; predictions of other categories are an error).
    """

    def __init__(self, categories: Mapping[int, Mapping]) -> None:
        self.categories = {int(k): v for k, v in categories.items()}
        self._cat_ids = np.array(list(self.categories), dtype=np.int64)
        n = len(self._cat_ids)
        lut_size = int(self._cat_ids.max(initial=-1)) + 2
        self._cat_index = np.full(max(lut_size, 1), n, dtype=np.int64)  # n: not a category
        self._cat_index[self._cat_ids] = np.arange(n)
        # one extra slot (index n) collects ground truth of unknown categories, never reported
        self.iou = np.zeros(n + 1, np.float64)
        self.tp = np.zeros(n + 1, np.int64)
        self.fp = np.zeros(n + 1, np.int64)
        self.fn = np.zeros(n + 1, np.int64)

    def _index(self, category_ids: np.ndarray) -> np.ndarray:
        ok = (category_ids >= 0) & (category_ids < len(self._cat_index) - 1)
        out = np.full(len(category_ids), len(self._cat_ids), np.int64)
        out[ok] = self._cat_index[category_ids[ok]]
        return out

    def add(self, gt_ids: np.ndarray, gt: SegmentTable, pred_ids: np.ndarray,
            pred: SegmentTable, image_id: str = '', void: int = VOID) -> None:
        """Add one image.

        Args:
            gt_ids: ``[H, W]`` ground-truth id image; ``void`` marks void pixels, ids not in
                ``gt`` are ignored.
            gt: ground-truth segments (``areas`` None: counted in ``gt_ids``).
            pred_ids: ``[H, W]`` predicted id image; every id other than ``void`` must be in
                ``pred``.
            pred: predicted segments.
            image_id: used in error messages.
            void: id of void pixels in both images (0 in COCO files, -1 in label-divisor
                panoptic images).
        """
        if gt_ids.shape != pred_ids.shape:
            raise PanopticError(f'image {image_id!r}: ground truth {gt_ids.shape} and '
                                f'prediction {pred_ids.shape} differ in size')
        for name, table in (('ground truth', gt), ('prediction', pred)):
            if len(np.unique(table.ids)) != len(table):
                raise PanopticError(f'image {image_id!r}: duplicate segment ids in the '
                                    f'{name} JSON')
            if np.any(table.ids == void):
                raise PanopticError(f'image {image_id!r}: segment id {void} is reserved for '
                                    f'void in the {name}')
        ng, npr = len(gt), len(pred)
        conf, unknown = confusion(gt_ids, gt.ids, pred_ids, pred.ids, void)
        if len(unknown):
            raise PanopticError(f'image {image_id!r}: segment ids {unknown[:10].tolist()} are in '
                                'the prediction PNG but not in its JSON')
        pred_in_image = conf.sum(axis=0)
        pred_area = pred_in_image[1:npr + 1]
        if np.any(pred_area == 0):
            missing = pred.ids[pred_area == 0]
            raise PanopticError(f'image {image_id!r}: segment ids {missing[:10].tolist()} are '
                                'in the prediction JSON but not in its PNG')
        pred_cat = self._index(pred.category_ids)
        if np.any(pred_cat == len(self._cat_ids)):
            bad = pred.category_ids[pred_cat == len(self._cat_ids)]
            raise PanopticError(f'image {image_id!r}: predicted category ids '
                                f'{sorted(set(bad.tolist()))} are not among the ground-truth '
                                'categories')
        gt_cat = self._index(gt.category_ids)
        gt_area = gt.areas if gt.areas is not None else conf.sum(axis=1)[1:ng + 1]

        inter = conf[1:ng + 1, 1:npr + 1]          # [G, P]
        pred_void = conf[ng + 1, 1:npr + 1]        # [P] predicted pixels on void
        union = pred_area[None, :] + gt_area[:, None] - inter - pred_void[None, :]
        candidate = ((gt.category_ids[:, None] == pred.category_ids[None, :]) &
                     ~gt.iscrowd[:, None] & (inter > 0))
        iou = np.zeros(inter.shape, np.float64)
        np.divide(inter, union, out=iou, where=candidate)
        match = iou > 0.5
        gi, pj = np.nonzero(match)
        np.add.at(self.tp, gt_cat[gi], 1)
        np.add.at(self.iou, gt_cat[gi], iou[gi, pj])

        gt_matched = match.any(axis=1)
        np.add.at(self.fn, gt_cat[~gt_matched & ~gt.iscrowd], 1)

        # Crowd region of each category: the last crowd segment listed wins (as officially).
        crowd_row = np.full(len(self._cat_ids) + 1, -1, np.int64)
        for k in np.flatnonzero(gt.iscrowd):
            crowd_row[gt_cat[k]] = k
        unmatched = np.flatnonzero(~match.any(axis=0))
        rows = crowd_row[pred_cat[unmatched]]
        on_crowd = np.zeros(len(unmatched), np.int64)
        has = rows >= 0
        on_crowd[has] = inter[rows[has], unmatched[has]]
        ignored = pred_void[unmatched] + on_crowd
        is_fp = ignored / pred_area[unmatched] <= 0.5
        np.add.at(self.fp, pred_cat[unmatched[is_fp]], 1)

    def merge(self, other: 'PQAccumulator') -> 'PQAccumulator':
        """Add another accumulator's statistics (same categories) into this one."""
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self

    def state(self) -> tuple[np.ndarray, ...]:
        return self.iou, self.tp, self.fp, self.fn

    def load_state(self, state: Sequence[np.ndarray]) -> None:
        self.iou, self.tp, self.fp, self.fn = (np.array(a) for a in state)

    def summarize(self) -> dict:
        """Results in the official layout.

        Returns:
            ``{'All'|'Things'|'Stuff': {'pq', 'sq', 'rq', 'n'}, 'per_class': {category id:
            {'pq', 'sq', 'rq'}}}``; values are fractions (multiply by 100 for points). A
            category with no ground truth and no prediction scores 0 and is not counted in
            ``n``; a group with ``n == 0`` scores 0 (the official script divides by zero).
        """
        n = len(self._cat_ids)
        iou, tp, fp, fn = self.iou[:n], self.tp[:n], self.fp[:n], self.fn[:n]
        present = (tp + fp + fn) > 0
        denom = tp + 0.5 * fp + 0.5 * fn
        pq = np.divide(iou, denom, out=np.zeros(n), where=present)
        sq = np.divide(iou, tp, out=np.zeros(n), where=tp > 0)
        rq = np.divide(tp, denom, out=np.zeros(n), where=present)
        isthing = np.array([int(c.get('isthing', 0)) == 1 for c in self.categories.values()],
                           dtype=bool)
        results = {}
        for name, sel in (('All', np.ones(n, bool)), ('Things', isthing), ('Stuff', ~isthing)):
            m = sel & present
            k = int(m.sum())
            results[name] = {
                'pq': float(pq[m].sum() / k) if k else 0.0,
                'sq': float(sq[m].sum() / k) if k else 0.0,
                'rq': float(rq[m].sum() / k) if k else 0.0,
                'n': k,
            }
        results['per_class'] = {
            int(c): {'pq': float(pq[i]), 'sq': float(sq[i]), 'rq': float(rq[i])}
            for i, c in enumerate(self._cat_ids)}
        return results


def format_pq_table(results: Mapping, categories: Mapping[int, Mapping]) -> str:
    """The results as a text table (per class, then All/Things/Stuff), in points."""
    lines = [f'{"Category":22s}| {"PQ":>5s}  {"SQ":>5s}  {"RQ":>5s}']
    for cat_id in sorted(results['per_class'], key=int):
        r = results['per_class'][cat_id]
        name = str(categories[int(cat_id)].get('name', cat_id))[:22]
        lines.append(f'{name:22s}| {100 * r["pq"]:5.1f}  {100 * r["sq"]:5.1f}  '
                     f'{100 * r["rq"]:5.1f}')
    lines.append('-' * 49)
    lines.append(f'{"":22s}| {"PQ":>5s}  {"SQ":>5s}  {"RQ":>5s}  {"N":>5s}')
    for name in ('All', 'Things', 'Stuff'):
        r = results[name]
        lines.append(f'{name:22s}| {100 * r["pq"]:5.1f}  {100 * r["sq"]:5.1f}  '
                     f'{100 * r["rq"]:5.1f}  {r["n"]:5d}')
    return '\n'.join(lines)
