"""Batch augmentation on model-grid tensors: left-right flip, rotation, scale, shift, intensity, noise,
and fatty muscle.

Only left-right flips: inputs are put in canonical LPS orientation before the network, so
anterior stays up; rotations cover patients lying a little askew.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from AdiposeSegLib.tissues import IMAT, MUSCLE, HUWindows


def augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, max_rotation_deg: float = 12.0,
            scale_range: tuple[float, float] = (0.85, 1.15), max_shift: float = 0.08,
            hu_span: float = 700.0, max_noise_hu: float = 20.0) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (n, 1, H, W) normalised CT, y: (n, H, W) labels; returns augmented copies."""
    n = x.shape[0]

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    angle = uniform(-max_rotation_deg, max_rotation_deg) * math.pi / 180
    scale = uniform(*scale_range)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    tx, ty = uniform(-max_shift, max_shift), uniform(-max_shift, max_shift)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    y = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0].long()
    # intensity: window-level shifts of a few HU, contrast, and noise (in normalised units)
    per_hu = 2.0 / hu_span
    shift = uniform(-15, 15)[:, None, None, None] * per_hu
    gain = uniform(0.95, 1.05)[:, None, None, None]
    sigma = uniform(0, max_noise_hu)[:, None, None, None] * per_hu
    noise = torch.randn(x.shape, generator=generator) * sigma
    x = ((x + 1) * gain - 1 + shift + noise).clamp(-1.0, 1.0)
    return x, y


def fatty_muscle(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, probability: float,
                 hu_window: tuple[float, float], max_drop_hu: float = 30.0, max_marbling: float = 0.06,
                 windows: HUWindows = HUWindows()) -> tuple[torch.Tensor, torch.Tensor]:
    """Myosteatosis on any labelled slice: the muscle of a chosen slice loses up to `max_drop_hu` of
    density and up to `max_marbling` of its pixels turn to fat. The real training slices come from
    one patient with dense muscle; older patients' fatty muscle is where the model loses muscle to
    SAT. Labels follow the definitions: muscle pixels pushed into the fat range become IMAT.
    """
    if probability <= 0:
        return x, y
    n = x.shape[0]
    lo, hi = hu_window
    per_hu = 2.0 / (hi - lo)
    chosen = (torch.rand(n, generator=generator) < probability).float()
    drop = torch.rand(n, generator=generator) * max_drop_hu * chosen
    marbling = torch.rand(n, generator=generator) * max_marbling * chosen
    muscle = y == MUSCLE
    hu = (x[:, 0] + 1) / per_hu + lo - drop[:, None, None] * muscle
    marbled = muscle & (torch.rand(y.shape, generator=generator) < marbling[:, None, None])
    fat_hu = -120.0 + 70.0 * torch.rand(y.shape, generator=generator)
    hu = torch.where(marbled, fat_hu, hu)
    now_fat = muscle & windows.is_fat(hu)
    y = torch.where(now_fat, torch.full_like(y, IMAT), y)
    x = ((hu - lo) * per_hu - 1).clamp(-1.0, 1.0)[:, None]
    return x, y
