"""HU gating of the network's classes and removal of tiny islands."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .tissues import BACKGROUND, IMAT, LABELS, MUSCLE, SAT, VAT, HUWindows

# Connectivity inside a slice only: islands are judged slice by slice, as areas are reported.
_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def gate(classes: np.ndarray, hu: np.ndarray, windows: HUWindows, include_imat: bool = True) -> np.ndarray:
    """Keep SAT / VAT on fat-range voxels and Muscle on muscle-range voxels.

    Fat-range voxels the network put inside muscle become IMAT (or background without IMAT).
    The network decides the compartment; the HU window makes the boundary pixel-exact.
    """
    fat = (hu >= windows.fat[0]) & (hu <= windows.fat[1])
    muscle = (hu >= windows.muscle[0]) & (hu <= windows.muscle[1])
    out = np.zeros(classes.shape, dtype=np.uint8)
    out[(classes == SAT) & fat] = SAT
    out[(classes == VAT) & fat] = VAT
    out[((classes == MUSCLE) | (classes == IMAT)) & muscle] = MUSCLE
    if include_imat:
        out[((classes == MUSCLE) | (classes == IMAT)) & fat] = IMAT
    return out


def remove_islands(labels: np.ndarray, pixel_area_mm2: float, min_area_mm2: float) -> np.ndarray:
    """Clear in-plane connected components smaller than min_area_mm2, label by label."""
    min_pixels = int(np.ceil(min_area_mm2 / pixel_area_mm2)) if min_area_mm2 > 0 else 0
    if min_pixels <= 1:
        return labels
    out = labels.copy()
    for label in LABELS:
        mask = labels == label
        if not mask.any():
            continue
        components, count = ndimage.label(mask, structure=_IN_PLANE)
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        small = sizes < min_pixels
        small[0] = False
        out[small[components]] = BACKGROUND
    return out
