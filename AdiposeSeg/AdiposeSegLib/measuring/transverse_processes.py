"""The lumbar transverse processes as a check on the vertebral count: L3's reach furthest from the midline
in most adults (L2's or L4's in some), so the vertebra with the longest ones, among L1..L4, should be L3.

Measured per vertebra on the middle half of its slices: bone joined in the slice to the posterior arch
(dense cores grown into their diluted rim, as for the ribs), behind the vertebral body's centre, and its
furthest reach to each side of the spine's axis. The two sides' reaches are averaged.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .spine import SpineColumn, middle_half

ARCH_DEPTH_MM = 40.0     # the arch (pedicles, laminae, spinous process) lies within this behind the body centre
LONGER_MM = 3.0          # a vertebra's processes must be this much longer than another's to tell them apart


def reach_mm(bone: np.ndarray, column: SpineColumn, spacing, k_low: float, k_high: float) -> float | None:
    """Mean over both sides of the transverse processes' furthest reach from the spine's axis (mm) in the
    middle half of the stretch k_low..k_high; None where no arch is found on both sides. `bone`: the mask
    the ribs are looked for in (vertebral_levels._bone with the ribs' thresholds, above what an enhanced
    kidney or psoas reaches)."""
    sx, sy, _ = spacing
    best = {-1: 0.0, 1: 0.0}
    for k in middle_half(column, k_low, k_high):
        labels, _ = ndimage.label(bone[k])
        cj, ci = int(round(column.centre_j[k])), int(round(column.axis_x[k]))
        seed = labels[cj:cj + int(ARCH_DEPTH_MM / sy), max(0, ci - 1):ci + 2]
        arch = np.isin(labels, seed[seed > 0]) & (np.arange(bone.shape[1])[:, None] >= column.centre_j[k])
        _, cols = np.nonzero(arch)
        if cols.size == 0:
            continue
        side = (cols - column.axis_x[k]) * sx
        for s in (-1, 1):
            if (side * s > 0).any():
                best[s] = max(best[s], float((side * s).max()))
    if min(best.values()) <= 0.0:
        return None
    return (best[-1] + best[1]) / 2.0


def longest(reaches: dict) -> int | None:
    """The index with the longest processes, where they are longer than every other's by LONGER_MM."""
    known = {index: r for index, r in reaches.items() if r is not None}
    if len(known) < 2:
        return None
    first = max(known, key=known.get)
    others = [r for index, r in known.items() if index != first]
    return first if known[first] - max(others) >= LONGER_MM else None
