"""Dense-detections engine outputs to panoptic results (sections 3.2 and 4.2).

The model's :meth:`~.model.DenseDetections.decode` (inside the exported graph) already made:

1. the dense box map: each level's offsets upsampled to the 1/4 grid, the level levelness picks
   (eq. 14), decoded at the grid locations;
2. detection candidates: per-level (location, class) pairs scored by box-class probability x
   centerness (section 4.1), top-k per level.

What follows has data-dependent shapes and runs here, in torch, for every engine:

3. class-wise NMS of the candidates (eq. 4);
4. masks: IoU of every pixel's box with each query times the semantic probability of the
   query's class (eq. 5-6; with ``instance_class='semantic'`` the class is the semantic
   head's vote over the query's pixels, :func:`~.masks.vote_classes`), upsampled bilinearly to the fusion grid (``fusion_stride``) as the
   authors' code does, thresholded at sigma (eq. 7);
5. panoptic fusion, instances over stuff, on the same grid; label maps are then brought to the
   output size (nearest neighbour), segment statistics computed exactly for that size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from panoptic_ros.models.dense_detections.masks import box_iou_map, construct_masks, vote_classes
from panoptic_ros.models.fusion import fuse_panoptic
from panoptic_ros.models.geometry import nms
from panoptic_ros.models.resample import upsample_threshold
from panoptic_ros.models.result import PanopticResult


@dataclass(frozen=True)
class DenseDetectionsPostprocess:
    """Inference parameters (defaults: the paper's sigma, FCOS-style detection settings).

    The candidate threshold and per-level top-k are model arguments (they live in the
    exported graph).
    """

    sigma: float = 0.3                 # mask acceptance probability (appendix A)
    nms_threshold: float = 0.6
    max_detections: int = 100
    score_threshold: float = 0.3       # instance score to enter the panoptic result
    overlap_threshold: float = 0.5     # drop an instance more covered than this
    min_stuff_area: int = 2048         # pixels at the output size
    label_divisor: int = 1000
    void_id: int = 255
    fusion_stride: int = 2             # grid of masks and fusion: 4 (raw), 2 or 1 (bilinear)
    instance_class: str = 'detection'  # a query's class: its detection's (the paper) or the
    #                                    semantic head's vote over its pixels ('semantic')

    def __post_init__(self) -> None:
        if self.instance_class not in ('detection', 'semantic'):
            raise ValueError(f"instance_class must be 'detection' or 'semantic', got "
                             f"{self.instance_class!r}")

    def __call__(self, outputs: dict, thing_classes: torch.Tensor, is_thing: torch.Tensor,
                 out_size: tuple[int, int]) -> list[PanopticResult]:
        """
        Args:
            outputs: engine outputs (see ``DenseDetections.decode``), batch ``N``.
            thing_classes: ``[T]`` semantic class of each box class.
            is_thing: ``[C] bool``.
            out_size: ``(H, W)`` of the result for every image.

        Returns:
            ``N`` results.
        """
        device = outputs['semantic_prob'].device
        thing_classes, is_thing = thing_classes.to(device), is_thing.to(device)
        results = []
        for n in range(outputs['semantic_prob'].shape[0]):
            # a box under the score threshold never suppresses a higher-scoring one and
            # never enters the fusion, so leaving it out of NMS changes nothing
            scores_n = outputs['cand_scores'][n]
            valid = torch.nonzero((scores_n > 0) & (scores_n >= self.score_threshold)).flatten()
            cand = outputs['cand_boxes'][n][valid].float()
            cand_score = outputs['cand_scores'][n][valid].float()
            cand_cls = outputs['cand_classes'][n][valid].long()
            kept = torch.nonzero(nms(cand, cand_score, cand_cls, self.nms_threshold)).flatten()
            kept = kept[cand_score[kept].argsort(descending=True)][:self.max_detections]
            queries, q_scores = cand[kept], cand_score[kept]
            sem_prob = outputs['semantic_prob'][n].float()
            iou = box_iou_map(outputs['dense_boxes'][n].float(), queries)
            q_classes = (vote_classes(iou, sem_prob, thing_classes)
                         if self.instance_class == 'semantic' else thing_classes[cand_cls[kept]])
            masks, mask_prob = construct_masks(iou, sem_prob, q_classes, self.sigma)
            prob_n, masks = self._to_fusion_grid(sem_prob, masks, mask_prob, out_size)
            results.append(fuse_panoptic(
                prob_n, masks, q_scores, q_classes, is_thing,
                score_threshold=self.score_threshold, overlap_threshold=self.overlap_threshold,
                min_stuff_area=self.min_stuff_area, void_id=self.void_id,
                label_divisor=self.label_divisor, out_size=out_size))
        return results

    def _to_fusion_grid(self, sem_prob: torch.Tensor, masks: torch.Tensor,
                        mask_prob: torch.Tensor, out_size: tuple[int, int]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities ``[C, h, w]`` and masks (``[J, h, w]`` bool and probability, on
        the 1/4 grid of the network input) on the fusion grid: 1/``fusion_stride`` of the
        network input, never finer than the output, both upsampled bilinearly and the masks
        thresholded again at sigma there. A camera image larger than the network input is
        fused at the network's resolution and only the final label maps are brought to its
        size."""
        h, w = sem_prob.shape[1:]
        size = (min(out_size[0], h * 4 // self.fusion_stride),
                min(out_size[1], w * 4 // self.fusion_stride))
        if size == (h, w):
            return sem_prob, masks
        # channels last: the fusion's class argmax then reduces over contiguous memory
        # (about 1 ms less a 1024x2048 frame on the CPU)
        up = torch.nn.functional.interpolate(
            sem_prob[None].contiguous(memory_format=torch.channels_last), size=size,
            mode='bilinear', align_corners=False)[0]
        return up, upsample_threshold(mask_prob, masks, size, self.sigma)
