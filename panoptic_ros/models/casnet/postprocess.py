"""CASNet engine outputs to panoptic results (section III-C), on the stride-4 grid.

The exported graph (:meth:`~.model.CASNet.decode`) ends with the semantic argmax and
probabilities, the box probabilities and every cell's box. What follows is data-dependent and
runs here in torch, on the outputs' device, for every engine (:mod:`.voting`):

1. seeds: top ``max_seeds`` box probabilities (local maxima with ``peak_kernel`` > 1) above
   ``seed_threshold``, class-wise NMS at ``nms_iou``;
2. every thing cell votes for the same-class seed whose box overlaps its box most (ties within
   ``tie`` by centre distance; ``voting='centre'`` for the ablation);
3. seeds without support are dropped; thing cells without a seed become void;
4. panoptic: stuff from the semantic argmax (regions under ``min_stuff_area`` become void),
   things from the votes. An instance's score is its seed's probability times the mean
   semantic probability of its class over its cells (the paper gives none; the notes' choice);
   instances under ``score_threshold`` become void.

Loops: the batch, the NMS fixed point (at most ``max_seeds``), and chunks of cell-seed pairs
(``ceil(cells * max_seeds / budget)``: one for a 512x1024 frame, two at 1024x2048).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from panoptic_ros.errors import PanopticError
from panoptic_ros.models.casnet.voting import DEFAULT_BUDGET, select_seeds, vote
from panoptic_ros.models.result import PanopticResult, labelled_instances_result


@dataclass(frozen=True)
class CASNetPostprocess:
    """Inference parameters (defaults: the paper's where it gives them, section III-C)."""

    seed_threshold: float = 0.5        # "e.g. 0.5"
    nms_iou: float = 0.5               # not stated
    max_seeds: int = 128               # fixed K (not in the paper)
    peak_kernel: int = 1               # 1: every cell may seed (the paper); 3: local maxima
    tie: float = 0.05                  # "approximately the same" IoU (not stated)
    voting: str = 'iou'                # 'iou' (the paper) or 'centre' (ablation)
    min_support: int = 1               # cells a seed needs to become an instance
    score_threshold: float = 0.0       # instances scoring less become void
    min_stuff_area: int = 0            # px at the output size; smaller stuff becomes void
    label_divisor: int = 1000
    void_id: int = 255
    budget: int = DEFAULT_BUDGET

    def __post_init__(self) -> None:
        if self.voting not in ('iou', 'centre'):
            raise PanopticError(f"voting must be 'iou' or 'centre', got {self.voting!r}")
        if self.peak_kernel < 1 or self.peak_kernel % 2 == 0:
            raise PanopticError(f'peak_kernel must be a positive odd size, got '
                                f'{self.peak_kernel!r}')

    def __call__(self, outputs: dict, thing_classes: torch.Tensor, is_thing: torch.Tensor,
                 out_size: tuple[int, int]) -> list[PanopticResult]:
        """
        Args:
            outputs: engine outputs (see ``CASNet.decode``): ``semantic [N, h, w]`` int,
                ``semantic_prob [N, C, h, w]``, ``box_prob [N, T, h, w]``, ``boxes [N, 4, h,
                w]`` input pixels.
            thing_classes: ``[T]`` class ids of the box-probability channels.
            is_thing: ``[C] bool``.
            out_size: ``(H, W)`` of every result.

        Returns:
            ``N`` results.
        """
        prob = outputs['semantic_prob']
        is_thing = is_thing.to(prob.device).bool()
        things = thing_classes.to(prob.device).long()
        return [self.single(outputs['semantic'][n].long(), prob[n].float(),
                            outputs['box_prob'][n].float(), outputs['boxes'][n].float(),
                            things, is_thing, out_size)
                for n in range(prob.shape[0])]

    def instances(self, semantic: torch.Tensor, box_prob: torch.Tensor, boxes: torch.Tensor,
                  thing_classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                        torch.Tensor]:
        """Steps 1-3 for one image: ``semantic [h, w] int64``, ``box_prob [T, h, w]``,
        ``boxes [4, h, w]``, ``thing_classes [T]``.

        Returns:
            ``instance [h, w] int64`` ids ``0..n-1`` (-1: none), ``classes [n] int64`` and
            the seeds' probabilities ``[n]``.
        """
        h, w = semantic.shape
        device = semantic.device
        seeds = select_seeds(box_prob, boxes, k=self.max_seeds, threshold=self.seed_threshold,
                             nms_iou=self.nms_iou, peak_kernel=self.peak_kernel)
        c = max(int(semantic.max()) + 1, int(thing_classes.max()) + 1)
        thing_of = torch.full((c,), -1, dtype=torch.long, device=device)
        thing_of[thing_classes] = torch.arange(thing_classes.numel(), device=device)
        sem = semantic.flatten()
        cell_thing = thing_of.index_select(0, sem)
        cells = torch.nonzero(cell_thing >= 0).flatten()
        choice = vote(boxes.flatten(1).index_select(1, cells).T, cell_thing.index_select(0, cells),
                      seeds['box'], seeds['thing'], seeds['valid'], tie=self.tie,
                      mode=self.voting, budget=self.budget)
        k = seeds['score'].numel()
        support = torch.bincount(choice + 1, minlength=k + 1)[1:]
        alive = seeds['valid'] & (support >= self.min_support)
        new_id = torch.cumsum(alive.long(), 0) - 1
        safe = choice.clamp(min=0)
        ids = torch.where((choice >= 0) & alive.index_select(0, safe),
                          new_id.index_select(0, safe), torch.full_like(choice, -1))
        inst = torch.full((h * w,), -1, dtype=torch.long, device=device)
        inst[cells] = ids
        return (inst.view(h, w), thing_classes.index_select(0, seeds['thing'][alive]),
                seeds['score'][alive])

    def single(self, semantic: torch.Tensor, prob: torch.Tensor, box_prob: torch.Tensor,
               boxes: torch.Tensor, thing_classes: torch.Tensor, is_thing: torch.Tensor,
               out_size: tuple[int, int]) -> PanopticResult:
        """One image (shapes of :meth:`instances`, ``prob [C, h, w]``); the result at
        ``out_size``."""
        inst_map, classes, seed_score = self.instances(semantic, box_prob, boxes, thing_classes)
        return labelled_instances_result(
            semantic, inst_map, classes.numel(), prob, is_thing, seed_scores=seed_score,
            score_threshold=self.score_threshold, min_stuff_area=self.min_stuff_area,
            void_id=self.void_id, label_divisor=self.label_divisor, out_size=out_size)
