"""Raw dense-detections outputs to panoptic results (sections 3.2 and 4.2).

1. The dense box map: each level's offsets upsampled to the 1/4 grid, the level levelness picks
   (eq. 14), decoded at the grid locations.
2. Query boxes: per-level (location, class) candidates scored by box-class probability x
   centerness (section 4.1), top-k per level, then class-wise NMS (eq. 4).
3. Masks: IoU of every pixel's box with each query times the semantic probability of the
   query's class (eq. 5-6), upsampled bilinearly to the fusion grid (``fusion_stride``) as the
   authors' code does, thresholded at sigma (eq. 7).
4. Panoptic fusion, instances over stuff, on the same grid; label maps are then brought to the
   input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from panoptic_ros.models.postprocess import (construct_masks, dense_boxes, fuse_panoptic,
                                             level_candidates, nms)
from panoptic_ros.models.result import PanopticResult


@dataclass(frozen=True)
class DenseDetectionsPostprocess:
    """Inference parameters (defaults: the paper's sigma, FCOS-style detection settings)."""

    sigma: float = 0.3                 # mask acceptance probability (appendix A)
    candidate_threshold: float = 0.05  # class probability to become an NMS candidate
    pre_nms_topk: int = 1000           # per level
    nms_threshold: float = 0.6
    max_detections: int = 100
    score_threshold: float = 0.3       # instance score to enter the panoptic result
    overlap_threshold: float = 0.5     # drop an instance more covered than this
    min_stuff_area: int = 2048         # pixels at the output size
    label_divisor: int = 1000
    void_id: int = 255
    fusion_stride: int = 2             # grid of masks and fusion: 4 (raw), 2 or 1 (bilinear)

    def __call__(self, raw: dict, strides, thing_classes: torch.Tensor, is_thing: torch.Tensor,
                 out_size: tuple[int, int]) -> list[PanopticResult]:
        """
        Args:
            raw: model outputs (see ``UnifiedPanopticHead.forward``), batch ``N``.
            strides: FPN strides of the levels.
            thing_classes: ``[T]`` semantic class of each box class.
            is_thing: ``[C] bool``.
            out_size: ``(H, W)`` of the result for every image.

        Returns:
            ``N`` results.
        """
        gboxes = dense_boxes([r.float() for r in raw['box_reg']], raw['levelness'].float())
        sem_prob = raw['semantic'].float().softmax(1)
        results = []
        for n in range(gboxes.shape[0]):
            cand, cand_score, cand_cls = level_candidates(
                [r[n] for r in raw['box_reg']], [c[n] for c in raw['box_cls']],
                [o[n] for o in raw['centerness']], strides, self.candidate_threshold,
                self.pre_nms_topk)
            keep = nms(cand, cand_score, cand_cls, self.nms_threshold)
            kept = torch.nonzero(keep).flatten()
            kept = kept[cand_score[kept].argsort(descending=True)][:self.max_detections]
            queries, q_scores = cand[kept], cand_score[kept]
            q_classes = thing_classes[cand_cls[kept]]
            _, mask_prob = construct_masks(gboxes[n], sem_prob[n], queries, q_classes,
                                           self.sigma)
            prob_n, mask_prob = self._to_fusion_grid(sem_prob[n], mask_prob, out_size)
            results.append(fuse_panoptic(
                prob_n, mask_prob > self.sigma, q_scores, q_classes, is_thing,
                score_threshold=self.score_threshold, overlap_threshold=self.overlap_threshold,
                min_stuff_area=self.min_stuff_area, void_id=self.void_id,
                label_divisor=self.label_divisor, out_size=out_size))
        return results

    def _to_fusion_grid(self, sem_prob: torch.Tensor, mask_prob: torch.Tensor,
                        out_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Bilinear upsampling of ``[C, h, w]`` and ``[J, h, w]`` to the fusion grid."""
        if self.fusion_stride >= 4:
            return sem_prob, mask_prob
        size = (min(out_size[0], -(-out_size[0] // self.fusion_stride)),
                min(out_size[1], -(-out_size[1] // self.fusion_stride)))
        up = torch.nn.functional.interpolate(torch.cat([sem_prob, mask_prob])[None], size=size,
                                             mode='bilinear', align_corners=False)[0]
        return up[:sem_prob.shape[0]], up[sem_prob.shape[0]:]
