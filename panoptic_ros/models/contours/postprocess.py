"""Contours engine outputs to panoptic results (sections III-C to III-E, Fig. 4).

The exported graph (:meth:`~.model.ContoursNet.decode`) ends with the semantic argmax, class
probabilities, the contour probability and every cell's vote (cell + predicted offset, in grid
cells). What follows
is data-dependent and runs here in torch, on the outputs' device, for every engine:

1. instance-class mask: cells whose semantic argmax is a thing class (one mask for all thing
   classes, section III-C);
2. boundary-aware mask: that mask minus the contours (``contour_prob > contour_threshold``);
3. 4-connected components (:func:`~.components.label_components`, O(log n) iterations);
4. class of a component: its most frequent semantic label (section III-C);
5. split (section III-D): DBSCAN of the votes within each component (``eps``, votes rounded to
   a lattice of ``vote_bin * eps``; exact DBSCAN on the rounded votes, with their counts as
   weights); a component with several clusters becomes one instance per cluster; votes DBSCAN
   calls noise join the cluster of their component with the nearest mean vote;
6. merge: instances of one class whose mean votes are closer than ``eps`` become one,
   transitively (components of the "closer than eps" graph);
7. removal: instances smaller than ``min_area`` are dissolved; their cells, and the thing
   cells the contours removed (the paper does not say what becomes of those), go to the kept
   instance of their semantic class whose mean vote is nearest to their own vote (section
   III-D), or to void when the image has none or, with a finite ``assign_radius``, none within
   ``assign_radius * eps`` (the paper sets no limit: the default);
8. panoptic (section III-E): instances over the semantic argmax for stuff, no conflict
   resolution. An instance's score is the mean softmax of its class over its area (section
   III-C).

Distances are set for the paper's 1024x2048 frames (``eps`` 20 px, ``min_area`` 300 px, Table
IV) and scaled to the grid: the grid covers the image, so a grid of ``h x w`` cells sees
``sqrt(h w / (1024 * 2048))`` cells per pixel of a 1024x2048 frame. ``min_samples`` (not stated
in the paper; 5) counts grid cells.

Loops: the batch; connected components (at most ``ceil(log_{3/2} n) + 2`` iterations for ``n``
row runs or instances); chunks of pair and distance computations (``ceil(pairs / budget)``,
once for ordinary frames). Nothing loops over pixels, components or instances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from panoptic_ros.models.contours.components import (compact_labels, graph_components,
                                                     label_components)
from panoptic_ros.models.contours.dbscan import (DEFAULT_BUDGET, dbscan, nearest_centres,
                                                 radius_pairs)
from panoptic_ros.models.result import PanopticResult, grid_result


@dataclass(frozen=True)
class ContoursPostprocess:
    """Inference parameters (defaults: the paper's, section III-D and Table IV)."""

    contour_threshold: float = 0.5     # not stated in the paper
    eps: float = 20.0                  # DBSCAN and merge distance, px at reference_size
    min_samples: float = 5.0           # DBSCAN core weight, grid cells (not stated)
    min_area: float = 300.0            # px at reference_size (Table IV)
    split: bool = True                 # Table III
    merge: bool = True
    vote_bin: float = 0.25             # vote rounding, fraction of eps
    assign_radius: float = math.inf    # step 7: farthest vote-centre distance, in eps
    score_threshold: float = 0.0       # instances scoring less become void
    min_stuff_area: int = 0            # px at the output size; smaller stuff becomes void
    reference_size: tuple[int, int] = (1024, 2048)
    label_divisor: int = 1000
    void_id: int = 255
    budget: int = DEFAULT_BUDGET       # pairs / distances computed at once

    def __call__(self, outputs: dict, thing_classes: torch.Tensor, is_thing: torch.Tensor,
                 out_size: tuple[int, int]) -> list[PanopticResult]:
        """
        Args:
            outputs: engine outputs (see ``ContoursNet.decode``): ``semantic [N, h, w]`` int,
                ``semantic_prob [N, C, h, w]``, ``contour_prob [N, 1, h, w]``, ``votes [N, 2,
                h, w]``.
            thing_classes: ``[T]`` class ids with instances (``is_thing`` says the same).
            is_thing: ``[C] bool``.
            out_size: ``(H, W)`` of every result.

        Returns:
            ``N`` results.
        """
        prob = outputs['semantic_prob']
        is_thing = is_thing.to(prob.device).bool()
        return [self.single(outputs['semantic'][n].long(), prob[n].float(),
                            outputs['contour_prob'][n, 0].float(), outputs['votes'][n].float(),
                            is_thing, out_size)
                for n in range(prob.shape[0])]

    def scales(self, h: int, w: int) -> tuple[float, float]:
        """``(eps, min_area)`` in grid cells for a grid of ``h x w``."""
        ref_h, ref_w = self.reference_size
        s = math.sqrt(h * w / float(ref_h * ref_w))
        return self.eps * s, self.min_area * s * s

    def instances(self, semantic: torch.Tensor, contour: torch.Tensor, votes: torch.Tensor,
                  is_thing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 1-7 for one image.

        Args:
            semantic: ``[h, w] int64`` argmax class; ``contour``: ``[h, w]`` contour
                probability; ``votes``: ``[2, h, w]`` ``(x, y)`` in grid cells;
                ``is_thing``: ``[C] bool``.

        Returns:
            ``instance [h, w] int64`` ids ``0..n-1`` (-1: none) and ``classes [n] int64``.
        """
        h, w = semantic.shape
        c = is_thing.numel()
        device = semantic.device
        eps, min_area = self.scales(h, w)
        sem = semantic.flatten()
        thing = is_thing.index_select(0, sem)
        fg = thing & (contour.flatten() <= self.contour_threshold)
        comp, k, _ = label_components(fg.view(h, w))
        inst_map = torch.full((h * w,), -1, dtype=torch.long, device=device)
        if k == 0:
            return inst_map.view(h, w), torch.zeros(0, dtype=torch.long, device=device)
        idx = torch.nonzero(comp.flatten() > 0).flatten()
        inst = comp.flatten().index_select(0, idx) - 1                # [P] 0..k-1
        sem_p = sem.index_select(0, idx)
        # votes farther than an image size outside the image mean nothing; bounding them keeps
        # the lattice keys of step 5 small
        vx = votes[0].flatten().index_select(0, idx).clamp(-w, 2 * w)
        vy = votes[1].flatten().index_select(0, idx).clamp(-h, 2 * h)
        if self.split:
            inst, k = self._split(inst, vx, vy, eps)
        classes = _majority(inst, sem_p, k, c)
        if self.merge and k > 1:
            inst, k, classes = self._merge(inst, vx, vy, classes, k, eps)
        area = torch.bincount(inst, minlength=k)
        kept = area >= min_area
        kept_ids = torch.nonzero(kept).flatten()                      # [n]
        new_id = torch.cumsum(kept.long(), 0) - 1                     # kept -> 0..n-1
        inst_map[idx] = torch.where(kept.index_select(0, inst), new_id.index_select(0, inst),
                                    torch.full_like(inst, -1))
        classes = classes.index_select(0, kept_ids)
        if kept_ids.numel():
            # cells of dissolved instances and contour cells of thing classes
            areaf = area.index_select(0, kept_ids).double()
            kept_inst = new_id.index_select(0, inst)
            sel = kept.index_select(0, inst)
            cx = torch.zeros(kept_ids.numel(), dtype=torch.float64, device=device).index_add_(
                0, kept_inst[sel], vx[sel].double()) / areaf
            cy = torch.zeros(kept_ids.numel(), dtype=torch.float64, device=device).index_add_(
                0, kept_inst[sel], vy[sel].double()) / areaf
            free = torch.nonzero(thing & (inst_map < 0)).flatten()
            fv = votes.flatten(1).index_select(1, free).T                 # [F, 2]
            near, d2 = nearest_centres(fv, sem.index_select(0, free),
                                       torch.stack([cx, cy], 1).float(), classes, self.budget)
            far = d2 > (self.assign_radius * eps) ** 2
            inst_map[free] = torch.where(far, torch.full_like(near, -1), near)
        return inst_map.view(h, w), classes

    def _split(self, inst: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor,
               eps: float) -> tuple[torch.Tensor, int]:
        """Step 5: DBSCAN of every component's rounded votes; returns the new instance of
        every pixel (``[P] int64``, ``0..k-1``) and ``k``."""
        q = eps * self.vote_bin
        bx = torch.floor(vx / q).long()
        by = torch.floor(vy / q).long()
        bx, by = bx - bx.min(), by - by.min()
        bw, bh = int(bx.max()) + 1, int(by.max()) + 1
        key = (inst * bh + by) * bw + bx
        ukey, inv, count = torch.unique(key, return_inverse=True, return_counts=True)
        b_inst = ukey // (bh * bw)
        rem = ukey % (bh * bw)
        pts = torch.stack([(rem % bw).float() + 0.5, (rem // bw).float() + 0.5], 1) * q
        labels, n_clusters = dbscan(pts, eps, self.min_samples, groups=b_inst,
                                    weights=count.float(), budget=self.budget)
        if n_clusters:
            clustered = labels >= 0
            cl = labels[clustered]
            wts = count[clustered].float()
            cnt = torch.zeros(n_clusters, device=pts.device).index_add_(0, cl, wts)
            means = torch.zeros(n_clusters, 2, device=pts.device).index_add_(
                0, cl, pts[clustered] * wts[:, None]) / cnt[:, None]
            cl_inst = torch.zeros(n_clusters, dtype=torch.long, device=pts.device).scatter_(
                0, cl, b_inst[clustered])
            noise = torch.nonzero(~clustered).flatten()
            near, _ = nearest_centres(pts[noise], b_inst[noise], means, cl_inst, self.budget)
            labels[noise] = near
        # a component without any cluster stays whole
        labels = torch.where(labels >= 0, labels, n_clusters + b_inst)
        new, k = compact_labels(labels)
        return new.index_select(0, inv), k

    def _merge(self, inst: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor,
               classes: torch.Tensor, k: int,
               eps: float) -> tuple[torch.Tensor, int, torch.Tensor]:
        """Step 6: merge instances of one class with mean votes closer than ``eps``."""
        area = torch.bincount(inst, minlength=k).clamp(min=1).double()
        means = torch.stack([torch.zeros(k, dtype=torch.float64, device=inst.device).index_add_(
            0, inst, v.double()) / area for v in (vx, vy)], 1)
        i, j, d2 = radius_pairs(means, classes, eps, self.budget)
        close = d2 < eps * eps
        roots, _ = graph_components(k, i[close], j[close])
        new, k2 = compact_labels(roots)
        merged_classes = torch.zeros(k2, dtype=torch.long, device=inst.device).scatter_(
            0, new, classes)
        return new.index_select(0, inst), k2, merged_classes

    def single(self, semantic: torch.Tensor, prob: torch.Tensor, contour: torch.Tensor,
               votes: torch.Tensor, is_thing: torch.Tensor,
               out_size: tuple[int, int]) -> PanopticResult:
        """One image: ``semantic [h, w] int64``, ``prob [C, h, w]``, ``contour [h, w]``,
        ``votes [2, h, w]``; the result at ``out_size``."""
        c, h, w = prob.shape
        device = prob.device
        inst_map, classes = self.instances(semantic, contour, votes, is_thing)
        inst = inst_map.flatten()
        sem = semantic.flatten()
        probs = prob.flatten(1)
        n = classes.numel()
        has = inst >= 0
        safe = inst.clamp(min=0)
        # instance score: mean probability of its class over its cells (section III-C);
        # masked sums as bincounts with a spare bin (no boolean indexing of whole maps)
        if n:
            p_cls = probs.gather(0, classes.index_select(0, safe)[None])[0]
            bins = torch.where(has, safe, torch.full_like(safe, n))
            area = torch.bincount(bins, minlength=n + 1)[:n].clamp(min=1)
            score = torch.bincount(bins, weights=p_cls.double(), minlength=n + 1)[:n] / area
            keep = score >= self.score_threshold
            new_id = torch.cumsum(keep.long(), 0)                       # 1..n_kept
            inst_ids = torch.where(keep.index_select(0, safe), new_id.index_select(0, safe),
                                   torch.full_like(safe, -1))
            inst_ids = torch.where(has, inst_ids, torch.zeros_like(safe))
            cls_of = classes.index_select(0, safe)
            classes, score = classes[keep], score[keep]
        else:
            inst_ids = torch.zeros_like(safe)
            cls_of = sem
            score = torch.zeros(0, dtype=torch.float64, device=device)
        void = torch.full_like(sem, self.void_id)
        thing_px = is_thing.index_select(0, sem)
        semantic = torch.where(inst_ids > 0, cls_of, sem)
        semantic = torch.where(thing_px & (inst_ids <= 0), void, semantic)
        return grid_result(semantic.view(h, w), inst_ids.clamp(min=0).view(h, w), score, prob,
                           is_thing, min_stuff_area=self.min_stuff_area, void_id=self.void_id,
                           label_divisor=self.label_divisor, out_size=out_size)


def _majority(inst: torch.Tensor, sem: torch.Tensor, k: int, c: int) -> torch.Tensor:
    """``[k] int64`` most frequent class of each instance (lowest class id on ties)."""
    counts = torch.bincount(inst * c + sem, minlength=k * c).view(k, c)
    return counts.argmax(1)
