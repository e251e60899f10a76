"""Panoptic fusion shared by the architectures that predict instances and semantics
separately: score-ordered pasting of instance masks over the semantic argmax.

Score-ordered pasting is sequential: whether an instance is kept depends on the instances
kept before it. On the CPU it runs in that order, each instance on its mask's bounding box; on
a GPU it is computed as the fixed point of that triangular dependency on whole masks (iteration
``t`` settles at least the first ``t`` instances, real inputs settle in a few), which needs no
host round trip per instance. Both give the same result.
"""

from __future__ import annotations

import numpy as np
import torch

from panoptic_ros.models.result import PanopticResult, build_result, segment_index


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
    if masks.device.type == 'cpu':
        return _paste_in_order(masks, keep, overlap_threshold)
    return _paste_fixed_point(masks, keep, overlap_threshold)


def _paste_fixed_point(masks: torch.Tensor, keep: torch.Tensor,
                       overlap_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`paste_instances` on whole masks, as the fixed point of the keep rule."""
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


def _paste_in_order(masks: torch.Tensor, keep: torch.Tensor,
                    overlap_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`paste_instances` on the CPU: instance by instance, on its bounding box.

    A loop over the ``J`` candidates (at most the post-processing's detection limit, 100 for
    the bundled models), each step a few numpy passes over one box: on the CPU this is 3x
    faster than the fixed point's passes over all ``J`` masks (docs/benchmarks.md, node
    overhead). numpy, not torch, because per-call overhead dominates on boxes this small."""
    m = masks.numpy()
    j, h, w = m.shape
    owner = np.full((h, w), -1, np.int64)
    kept = np.zeros(j, bool)
    rows, cols = m.any(2), m.any(1)                  # [J, H], [J, W]
    candidates = keep.numpy() & rows.any(1)
    for k in np.flatnonzero(candidates):
        y0, y1 = rows[k].argmax(), h - rows[k][::-1].argmax()
        x0, x1 = cols[k].argmax(), w - cols[k][::-1].argmax()
        mask = m[k, y0:y1, x0:x1]
        own = owner[y0:y1, x0:x1]                    # a view: claims write through
        claim = mask & (own < 0)
        area = np.count_nonzero(mask)
        # float32 as the fixed point compares, so that both paths agree on the boundary
        taken = np.float32(area - np.count_nonzero(claim))
        if taken > np.float32(overlap_threshold) * np.float32(area):
            continue
        own[claim] = k
        kept[k] = True
    return torch.from_numpy(owner), torch.from_numpy(kept)


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
    low_index = segment_index(semantic, instance, n_inst, void_id)
    # scores: detection score for instances, mean class probability for stuff (at H x W)
    prob_of = semantic_prob.gather(0, semantic.clamp(max=num_classes - 1)[None])[0]
    n_seg = n_inst + 1 + num_classes
    low_area = torch.bincount(low_index.flatten(), minlength=n_seg)
    seg_score = torch.bincount(low_index.flatten(), weights=prob_of.flatten().float(),
                               minlength=n_seg) / low_area.clamp(min=1)
    if n_inst:
        seg_score[1:n_inst + 1] = scores[kept].float()
    return build_result(semantic, instance, n_inst, num_classes, seg_score, is_thing,
                        void_id, label_divisor, out_size)
