"""Dice + cross-entropy: Dice keeps the small classes from being ignored (the seeds' class imbalance)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_background: bool = True, eps: float = 1.0) -> torch.Tensor:
    probs = logits.float().softmax(dim=1)
    onehot = F.one_hot(target, probs.shape[1]).permute(0, 3, 1, 2).float()
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    if ignore_background:
        dice = dice[1:]
    return 1.0 - dice.mean()


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    return F.cross_entropy(logits.float(), target) + dice_weight * soft_dice_loss(logits, target)
