"""Losses of PanoNet (sections III-B, III-E).

* Semantic: the ICNet cascade (eq. 1), softmax cross-entropy of the outputs at 1/4, 1/8 and
  1/16 with weights 1, 0.4 and 0.16 (section III-E), each upsampled bilinearly to the input
  size; void ignored.
* Instance: the discriminative loss of De Brabandere et al. (the paper's ref. [19]; its
  equations did not survive in the text, the form and margins are that paper's):
  ``alpha L_var + beta L_dist + gamma L_reg`` with ``delta_v 0.25, delta_d 1, delta_r 6``,
  ``alpha = beta = 1, gamma = 0.1``:

  - ``L_var = 1/C sum_c 1/N_c sum_i [||mu_c - x_i|| - delta_v]_+^2`` (pull to the mean);
  - ``L_dist = 1/(C(C-1)) sum_{a != b} [2 delta_d - ||mu_a - mu_b||]_+^2`` (push means apart);
  - ``L_reg = 1/C sum_c [||mu_c|| - delta_r]_+`` (keep means near the origin; hinged at
    ``delta_r``).

  Per image over its instances, then averaged over the images that have instances (pairs:
  over those with two or more). Vectorised over instances and images: means by ``index_add``,
  the push term over all pairs of the batch masked to same-image pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = 255


@dataclass(frozen=True)
class LossConfig:
    """Weights and margins (defaults: the paper's, section III-B)."""

    cascade_weights: tuple[float, float, float] = (1.0, 0.4, 0.16)   # 1/4, 1/8, 1/16
    instance_weight: float = 1.0        # the discriminative loss against the semantic one
    delta_v: float = 0.25
    delta_d: float = 1.0
    delta_r: float = 6.0
    alpha: float = 1.0                  # L_var
    beta: float = 1.0                   # L_dist
    gamma: float = 0.1                  # L_reg


def discriminative_loss(embedding: torch.Tensor, instance: torch.Tensor, *,
                        delta_v: float = 0.25, delta_d: float = 1.0, delta_r: float = 6.0
                        ) -> dict[str, torch.Tensor]:
    """The three terms for a batch.

    Args:
        embedding: ``[N, D, h, w]``.
        instance: ``[N, h, w] int64`` instance ids ``1..K_n`` per image, 0 for pixels the loss
            ignores (stuff, void, crowd).

    Returns:
        ``{'var', 'dist', 'reg'}`` scalars (0, with a gradient path, without instances).
    """
    n, d = embedding.shape[:2]
    emb = embedding.permute(0, 2, 3, 1).reshape(-1, d)
    inst = instance.reshape(n, -1).long()
    k = int(inst.max()) + 1 if inst.numel() else 1
    gid = (inst + torch.arange(n, device=inst.device)[:, None] * k).reshape(-1)  # n * k ids
    on = (inst > 0).reshape(-1)
    zero = embedding.sum() * 0
    if not bool(on.any()):
        return {'var': zero, 'dist': zero, 'reg': zero}
    g = gid[on]
    e = emb[on]
    total = n * k
    cnt = torch.zeros(total, device=emb.device, dtype=emb.dtype).index_add_(
        0, g, torch.ones_like(g, dtype=emb.dtype))
    mu = torch.zeros(total, d, device=emb.device, dtype=emb.dtype).index_add_(0, g, e)
    present = cnt > 0
    mu = mu / cnt.clamp(min=1)[:, None]
    # pull: per instance mean of the hinged squared distances
    pull = (torch.relu((e - mu[g]).norm(dim=1) - delta_v) ** 2)
    per_inst = torch.zeros(total, device=emb.device, dtype=emb.dtype).index_add_(
        0, g, pull) / cnt.clamp(min=1)
    img_of = torch.arange(total, device=emb.device) // k
    n_inst = torch.zeros(n, device=emb.device, dtype=emb.dtype).index_add_(
        0, img_of, present.to(emb.dtype))
    has = n_inst > 0

    def per_image_mean(values: torch.Tensor) -> torch.Tensor:
        s = torch.zeros(n, device=emb.device, dtype=emb.dtype).index_add_(
            0, img_of, values * present.to(emb.dtype))
        return (s[has] / n_inst[has]).mean()

    var = per_image_mean(per_inst)
    reg = per_image_mean(torch.relu(mu.norm(dim=1) - delta_r))
    # push: all pairs of present instances of the same image
    idx = torch.nonzero(present).flatten()
    m, im = mu[idx], img_of[idx]
    pair = (im[:, None] == im[None, :]) & ~torch.eye(idx.numel(), dtype=torch.bool,
                                                     device=emb.device)
    if bool(pair.any()):
        # (a clamped square root: a zero distance between two means still has a gradient)
        dm = ((m[:, None] - m[None]) ** 2).sum(-1).clamp(min=1e-12).sqrt()
        hinge = torch.relu(2 * delta_d - dm) ** 2 * pair
        s = torch.zeros(n, device=emb.device, dtype=emb.dtype).index_add_(0, im, hinge.sum(1))
        c = n_inst
        two = c >= 2
        dist = (s[two] / (c[two] * (c[two] - 1))).mean()
    else:
        dist = zero
    return {'var': var, 'dist': dist, 'reg': reg}


def cascade_semantic_loss(logits: list[torch.Tensor], target: torch.Tensor,
                          weights: tuple[float, ...]) -> torch.Tensor:
    """Eq. 1: ``sum_t weights[t] CE(upsample(logits[t]), target)``; ``target [N, H, W]``."""
    size = tuple(target.shape[-2:])
    if not bool((target != IGNORE).any()):
        return sum(l.sum() * 0 for l in logits)
    total = 0
    for w, l in zip(weights, logits):
        up = F.interpolate(l.float(), size=size, mode='bilinear', align_corners=False)
        total = total + w * F.cross_entropy(up, target, ignore_index=IGNORE)
    return total
