"""Track ids that stay with an object from frame to frame, for any architecture.

:class:`InstanceTracker` consumes one :class:`~panoptic_ros.models.result.PanopticResult` per
frame and gives every thing segment a track id (stuff: 0). It matches the frame's instances to
the live tracks of the same class by mask IoU on the post-processing grid (the result's
``grid_instance``; a track remembers its last mask), keeps unmatched tracks alive for
``max_age`` frames (short occlusions, missed detections) and opens new ids for unmatched
instances. Ids are never reused.

With ``predict_motion`` a track's mask is first moved by its constant-velocity prediction:
the displacement of its centroid between its last two matches, times the frames since it was
last seen. Objects that move a large part of their own size per frame (near ones, at 10 Hz
from a moving car) keep their track where the plain last-mask IoU would drop under the
threshold.

Assignment is greedy by IoU: each round pairs every instance and track that are each other's
best remaining match (what greedy matching by decreasing IoU picks, all at once). With a
threshold of at least 0.5 the matching is unique (disjoint masks cannot both overlap one mask
by more than half), so greedy and optimal (Hungarian) assignment agree; below 0.5 greedy is
what mask trackers commonly use and needs no solver at run time.

Everything runs on the result's device. A track's mask is kept as the list of its grid cells, so
a frame costs a look-up of the instance id under every track cell and one ``bincount`` of the
(instance, track) pairs (linear in the tracks' total area, not in cells x tracks), an
``instances x tracks`` IoU matrix, and at most ``min(instances, tracks)`` rounds of the
mutual-best rule (one or two in practice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from panoptic_ros.models.result import PanopticResult


@dataclass(frozen=True)
class TrackerConfig:
    """Matching parameters."""

    iou_threshold: float = 0.2     # mask IoU a match needs (tuned on training sequences)
    max_age: int = 5               # frames a track survives unmatched
    predict_motion: bool = True    # move a track's mask by its velocity before matching

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f'iou_threshold must be in (0, 1], got {self.iou_threshold!r}')
        if self.max_age < 0:
            raise ValueError(f'max_age must be >= 0, got {self.max_age!r}')


def greedy_match(iou: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy assignment on ``iou [N, K]``: ``[N] int64`` matched column or -1.

    Pairs below ``threshold`` never match; ties go to the lower index.
    """
    n, k = iou.shape
    match = torch.full((n,), -1, dtype=torch.long, device=iou.device)
    if n == 0 or k == 0:
        return match
    score = torch.where(iou >= threshold, iou, torch.full_like(iou, -1.0))
    rows = torch.arange(n, device=iou.device)
    for _ in range(min(n, k)):
        best_col = score.argmax(1)                                   # [N]
        best_row = score.argmax(0)                                   # [K]
        mutual = (best_row[best_col] == rows) & (score[rows, best_col] >= 0)
        if not bool(mutual.any()):
            break
        match = torch.where(mutual, best_col, match)
        taken_cols = torch.zeros(k, dtype=torch.bool, device=iou.device)
        taken_cols[best_col[mutual]] = True
        score[mutual] = -1.0
        score[:, taken_cols] = -1.0
    return match


def track_lut(result: PanopticResult, track_ids: torch.Tensor) -> np.ndarray:
    """``[n + 1] int64`` host look-up table: the track id of each instance id of ``result``
    (ids of the result's grid and segments; 0 for none), from the ``[S]`` ``track_ids`` of
    :meth:`InstanceTracker.update`."""
    inst = result.segment_instance_ids.cpu().numpy().astype(np.int64)
    lut = np.zeros(int(max(inst.max(initial=0), result.grid_instance.max().item())) + 1,
                   np.int64)
    lut[inst] = track_ids.cpu().numpy()
    return lut


class InstanceTracker:
    """Per-stream state: the live tracks' last masks (as cell lists), classes, ids and ages."""

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self.next_id = 1
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new stream); ids keep increasing."""
        self._grid: tuple[int, int] | None = None
        empty = torch.zeros(0, dtype=torch.long)
        self.cells, self.owner = empty, empty      # [M] flat cell, [M] track slot
        self.classes, self.ids, self.ages = empty, empty, empty     # [K] per track
        self.centre = torch.zeros(0, 2)            # [K, 2] (y, x) at the last match
        self.velocity = torch.zeros(0, 2)          # [K, 2] cells per frame

    def update(self, result: PanopticResult) -> torch.Tensor:
        """Track ids of this frame's segments: ``[S] int64``, 0 for stuff, in the order of
        ``result.segment_ids``."""
        grid = result.grid_instance
        device = grid.device
        if self._grid != tuple(grid.shape) or self.ids.device != device:
            self.reset()
            (self.cells, self.owner, self.classes, self.ids, self.ages, self.centre,
             self.velocity) = (t.to(device) for t in (self.cells, self.owner, self.classes,
                                                      self.ids, self.ages, self.centre,
                                                      self.velocity))
            self._grid = tuple(grid.shape)
        height, width = grid.shape
        inst = grid.flatten().long()                                  # 0, 1..n
        thing = result.segment_is_thing.to(device)
        seg_inst = result.segment_instance_ids.to(device).long()
        n = int(seg_inst[thing].max()) if bool(thing.any()) else 0
        cls = torch.zeros(n + 1, dtype=torch.long, device=device)
        cls[seg_inst[thing]] = result.segment_classes.to(device)[thing].long()
        cls = cls[1:]                                                 # [n] class of 1..n
        cur_cells = torch.nonzero(inst > 0).flatten()
        cur_inst = inst[cur_cells] - 1                                # [C] 0..n-1
        area = torch.bincount(cur_inst, minlength=n).float()
        centre = torch.stack([torch.bincount(cur_inst, weights=(cur_cells // width).float(),
                                             minlength=n),
                              torch.bincount(cur_inst, weights=(cur_cells % width).float(),
                                             minlength=n)], 1) / area.clamp(min=1)[:, None]
        k = self.ids.numel()
        match = torch.full((n,), -1, dtype=torch.long, device=device)
        if n and k:
            # overlap of every instance with every track: the instance id under each track
            # cell (moved by the track's predicted displacement), counted per (instance,
            # track) pair
            if self.config.predict_motion:
                shift = torch.round(self.velocity * (self.ages + 1)[:, None]).long()[self.owner]
                y, x = self.cells // width + shift[:, 0], self.cells % width + shift[:, 1]
                inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
                under = torch.where(inside, inst[(y * width + x) * inside], 0)   # 0: none
            else:
                under = inst[self.cells]
            inter = torch.bincount(under * k + self.owner,
                                   minlength=(n + 1) * k).view(n + 1, k)[1:].float()
            t_area = torch.bincount(self.owner, minlength=k).float()
            iou = inter / (area[:, None] + t_area[None, :] - inter).clamp(min=1)
            iou = torch.where(cls[:, None] == self.classes[None, :], iou,
                              torch.zeros_like(iou))
            match = greedy_match(iou, self.config.iou_threshold)
        new = match < 0
        n_new = int(new.sum())
        track_of = torch.empty(n, dtype=torch.long, device=device)
        track_of[~new] = self.ids[match[~new]]
        track_of[new] = torch.arange(self.next_id, self.next_id + n_new, device=device)
        self.next_id += n_new
        # matched tracks take this frame's masks, unmatched ones age (and keep theirs) until
        # max_age, new ones join
        matched = torch.zeros(k, dtype=torch.bool, device=device)
        matched[match[~new]] = True
        velocity = torch.zeros(n, 2, device=device)
        if bool((~new).any()):      # displacement since the last match, per frame elapsed
            prev = match[~new]
            velocity[~new] = (centre[~new] - self.centre[prev]) / \
                (self.ages[prev] + 1)[:, None].float()
        ages = self.ages + 1
        keep_old = ~matched & (ages <= self.config.max_age)          # [K]
        n_keep = int(keep_old.sum())
        slot_old = torch.cumsum(keep_old.long(), 0) - 1              # old slot -> new slot
        old = keep_old[self.owner] if self.owner.numel() else self.owner.bool()
        # this frame's instances get slots n_keep.. in instance order
        self.cells = torch.cat([self.cells[old], cur_cells])
        self.owner = torch.cat([slot_old[self.owner[old]], n_keep + cur_inst])
        self.classes = torch.cat([self.classes[keep_old], cls])
        self.ids = torch.cat([self.ids[keep_old], track_of])
        self.ages = torch.cat([ages[keep_old], torch.zeros(n, dtype=torch.long,
                                                            device=device)])
        self.centre = torch.cat([self.centre[keep_old], centre])
        self.velocity = torch.cat([self.velocity[keep_old], velocity])
        out = torch.zeros(seg_inst.numel(), dtype=torch.long, device=device)
        if n:
            out[thing] = track_of[seg_inst[thing] - 1]
        return out
