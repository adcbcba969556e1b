"""Extent of a mask, shared by the .seg.nrrd writer (segment extents) and post-processing (crops)."""
from __future__ import annotations

import numpy as np


def mask_bounds(mask: np.ndarray) -> list[tuple[int, int]] | None:
    """(first, last) index holding a True voxel along each array axis; None for an empty mask."""
    if mask.ndim == 3:   # two passes over the volume instead of three: the in-plane bounds from its projection
        per_slice = mask.reshape(mask.shape[0], -1).any(axis=1)
        if not per_slice.any():
            return None
        hit = np.flatnonzero(per_slice)
        projection = mask[hit[0]:hit[-1] + 1].any(axis=0)
        rows, cols = np.flatnonzero(projection.any(axis=1)), np.flatnonzero(projection.any(axis=0))
        return [(int(hit[0]), int(hit[-1])), (int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1]))]
    bounds = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        bounds.append((int(hit[0]), int(hit[-1])))
    return bounds
