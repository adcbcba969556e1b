"""Counting the tissue colours in a screenshot of a view: how the page's tests and benchmark tell
what the views show without comparing pixels exactly (Mesa's renderer differs between versions)."""
from __future__ import annotations

import io

import numpy as np

# hue ranges (degrees) of the module's colours as the slice views blend them over the gray CT
HUES = {"SAT": ((350, 360), (0, 6)), "Muscle": ((250, 300),), "VAT": ((105, 150),), "IMAT": ((45, 66),)}   # muscle violet
MIN_SATURATION = 0.25


def tissue_colour_counts(png: bytes) -> dict:
    from PIL import Image

    hsv = np.asarray(Image.open(io.BytesIO(png)).convert("RGB").convert("HSV")).reshape(-1, 3).astype(float)
    hue, saturation = hsv[:, 0] * 360.0 / 255.0, hsv[:, 1] / 255.0
    coloured = saturation > MIN_SATURATION
    return {name: int(sum((coloured & (hue >= lo) & (hue <= hi)).sum() for lo, hi in ranges))
            for name, ranges in HUES.items()}
