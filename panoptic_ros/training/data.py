"""Training batches that depend only on (seed, step): resuming reproduces them exactly.

Sample ``g`` of the run (``g = step * global_batch + rank * batch + i``) is image
``perm_e[g mod n]`` of epoch ``e = g // n`` (a permutation seeded by ``(seed, e)``), augmented
with a generator seeded by ``(seed, g)``; no state is carried between steps, so the number of
loader workers, processes or restarts never changes what a step sees.
"""

from __future__ import annotations

import functools
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from panoptic_ros.datasets.sample import Sample


class StepSampler(Sampler):
    """Yields, for steps ``start..steps-1``, this rank's global sample indices."""

    def __init__(self, start: int, steps: int, batch_size: int, rank: int = 0,
                 world: int = 1) -> None:
        self.start, self.steps, self.batch, self.rank, self.world = (
            start, steps, batch_size, rank, world)

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            base = (step * self.world + self.rank) * self.batch
            yield list(range(base, base + self.batch))


class TrainingSet(Dataset):
    """Map-style view: global sample index -> ``(image [3, H, W] uint8, targets)``.

    Args:
        dataset: indexable samples (``CityscapesDataset``, ``CocoPanopticDataset``).
        transforms: ``(sample, rng) -> sample`` augmentation to the crop size.
        objective: the architecture's objective (its ``targets`` runs in the loader workers).
        seed: the run's seed.
    """

    def __init__(self, dataset, transforms, objective, seed: int) -> None:
        self.dataset, self.transforms, self.objective, self.seed = (
            dataset, transforms, objective, seed)
        self.n = len(dataset)

    @functools.lru_cache(maxsize=2)
    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def image_index(self, g: int) -> int:
        epoch, pos = divmod(g, self.n)
        return int(self._permutation(epoch)[pos])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, g: int):
        s: Sample = self.dataset[self.image_index(g)]
        s = self.transforms(s, np.random.default_rng([self.seed, 1 << 20, g]))
        image = torch.from_numpy(np.ascontiguousarray(s.image)).permute(2, 0, 1)
        targets = self.objective.targets(torch.from_numpy(s.semantic.astype(np.int64)),
                                         torch.from_numpy(s.instance.astype(np.int64)))
        return image, targets


def collate(items: Sequence) -> tuple[torch.Tensor, list]:
    return torch.stack([i[0] for i in items]), [i[1] for i in items]
