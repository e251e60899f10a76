"""OANet engine outputs to panoptic results (section 3.2, 4.2), on the stride-4 grid.

The exported graph (:meth:`~.model.OANet.decode`) ends with the stuff probabilities and up to
``D`` detections (boxes, scores, thing classes, 28x28 masks) with their spatial ranking scores.
What follows is the panoptic fusion, in torch on the outputs' device for every engine:

1. detections scoring under ``score_threshold`` are dropped (the paper gives no value; 0.5,
   detectron2's panoptic merge default, as the notes recommend);
2. the masks of the others are pasted into their boxes on the grid and binarised at
   ``mask_threshold``;
3. instances are pasted in decreasing ranking score (eq. 3; ``order='score'``: detection
   score, the paper's baseline) and one loses its place when less than
   ``1 - overlap_threshold`` of its mask stays visible;
4. free pixels take the stuff branch's argmax; unclaimed thing-class pixels become void, and so
   do stuff classes covering less than ``min_stuff_area`` pixels of the output (the paper
   removes connected stuff regions under 4,900 px; this counts a class's area in the image).

Loops: the batch and the fixed point of the pasting rule (at most ``D`` rounds,
:func:`~panoptic_ros.models.fusion.paste_instances`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from panoptic_ros.errors import PanopticError
from panoptic_ros.models.fusion import fuse_panoptic
from panoptic_ros.models.oanet.paste import paste_masks
from panoptic_ros.models.result import PanopticResult

STRIDE = 4


@dataclass(frozen=True)
class OANetPostprocess:
    """Fusion parameters (section 3.2; values the paper leaves open: see the module)."""

    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    overlap_threshold: float = 0.5
    order: str = 'rank'                # 'rank' (spatial ranking, eq. 3) or 'score'
    min_stuff_area: int = 4900         # px at the output size (the paper's COCO value)
    label_divisor: int = 1000
    void_id: int = 255

    def __post_init__(self) -> None:
        if self.order not in ('rank', 'score'):
            raise PanopticError(f"order must be 'rank' or 'score', got {self.order!r}")

    def __call__(self, outputs: dict, thing_classes: torch.Tensor, is_thing: torch.Tensor,
                 out_size: tuple[int, int]) -> list[PanopticResult]:
        """
        Args:
            outputs: engine outputs (see ``OANet.decode``): ``stuff_prob [N, C, h, w]``,
                ``boxes [N, D, 4]`` input pixels, ``scores [N, D]``, ``classes [N, D]`` thing
                index, ``masks [N, D, 28, 28]``, ``rank [N, D]``.
            thing_classes: ``[T]`` class ids of the thing indices.
            is_thing: ``[C] bool``.
            out_size: ``(H, W)`` of every result.

        Returns:
            ``N`` results.
        """
        prob = outputs['stuff_prob']
        is_thing = is_thing.to(prob.device).bool()
        things = thing_classes.to(prob.device).long()
        return [self.single(prob[n].float(), outputs['boxes'][n].float(),
                            outputs['scores'][n].float(), outputs['classes'][n].long(),
                            outputs['masks'][n].float(), outputs['rank'][n].float(), things,
                            is_thing, out_size)
                for n in range(prob.shape[0])]

    def single(self, prob: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor,
               classes: torch.Tensor, masks: torch.Tensor, rank: torch.Tensor,
               thing_classes: torch.Tensor, is_thing: torch.Tensor,
               out_size: tuple[int, int]) -> PanopticResult:
        """One image (the shapes of ``__call__`` without ``N``)."""
        h, w = prob.shape[-2:]
        keep = torch.nonzero((scores > 0) & (scores >= self.score_threshold)).flatten()
        key = (rank if self.order == 'rank' else scores).index_select(0, keep)
        keep = keep.index_select(0, torch.argsort(key, descending=True, stable=True))
        pasted = paste_masks(masks.index_select(0, keep)[None], boxes.index_select(0, keep)[None],
                             (h, w), STRIDE)[0] > self.mask_threshold
        return fuse_panoptic(prob, pasted, scores.index_select(0, keep),
                             thing_classes.index_select(0, classes.index_select(0, keep)),
                             is_thing, score_threshold=self.score_threshold,
                             overlap_threshold=self.overlap_threshold,
                             min_stuff_area=self.min_stuff_area, void_id=self.void_id,
                             label_divisor=self.label_divisor, out_size=out_size)
