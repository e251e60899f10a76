"""Post-processing shared by the architectures: pure, shape-documented torch functions.

They run on the device of their inputs (CPU or GPU), vectorised: no Python loop over pixels,
boxes or instances. Sequential rules (greedy NMS, score-ordered pasting of instances) are
computed as fixed points of a triangular dependency: iteration ``t`` settles at least the first
``t`` items, and real inputs settle in a few iterations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from panoptic_ros.models.result import PanopticResult, nearest_sources

_EPS = 1e-6


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU. ``a [K, 4]``, ``b [M, 4]`` as ``x1, y1, x2, y2`` -> ``[K, M]``."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=_EPS)


def nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
        iou_threshold: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy non-maximum suppression per class, exactly, in tensor operations.

    Args:
        boxes: ``[K, 4]`` ``x1, y1, x2, y2``.
        scores: ``[K]``.
        classes: ``[K]`` integer class of each box; boxes of different classes never
            suppress each other.
        iou_threshold: a box is suppressed by a kept, higher-scoring box of its class with
            IoU above this.
        valid: ``[K] bool`` candidates (others are neither kept nor suppress).

    Returns:
        ``[K] bool`` kept, in the input order.
    """
    k = boxes.shape[0]
    if k == 0:
        return torch.zeros(0, dtype=torch.bool, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    b, c = boxes[order], classes[order]
    ok = torch.ones(k, dtype=torch.bool, device=boxes.device) if valid is None else valid[order]
    # suppress[i, j]: i (higher score) would suppress j
    suppress = (box_iou(b, b) > iou_threshold) & (c[:, None] == c[None, :])
    suppress = torch.triu(suppress, diagonal=1) & ok[:, None]
    keep = ok.clone()
    for _ in range(k):
        new = ok & ~(suppress & keep[:, None]).any(dim=0)
        if torch.equal(new, keep):
            break
        keep = new
    out = torch.empty_like(keep)
    out[order] = keep
    return out


def locations(height: int, width: int, stride: int, device=None) -> torch.Tensor:
    """Image coordinates of feature-map cells (section 4.1): ``[2, h, w]`` (x, y)."""
    ys = torch.arange(height, device=device, dtype=torch.float32) * stride + stride // 2
    xs = torch.arange(width, device=device, dtype=torch.float32) * stride + stride // 2
    return torch.stack(torch.meshgrid(xs, ys, indexing='xy'), dim=0)


def decode_boxes(offsets: torch.Tensor, stride: int) -> torch.Tensor:
    """Offsets ``(l, t, r, b)`` to boxes (eq. 8 inverted).

    Args:
        offsets: ``[N, 4, h, w]`` non-negative distances in pixels.
        stride: of the feature map.

    Returns:
        ``[N, 4, h, w]`` boxes ``x1, y1, x2, y2`` in image pixels.
    """
    loc = locations(offsets.shape[-2], offsets.shape[-1], stride, offsets.device)
    return torch.cat([loc - offsets[:, :2], loc + offsets[:, 2:]], dim=1)


def dense_boxes(box_reg: list[torch.Tensor], levelness: torch.Tensor) -> torch.Tensor:
    """The global dense box map (eq. 14) on the levelness grid (stride 4).

    Each level's offsets ``(l, t, r, b)`` are upsampled bilinearly to the grid (offsets vary
    linearly across an object, so coarse levels still give sharp boxes), each pixel takes the
    level its levelness ranks first among the FPN levels, and offsets are decoded at the grid
    locations. Background is left to the semantic probabilities of eq. 5.

    Args:
        box_reg: ``L`` tensors ``[N, 4, h_i, w_i]``.
        levelness: ``[N, L + 1, H, W]`` logits; channel 0 is background.

    Returns:
        ``[N, 4, H, W]`` boxes ``x1, y1, x2, y2``.
    """
    size = levelness.shape[-2:]
    up = torch.stack([F.interpolate(r, size=size, mode='bilinear', align_corners=False)
                      for r in box_reg], 1)                             # [N, L, 4, H, W]
    level = levelness[:, 1:].argmax(dim=1)                              # [N, H, W]
    pick = level[:, None, None].expand(-1, 1, 4, -1, -1)
    return decode_boxes(up.gather(1, pick).squeeze(1), stride=4)


def level_candidates(box_reg: list[torch.Tensor], box_cls: list[torch.Tensor],
                     centerness: list[torch.Tensor], strides, threshold: float,
                     topk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Detection candidates from every level (FCOS-style, section 4.1), with static shapes.

    A (location, class) pair is a candidate when its class probability exceeds
    ``threshold``; its score is that probability times the centerness probability; each level
    keeps its ``min(topk, T h_i w_i)`` best. Shapes depend only on the input size, so the
    function exports to ONNX (TopK, Gather, Where); slots that are not candidates have score 0.

    Args:
        box_reg, box_cls, centerness: per level ``[N, 4, h, w]``, ``[N, T, h, w]``,
            ``[N, 1, h, w]``.

    Returns:
        ``boxes [N, K, 4]`` (``x1, y1, x2, y2``), ``scores [N, K]`` (0: no candidate),
        ``classes [N, K] int64`` (box class ``0..T-1``).
    """
    boxes, scores, classes = [], [], []
    for reg, cls, ctr, stride in zip(box_reg, box_cls, centerness, strides):
        n, t, h, w = cls.shape
        prob = cls.float().sigmoid()
        score = prob * ctr.float().sigmoid()                           # [N, T, h, w]
        score = torch.where(prob > threshold, score, torch.zeros_like(score)).flatten(1)
        top, idx = score.topk(min(topk, t * h * w), dim=1)             # [N, k]
        loc = idx % (h * w)
        dec = decode_boxes(reg.float(), stride).flatten(2)            # [N, 4, h*w]
        boxes.append(dec.gather(2, loc[:, None].expand(-1, 4, -1)).transpose(1, 2))
        scores.append(top)
        classes.append(torch.div(idx, h * w, rounding_mode='floor'))
    return torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(classes, 1)


def box_iou_map(boxes: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """IoU between every pixel's box and each query box (eq. 6).

    Args:
        boxes: ``[4, H, W]`` the global dense boxes ``x1, y1, x2, y2``.
        queries: ``[J, 4]``.

    Returns:
        ``[J, H, W]``.
    """
    q = queries[:, :, None, None]
    iw = (torch.minimum(boxes[2], q[:, 2]) - torch.maximum(boxes[0], q[:, 0])).clamp(min=0)
    ih = (torch.minimum(boxes[3], q[:, 3]) - torch.maximum(boxes[1], q[:, 1])).clamp(min=0)
    inter = iw * ih
    area_p = ((boxes[2] - boxes[0]).clamp(min=0) * (boxes[3] - boxes[1]).clamp(min=0))
    area_q = (q[:, 2] - q[:, 0]).clamp(min=0) * (q[:, 3] - q[:, 1]).clamp(min=0)
    return inter / (area_p[None] + area_q - inter).clamp(min=_EPS)


def construct_masks(boxes: torch.Tensor, semantic_prob: torch.Tensor, queries: torch.Tensor,
                    query_classes: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameter-free mask construction (section 3.2, eq. 5-7).

    Args:
        boxes: ``[4, H, W]`` global dense boxes.
        semantic_prob: ``[C, H, W]`` class probabilities.
        queries: ``[J, 4]`` query boxes (after NMS).
        query_classes: ``[J] int64`` semantic class id of each query.
        sigma: threshold on the mask probability (0.3 in the paper, appendix A).

    Returns:
        ``masks [J, H, W] bool`` and ``probability [J, H, W]``.
    """
    prob = box_iou_map(boxes, queries) * semantic_prob[query_classes]
    return prob > sigma, prob


def paste_instances(masks: torch.Tensor, keep: torch.Tensor,
                    overlap_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-ordered pasting: each pixel goes to the first kept instance covering it.

    An instance is dropped when more than ``overlap_threshold`` of its mask is already taken
    by earlier kept instances (the usual panoptic fusion rule).

    Args:
        masks: ``[J, H, W] bool`` sorted by decreasing score.
        keep: ``[J] bool`` candidates (score above threshold, non-empty).

    Returns:
        ``owner [H, W] int64`` index of the owning instance or -1, and ``kept [J] bool``.
    """
    j = masks.shape[0]
    if j == 0:
        return (torch.full(masks.shape[1:], -1, dtype=torch.int64, device=masks.device),
                keep.clone())
    area = masks.flatten(1).sum(1)
    base = keep & (area > 0)
    kept = base.clone()
    for _ in range(max(j, 1)):
        active = masks & kept[:, None, None]
        before = (torch.cumsum(active.to(torch.int32), dim=0) - active.to(torch.int32)) > 0
        taken = (masks & before).flatten(1).sum(1)
        new = base & (taken <= overlap_threshold * area)
        if torch.equal(new, kept):
            break
        kept = new
    active = masks & kept[:, None, None]
    first = torch.cumsum(active.to(torch.int32), dim=0) == 1
    claimed = active & first
    # max(0).indices: the first maximum like argmax(0), several times faster on CPU
    owner = torch.where(claimed.any(0), claimed.to(torch.int8).max(0).indices,
                        torch.full(masks.shape[1:], -1, device=masks.device))
    return owner.to(torch.int64), kept


def fuse_panoptic(semantic_prob: torch.Tensor, masks: torch.Tensor, scores: torch.Tensor,
                  classes: torch.Tensor, is_thing: torch.Tensor, *, score_threshold: float,
                  overlap_threshold: float, min_stuff_area: int, void_id: int,
                  label_divisor: int, out_size: tuple[int, int]) -> PanopticResult:
    """Panoptic fusion: instances over stuff (Kirillov et al., the paper's ref. [14]).

    Instances are pasted in score order (see :func:`paste_instances`); other pixels take the
    semantic argmax; thing-class pixels no instance claims and stuff regions smaller than
    ``min_stuff_area`` (pixels at ``out_size``) become void. Label maps are upsampled to
    ``out_size`` with nearest neighbour.

    Args:
        semantic_prob: ``[C, H, W]`` class probabilities.
        masks: ``[J, H, W] bool`` instance masks sorted by decreasing score.
        scores: ``[J]``.
        classes: ``[J] int64`` semantic class ids of the instances.
        is_thing: ``[C] bool``.
        out_size: ``(H_out, W_out)`` of the result (the input image).
    """
    num_classes, h, w = semantic_prob.shape
    device = semantic_prob.device
    owner, kept = paste_instances(masks, scores >= score_threshold, overlap_threshold)
    claimed = owner >= 0
    idx = owner.clamp(min=0)
    inst_id_of = torch.cumsum(kept.to(torch.int64), 0) * kept        # [J]: 1..n or 0
    sem = semantic_prob.max(0).indices              # = argmax(0), faster on CPU
    if classes.numel():
        semantic = torch.where(claimed, classes[idx], sem)
        instance = torch.where(claimed, inst_id_of[idx], torch.zeros_like(sem))
    else:
        semantic, instance = sem, torch.zeros_like(sem)
    void = torch.full_like(semantic, void_id)
    semantic = torch.where(~claimed & is_thing[sem], void, semantic)
    stuff_px = (semantic != void_id) & ~claimed
    counts = torch.bincount(semantic[stuff_px], minlength=num_classes)
    scale = (h * w) / float(out_size[0] * out_size[1])
    small = (counts < min_stuff_area * scale) & ~is_thing
    semantic = torch.where(stuff_px & small[semantic.clamp(max=num_classes - 1)], void, semantic)

    n_inst = int(kept.sum())
    low_index = _segment_index(semantic, instance, n_inst, void_id)
    # scores: detection score for instances, mean class probability for stuff (at H x W)
    prob_of = semantic_prob.gather(0, semantic.clamp(max=num_classes - 1)[None])[0]
    n_seg = n_inst + 1 + num_classes
    low_area = torch.bincount(low_index.flatten(), minlength=n_seg)
    seg_score = torch.bincount(low_index.flatten(), weights=prob_of.flatten().float(),
                               minlength=n_seg) / low_area.clamp(min=1)
    if n_inst:
        seg_score[1:n_inst + 1] = scores[kept].float()
    return _result(semantic, instance, n_inst, num_classes, seg_score, is_thing, void_id,
                   label_divisor, out_size)


def index_boxes(index: torch.Tensor, n: int) -> torch.Tensor:
    """Bounding box of every value of an index image.

    Args:
        index: ``[H, W]`` integer image with values in ``0..n-1``.
        n: number of values.

    Returns:
        ``[n, 4] int64`` ``x0, y0, x1, y1`` (inclusive) on ``index``'s device; values absent
        from the image get ``x0 = y0 = max(H, W)``, ``x1 = y1 = 0``.
    """
    h, w = index.shape
    flat = index.flatten().long()
    xs = torch.arange(w, device=index.device).repeat(h)
    ys = torch.arange(h, device=index.device).repeat_interleave(w)
    big = torch.full((n,), max(h, w), dtype=torch.int64, device=index.device)
    zero = torch.zeros_like(big)
    return torch.stack([big.scatter_reduce(0, flat, xs, 'amin'),
                        big.scatter_reduce(0, flat, ys, 'amin'),
                        zero.scatter_reduce(0, flat, xs, 'amax'),
                        zero.scatter_reduce(0, flat, ys, 'amax')], 1)


def _segment_index(semantic: torch.Tensor, instance: torch.Tensor, n_inst: int,
                   void_id: int) -> torch.Tensor:
    """0 void, ``1..n`` instances, ``n + 1 + c`` stuff of class ``c`` (``[H, W] int64``)."""
    stuff = n_inst + 1 + semantic
    index = torch.where(instance > 0, instance, stuff)
    return torch.where(semantic == void_id, torch.zeros_like(index), index)


def _axis_weights(n_in: int, n_out: int, device) -> tuple[torch.Tensor, ...]:
    """Per source pixel of a nearest-neighbour resize along one axis: how many output pixels
    it becomes, the sum of their coordinates, and the first and last of them (``[n_in]``
    float64, float64, int64, int64; first = ``n_out`` and last = -1 where it becomes none)."""
    src = torch.from_numpy(nearest_sources(n_in, n_out)).to(device).long()
    pos = torch.arange(n_out, device=device)
    count = torch.bincount(src, minlength=n_in).double()
    total = torch.bincount(src, weights=pos.double(), minlength=n_in)
    first = torch.full((n_in,), n_out, device=device).scatter_reduce(0, src, pos, 'amin')
    last = torch.full((n_in,), -1, device=device).scatter_reduce(0, src, pos, 'amax')
    return count, total, first, last


def _result(semantic, instance, n_inst, num_classes, seg_score, is_thing, void_id,
            label_divisor, out_size) -> PanopticResult:
    """The result at ``out_size`` from label maps on a (usually coarser) grid.

    Segment areas, boxes and centroids are those of the nearest-neighbour upsampled maps,
    computed exactly on the grid: each grid pixel counts as the block of output pixels it
    becomes.
    """
    device = semantic.device
    index_map = _segment_index(semantic, instance, n_inst, void_id)
    index = index_map.flatten()
    n_seg = n_inst + 1 + num_classes
    rows, cols = (_axis_weights(n, m, device) for n, m in zip(semantic.shape, out_size))
    weight = (rows[0][:, None] * cols[0][None, :]).flatten()
    area = torch.bincount(index, weights=weight, minlength=n_seg).round().long()
    sum_x = torch.bincount(index, weights=(rows[0][:, None] * cols[1][None, :]).flatten(),
                           minlength=n_seg)
    sum_y = torch.bincount(index, weights=(rows[1][:, None] * cols[0][None, :]).flatten(),
                           minlength=n_seg)
    shown = weight > 0                      # grid pixels that appear in the output
    big = torch.full((n_seg,), max(out_size), dtype=torch.int64, device=device)
    small = torch.full((n_seg,), -1, dtype=torch.int64, device=device)
    idx = index[shown]

    def extreme(init, per_axis, outer, reduce):
        per_px = per_axis[None, :].expand(semantic.shape) if outer else \
            per_axis[:, None].expand(semantic.shape)
        return init.scatter_reduce(0, idx, per_px.flatten()[shown], reduce)

    x0, x1 = extreme(big, cols[2], True, 'amin'), extreme(small, cols[3], True, 'amax')
    y0, y1 = extreme(big, rows[2], False, 'amin'), extreme(small, rows[3], False, 'amax')
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
