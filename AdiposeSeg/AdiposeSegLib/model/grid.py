"""The model grid: the CT slice resampled to the model's pixel size and padded to a multiple of 32
(shared by the torch and NumPy paths; imports neither torch nor Pillow)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AIR_HU = -1000.0
MULTIPLE = 32


@dataclass(frozen=True)
class GridMapping:
    native: tuple[int, int]   # (rows, cols) of the CT slice
    scaled: tuple[int, int]   # size after resampling to the model's pixel size
    padded: tuple[int, int]   # network input size
    offset: tuple[int, int]   # where the scaled slice sits inside the padded one

    @classmethod
    def for_slice(cls, native: tuple[int, int], spacing_rc: tuple[float, float], pixel_mm: float, min_pixels: int) -> "GridMapping":
        scaled = tuple(max(1, int(round(n * s / pixel_mm))) for n, s in zip(native, spacing_rc))
        padded = tuple(int(np.ceil(max(n, min_pixels) / MULTIPLE) * MULTIPLE) for n in scaled)
        offset = tuple((p - n) // 2 for p, n in zip(padded, scaled))
        return cls(tuple(native), scaled, padded, offset)
