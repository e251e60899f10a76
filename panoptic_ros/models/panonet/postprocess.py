"""PanoNet engine outputs to panoptic results (section III-D), on the 1/4 grid.

1. ``semantic``: the argmax of the semantic branch;
2. for each thing class, mean-shift with bin seeding on the embeddings of its cells
   (:func:`~.meanshift.mean_shift`, all classes at once, each with its own bandwidth: the
   paper searches it per class "within a small range" on training data, slightly above
   ``delta_v``; the card holds the values). Seed bins are half a bandwidth (``bin_fraction``;
   scikit-learn's one bandwidth loses tight clusters in 12 dimensions, see :mod:`.meanshift`)
   and seed only when they hold ``min_bin_freq`` cells (the bundled card: 6, tuned on training
   images: fewer seeds, and no small false instances seeded among a few stray cells);
3. panoptic: stuff from the semantic argmax, thing ids from the clusters; no conflict
   resolution (one label per cell by construction). Instances smaller than ``min_area`` cells
   or scoring under ``score_threshold`` (mean class probability over the instance, the notes'
   choice: the paper gives none) become void.

Loops: the batch and those of the mean-shift (at most ``max_iter`` shift iterations, the
duplicate rule's fixed point, chunks of distances). The cost grows with the thing cells ``P``
and the seeds ``M`` (occupied bins): each iteration is ``O(M P D)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from panoptic_ros.errors import PanopticError
from panoptic_ros.models.panonet.meanshift import DEFAULT_BUDGET, mean_shift
from panoptic_ros.models.result import PanopticResult, labelled_instances_result


@dataclass(frozen=True)
class PanoNetPostprocess:
    """Inference parameters."""

    bandwidth: float | Sequence[float] = 0.375    # one, or one per thing class (1.5 delta_v)
    max_iter: int = 300                           # scikit-learn's default
    bin_fraction: float = 0.5                     # seed bins, in bandwidths (sklearn: 1)
    min_bin_freq: int = 1                         # points a seed bin needs (sklearn: 1)
    min_area: int = 0                             # cells
    score_threshold: float = 0.0
    min_stuff_area: int = 0                       # px at the output size
    label_divisor: int = 1000
    void_id: int = 255
    budget: int = DEFAULT_BUDGET

    def __post_init__(self) -> None:
        bw = [self.bandwidth] if isinstance(self.bandwidth, (int, float)) else list(
            self.bandwidth)
        if not bw or any(not float(b) > 0 for b in bw):
            raise PanopticError(f'bandwidth must be positive (one value, or one per thing '
                                f'class), got {self.bandwidth!r}')

    def bandwidths(self, t: int, device) -> torch.Tensor:
        """``[t]`` bandwidth of each thing class."""
        if isinstance(self.bandwidth, (int, float)):
            return torch.full((t,), float(self.bandwidth), device=device)
        if len(self.bandwidth) != t:
            raise PanopticError(f'bandwidth has {len(self.bandwidth)} values for {t} thing '
                                f'classes')
        return torch.tensor([float(b) for b in self.bandwidth], device=device)

    def __call__(self, outputs: dict, thing_classes: torch.Tensor, is_thing: torch.Tensor,
                 out_size: tuple[int, int]) -> list[PanopticResult]:
        """
        Args:
            outputs: engine outputs (see ``PanoNet.decode``): ``semantic [N, h, w]`` int,
                ``semantic_prob [N, C, h, w]``, ``embedding [N, D, h, w]``.
            thing_classes: ``[T]`` class ids with instances; ``is_thing``: ``[C] bool``.
            out_size: ``(H, W)`` of every result.
        """
        prob = outputs['semantic_prob']
        is_thing = is_thing.to(prob.device).bool()
        things = thing_classes.to(prob.device).long()
        return [self.single(outputs['semantic'][n].long(), prob[n].float(),
                            outputs['embedding'][n].float(), things, is_thing, out_size)
                for n in range(prob.shape[0])]

    def instances(self, semantic: torch.Tensor, embedding: torch.Tensor,
                  thing_classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 2 for one image: ``semantic [h, w] int64``, ``embedding [D, h, w]``.

        Returns:
            ``instance [h, w] int64`` ids ``0..n-1`` (-1: none) and ``classes [n]``.
        """
        h, w = semantic.shape
        device = semantic.device
        t = thing_classes.numel()
        thing_of = torch.full((max(int(semantic.max()), int(thing_classes.max())) + 1,), -1,
                              dtype=torch.long, device=device)
        thing_of[thing_classes] = torch.arange(t, device=device)
        cell_thing = thing_of.index_select(0, semantic.flatten())
        cells = torch.nonzero(cell_thing >= 0).flatten()
        inst = torch.full((h * w,), -1, dtype=torch.long, device=device)
        if cells.numel() == 0:
            return inst.view(h, w), torch.zeros(0, dtype=torch.long, device=device)
        x = embedding.flatten(1).index_select(1, cells).T
        labels, _, centre_thing = mean_shift(x, cell_thing.index_select(0, cells),
                                             self.bandwidths(t, device),
                                             max_iter=self.max_iter,
                                             bin_fraction=self.bin_fraction,
                                             min_bin_freq=self.min_bin_freq,
                                             budget=self.budget)
        k = centre_thing.numel()
        area = torch.bincount(labels + 1, minlength=k + 1)[1:]
        kept = torch.cat([area >= max(self.min_area, 1), torch.zeros(1, dtype=torch.bool,
                                                                   device=device)])
        new_id = torch.cumsum(kept.long(), 0) - 1
        lab = torch.where(labels >= 0, labels, torch.full_like(labels, k))   # k: no mode
        inst[cells] = torch.where(kept.index_select(0, lab), new_id.index_select(0, lab),
                                  torch.full_like(labels, -1))
        kept = kept[:k]
        return inst.view(h, w), thing_classes.index_select(0, centre_thing[kept])

    def single(self, semantic: torch.Tensor, prob: torch.Tensor, embedding: torch.Tensor,
               thing_classes: torch.Tensor, is_thing: torch.Tensor,
               out_size: tuple[int, int]) -> PanopticResult:
        inst_map, classes = self.instances(semantic, embedding, thing_classes)
        return labelled_instances_result(
            semantic, inst_map, classes.numel(), prob, is_thing,
            score_threshold=self.score_threshold, min_stuff_area=self.min_stuff_area,
            void_id=self.void_id, label_divisor=self.label_divisor, out_size=out_size)
