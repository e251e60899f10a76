"""The one result type passed from inference to the ROS layer, the evaluator and the bag tools."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from functools import cached_property

import cv2
import numpy as np
import torch


@dataclass
class PanopticResult:
    """Panoptic segmentation of one image, on the device that computed it.

    Post-processing works on a grid usually coarser than the image. The result keeps the label
    maps on that grid and brings them to the image size (nearest neighbour) on first access,
    so that a consumer pays only for the maps it reads (the node skips outputs nobody
    subscribes to). The segment statistics are exact for the image size.

    Attributes:
        grid_semantic, grid_instance, grid_panoptic: ``[h, w] int32`` label maps on the
            post-processing grid.
        size: ``(H, W)`` of the image.
        semantic: ``[H, W] int32`` class ids; ``void_id`` on void (computed on access).
        instance: ``[H, W] int32`` instance ids ``1..S_things``, unique in the image; 0 for
            stuff and void (computed on access).
        panoptic: ``[H, W] int32`` ``class_id * label_divisor + instance_id``; -1 on void
            (computed on access).
        segment_ids: ``[S] int32`` panoptic id of each segment (its value in ``panoptic``).
        segment_classes: ``[S] int64`` class id.
        segment_instance_ids: ``[S] int32`` value in ``instance`` (0 for stuff).
        segment_is_thing: ``[S] bool``.
        segment_scores: ``[S] float32`` detection score (things) or mean class probability
            (stuff).
        segment_areas: ``[S] int64`` pixels.
        segment_boxes: ``[S, 4] int64`` ``x, y, width, height`` in pixels.
        segment_centroids: ``[S, 2] float32`` ``x, y`` centre of mass in pixels.
        void_id: semantic value of void pixels.
        label_divisor: multiplier of the class id in ``panoptic``.
        timings_ms: stage name -> milliseconds, filled by whoever ran the stages.
    """

    grid_semantic: torch.Tensor
    grid_instance: torch.Tensor
    grid_panoptic: torch.Tensor
    size: tuple[int, int]
    segment_ids: torch.Tensor
    segment_classes: torch.Tensor
    segment_instance_ids: torch.Tensor
    segment_is_thing: torch.Tensor
    segment_scores: torch.Tensor
    segment_areas: torch.Tensor
    segment_boxes: torch.Tensor
    segment_centroids: torch.Tensor
    void_id: int
    label_divisor: int
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def num_segments(self) -> int:
        return int(self.segment_ids.numel())

    @cached_property
    def semantic(self) -> torch.Tensor:
        return upsample_nearest(self.grid_semantic, self.size)

    @cached_property
    def instance(self) -> torch.Tensor:
        return upsample_nearest(self.grid_instance, self.size)

    @cached_property
    def panoptic(self) -> torch.Tensor:
        return upsample_nearest(self.grid_panoptic, self.size)

    def to(self, device: str | torch.device) -> 'PanopticResult':
        """Copy of the result with every tensor on ``device``."""
        kw = {f.name: (v.to(device) if isinstance(v, torch.Tensor) else v)
              for f in fields(self) for v in [getattr(self, f.name)]}
        return PanopticResult(**kw)


def nearest_sources(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out] int32`` source index of each output pixel of a nearest-neighbour resize.

    Taken from OpenCV's ``INTER_NEAREST`` itself (``floor(i * n_in / n_out)``), so that
    :func:`upsample_nearest` on CPU and on GPU give the same image.
    """
    return cv2.resize(np.arange(n_in, dtype=np.int32)[None], (n_out, 1),
                      interpolation=cv2.INTER_NEAREST)[0]


def upsample_nearest(labels: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a label image, ``[h, w] int32 -> [H, W] int32``.

    OpenCV on CPU (about 4x faster than torch's gather there), index gathers elsewhere.
    """
    if tuple(labels.shape) == tuple(out_size):
        return labels
    if labels.device.type == 'cpu':
        return torch.from_numpy(cv2.resize(labels.contiguous().numpy(), out_size[::-1],
                                           interpolation=cv2.INTER_NEAREST))
    rows = torch.from_numpy(nearest_sources(labels.shape[0], out_size[0])).to(labels.device)
    cols = torch.from_numpy(nearest_sources(labels.shape[1], out_size[1])).to(labels.device)
    return labels.index_select(0, rows).index_select(1, cols)


def segment_index(semantic: torch.Tensor, instance: torch.Tensor, n_inst: int,
                   void_id: int) -> torch.Tensor:
    """0 void, ``1..n`` instances, ``n + 1 + c`` stuff of class ``c`` (``[H, W] int64``)."""
    stuff = n_inst + 1 + semantic
    index = torch.where(instance > 0, instance, stuff)
    return torch.where(semantic == void_id, torch.zeros_like(index), index)


@functools.lru_cache(maxsize=16)
def _axis_weights(n_in: int, n_out: int, device: str) -> tuple[torch.Tensor, ...]:
    """Per source pixel of a nearest-neighbour resize along one axis: how many output pixels
    it becomes, the sum of their coordinates, and the first and last of them (``[n_in]``
    float64, float64, int64, int64; first = ``n_out`` and last = -1 where it becomes none).
    The same for every frame of a stream, hence cached."""
    src = torch.from_numpy(nearest_sources(n_in, n_out)).to(device).long()
    pos = torch.arange(n_out, device=device)
    count = torch.bincount(src, minlength=n_in).double()
    total = torch.bincount(src, weights=pos.double(), minlength=n_in)
    first = torch.full((n_in,), n_out, device=device).scatter_reduce(0, src, pos, 'amin')
    last = torch.full((n_in,), -1, device=device).scatter_reduce(0, src, pos, 'amax')
    return count, total, first, last


@functools.lru_cache(maxsize=4)
def _pixel_weights(h: int, w: int, out_h: int, out_w: int,
                   device: str) -> tuple[torch.Tensor, ...]:
    """Per grid pixel (``[h * w]``, row-major): its row and column, how many output columns
    and the sum of their x its column becomes, and how many output rows its row becomes."""
    r_count = _axis_weights(h, out_h, device)[0]
    c_count, c_total = _axis_weights(w, out_w, device)[:2]
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    return rows, cols, c_count[cols], c_total[cols], r_count[rows]


def _extent(hist: torch.Tensor, shown: torch.Tensor, first: torch.Tensor,
            last: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last output coordinate of each segment along one axis, from ``hist``
    ``[S, n]`` (> 0 where the segment has a shown pixel in grid line ``i``); ``size`` and -1
    for segments with none."""
    present = (hist > 0) & shown[None, :]
    lo = torch.where(present, first[None, :], torch.full_like(first, size)[None, :]).amin(1)
    hi = torch.where(present, last[None, :], torch.full_like(last, -1)[None, :]).amax(1)
    return lo, hi


def build_result(semantic, instance, n_inst, num_classes, seg_score, is_thing, void_id,
            label_divisor, out_size) -> PanopticResult:
    """The result at ``out_size`` from label maps on a (usually coarser) grid.

    Segment areas, boxes and centroids are those of the nearest-neighbour upsampled maps,
    computed exactly on the grid: each grid pixel counts as the block of output pixels it
    becomes. The block's size and coordinate sums factor into a row and a column part, so
    every statistic comes from two histograms per segment, over grid rows and grid columns
    (``[S, h]`` and ``[S, w]``), instead of one scatter per statistic over all pixels.
    """
    device = semantic.device
    h, w = semantic.shape
    index_map = segment_index(semantic, instance, n_inst, void_id)
    index = index_map.flatten()
    n_seg = n_inst + 1 + num_classes
    r_count, r_total, r_first, r_last = _axis_weights(h, out_size[0], str(device))
    c_count, _, c_first, c_last = _axis_weights(w, out_size[1], str(device))
    rows, cols, px_cols, px_xsum, px_rows = _pixel_weights(h, w, *out_size, str(device))
    by_row = index * h + rows                     # (segment, grid row) bins
    # per (segment, grid row): output columns its pixels become, and their x sum
    row_cols = torch.bincount(by_row, weights=px_cols, minlength=n_seg * h).view(n_seg, h)
    row_xsum = torch.bincount(by_row, weights=px_xsum, minlength=n_seg * h).view(n_seg, h)
    # per (segment, grid column): output rows its pixels become
    col_rows = torch.bincount(index * w + cols, weights=px_rows,
                              minlength=n_seg * w).view(n_seg, w)
    area = (row_cols @ r_count).round().long()
    sum_x = row_xsum @ r_count
    sum_y = row_cols @ r_total
    y0, y1 = _extent(row_cols, r_count > 0, r_first, r_last, max(out_size))
    x0, x1 = _extent(col_rows, c_count > 0, c_first, c_last, max(out_size))
    present = area > 0
    present[0] = False
    seg = torch.nonzero(present).flatten()
    seg_is_inst = (seg >= 1) & (seg <= n_inst)
    # class of each segment: instances read it from the map, stuff from the index
    cls_of_inst = torch.zeros(n_seg, dtype=torch.int64, device=device)
    inst_px = instance.flatten() > 0
    cls_of_inst.scatter_(0, index[inst_px], semantic.flatten()[inst_px].long())
    classes = torch.where(seg_is_inst, cls_of_inst[seg], seg - n_inst - 1)
    inst_ids = torch.where(seg_is_inst, seg, torch.zeros_like(seg))
    semantic, instance = semantic.to(torch.int32), instance.to(torch.int32)
    panoptic = torch.where(semantic == void_id, torch.full_like(semantic, -1),
                           semantic * label_divisor + instance)
    area_s = area[seg].clamp(min=1).double()
    return PanopticResult(
        grid_semantic=semantic, grid_instance=instance, grid_panoptic=panoptic,
        size=tuple(out_size),
        segment_ids=(classes * label_divisor + inst_ids).to(torch.int32),
        segment_classes=classes, segment_instance_ids=inst_ids.to(torch.int32),
        segment_is_thing=is_thing[classes], segment_scores=seg_score[seg].float(),
        segment_areas=area[seg],
        segment_boxes=torch.stack([x0[seg], y0[seg], x1[seg] - x0[seg] + 1,
                                   y1[seg] - y0[seg] + 1], 1),
        segment_centroids=torch.stack([sum_x[seg] / area_s, sum_y[seg] / area_s], 1).float(),
        void_id=void_id, label_divisor=label_divisor)


def grid_result(semantic: torch.Tensor, instance: torch.Tensor, scores: torch.Tensor,
                prob: torch.Tensor, is_thing: torch.Tensor, *, min_stuff_area: int,
                void_id: int, label_divisor: int, out_size: tuple[int, int]) -> PanopticResult:
    """The result of label maps made on a grid by bottom-up architectures: stuff regions under
    ``min_stuff_area`` (pixels at ``out_size``) become void, stuff scores are the mean
    probability of the class over its region, instance scores are given.

    Args:
        semantic: ``[h, w] int64`` class ids, ``void_id`` on void.
        instance: ``[h, w] int64`` instance ids ``1..n`` (0: stuff and void).
        scores: ``[n]`` instance scores.
        prob: ``[C, h, w]`` class probabilities.
        is_thing: ``[C] bool``.
    """
    c, h, w = prob.shape
    device = prob.device
    sem, inst = semantic.flatten(), instance.flatten()
    probs = prob.flatten(1)
    stuff = (sem != void_id) & (inst == 0)
    st_bins = torch.where(stuff, sem, torch.full_like(sem, c))
    st_count = torch.bincount(st_bins, minlength=c + 1)[:c]
    if min_stuff_area > 0:
        small = st_count < min_stuff_area * (h * w) / float(out_size[0] * out_size[1])
        small = torch.cat([small, small.new_zeros(1)])
        drop = small.index_select(0, st_bins)
        sem = torch.where(drop, torch.full_like(sem, void_id), sem)
        st_bins = torch.where(drop, torch.full_like(st_bins, c), st_bins)
        st_count = torch.bincount(st_bins, minlength=c + 1)[:c]
    p_sem = probs.gather(0, st_bins.clamp(max=c - 1)[None])[0]
    st_score = torch.bincount(st_bins, weights=p_sem.double(), minlength=c + 1)[:c] / \
        st_count.clamp(min=1)
    n = scores.numel()
    seg_score = torch.cat([torch.zeros(1, dtype=torch.float64, device=device),
                           scores.double(), st_score])
    return build_result(sem.view(h, w), inst.view(h, w), n, c, seg_score, is_thing, void_id,
                        label_divisor, out_size)


def labelled_instances_result(semantic: torch.Tensor, instance: torch.Tensor, n: int,
                              prob: torch.Tensor, is_thing: torch.Tensor, *,
                              seed_scores: torch.Tensor | None = None,
                              score_threshold: float, min_stuff_area: int, void_id: int,
                              label_divisor: int, out_size: tuple[int, int]) -> PanopticResult:
    """The result of bottom-up instances that each cover cells of their own semantic class
    (votes or clusters within one class): an instance's score is the mean probability of its
    class over its cells (times ``seed_scores`` when given); instances under
    ``score_threshold`` and thing cells without an instance become void; then
    :func:`grid_result`.

    Args:
        semantic: ``[h, w] int64`` argmax class.
        instance: ``[h, w] int64`` instance ``0..n-1`` of each cell, -1 for none.
        prob: ``[C, h, w]`` class probabilities; ``is_thing``: ``[C] bool``.
        seed_scores: ``[n]`` factors of the scores (CASNet's seed probabilities).
    """
    _, h, w = prob.shape
    inst, sem = instance.flatten(), semantic.flatten()
    has = inst >= 0
    if n:
        bins = torch.where(has, inst, torch.full_like(inst, n))
        p_cls = prob.flatten(1).gather(0, sem[None])[0]
        area = torch.bincount(bins, minlength=n + 1)[:n].clamp(min=1)
        score = torch.bincount(bins, weights=p_cls.double(), minlength=n + 1)[:n] / area
        if seed_scores is not None:
            score = seed_scores.double() * score
        keep = score >= score_threshold
        new_id = torch.cumsum(keep.long(), 0) - 1
        safe = inst.clamp(min=0)
        inst = torch.where(has & keep.index_select(0, safe), new_id.index_select(0, safe),
                           torch.full_like(inst, -1))
        has, score = inst >= 0, score[keep]
    else:
        score = torch.zeros(0, dtype=torch.float64, device=prob.device)
    thing_px = is_thing.index_select(0, sem)
    sem = torch.where(thing_px & ~has, torch.full_like(sem, void_id), sem)
    return grid_result(sem.view(h, w), (inst + 1).view(h, w), score, prob, is_thing,
                       min_stuff_area=min_stuff_area, void_id=void_id,
                       label_divisor=label_divisor, out_size=out_size)
