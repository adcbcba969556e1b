"""Extent of a mask, shared by the .seg.nrrd writer (segment extents) and post-processing (crops)."""
from __future__ import annotations

import numpy as np


def mask_bounds(mask: np.ndarray) -> list[tuple[int, int]] | None:
    """(first, last) index holding a True voxel along each array axis; None for an empty mask."""
    bounds = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        bounds.append((int(hit[0]), int(hit[-1])))
    return bounds
