"""Dice + cross-entropy: Dice keeps the small classes from being ignored (the seeds' class imbalance).

Pixels labelled IGNORE (255) in a training label map teach nothing: a semi-automatic label can
mark where it is unsure instead of teaching a guess."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from AdiposeSegLib.reading.labels_io import IGNORE_LABEL as IGNORE  # 255


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_background: bool = True, eps: float = 1.0) -> torch.Tensor:
    probs = logits.float().softmax(dim=1)
    valid = (target != IGNORE)[:, None].float()
    onehot = F.one_hot(torch.where(target == IGNORE, 0, target), probs.shape[1]).permute(0, 3, 1, 2).float()
    probs, onehot = probs * valid, onehot * valid
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    if ignore_background:
        dice = dice[1:]
    return 1.0 - dice.mean()


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    if bool((target == IGNORE).all()):
        return logits.sum() * 0.0   # nothing to learn from this batch (cross-entropy would be NaN)
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE) + dice_weight * soft_dice_loss(logits, target)
