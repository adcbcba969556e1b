"""False-colour rendering in the seeds' scheme and PNG montages.

Soft tissue stays gray, tissue denser than soft tissue (bone, contrast) in blue hues by density,
SAT red, VAT green, muscle and IMAT in their segment colours. Slices are shown in the radiological
convention (canonical LPS: anterior up, patient's right on the image's left).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .safe_write import atomic_path
from ..tissues import COLORS, LABELS

GRAY_WINDOW = (-200.0, 250.0)
DENSE_HU = (200.0, 1200.0)   # start and saturation of the blue scale
OVERLAY_ALPHA = 0.7


def false_colour(hu: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """(rows, cols) HU [+ labels] -> (rows, cols, 3) uint8 RGB."""
    lo, hi = GRAY_WINDOW
    gray = np.clip((hu - lo) / (hi - lo), 0, 1)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    dense = hu > DENSE_HU[0]
    if dense.any():
        t = np.clip((hu[dense] - DENSE_HU[0]) / (DENSE_HU[1] - DENSE_HU[0]), 0, 1)[:, None]
        light, deep = np.array([0.55, 0.75, 1.0]), np.array([0.05, 0.15, 0.75])
        rgb[dense] = light * (1 - t) + deep * t
    if labels is not None:
        for label in LABELS:
            mask = labels == label
            if mask.any():
                colour = np.array(COLORS[label]) / 255.0
                rgb[mask] = (1 - OVERLAY_ALPHA) * rgb[mask] + OVERLAY_ALPHA * colour
    return (rgb * 255 + 0.5).astype(np.uint8)


def choose_slices(labels: np.ndarray, count: int = 6, must_include: list[int] | None = None) -> list[int]:
    """Evenly spaced slices among those that hold any tissue (all slices when none do)."""
    occupied = np.flatnonzero(labels.reshape(labels.shape[0], -1).any(axis=1))
    pool = occupied if occupied.size else np.arange(labels.shape[0])
    picks = set(int(pool[i]) for i in np.linspace(0, pool.size - 1, min(count, pool.size)).round().astype(int))
    picks.update(int(s) for s in (must_include or []) if 0 <= s < labels.shape[0])
    return sorted(picks)


def montage(hu: np.ndarray, labels: np.ndarray, slices: list[int], spacing_xy: tuple[float, float],
            tile_width: int = 320, columns: int = 3, with_plain: bool = False):
    """A PIL image: one false-colour tile per chosen slice (optionally beside the plain CT)."""
    from PIL import Image, ImageDraw

    rows_px, cols_px = hu.shape[1:]
    aspect = (rows_px * spacing_xy[1]) / (cols_px * spacing_xy[0])
    tile = (tile_width, max(1, int(round(tile_width * aspect))))
    tiles = []
    for s in slices:
        panels = [false_colour(hu[s], labels[s])]
        if with_plain:
            panels.insert(0, false_colour(hu[s]))
        images = [Image.fromarray(p).resize(tile, Image.BILINEAR) for p in panels]
        joined = Image.new("RGB", (tile[0] * len(images), tile[1]))
        for i, im in enumerate(images):
            joined.paste(im, (i * tile[0], 0))
        ImageDraw.Draw(joined).text((4, 4), f"slice {s}", fill=(255, 255, 0))
        tiles.append(joined)
    columns = max(1, min(columns, len(tiles)))
    nrows = int(np.ceil(len(tiles) / columns))
    tw, th = tiles[0].size
    sheet = Image.new("RGB", (tw * columns, th * nrows), (0, 0, 0))
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % columns) * tw, (i // columns) * th))
    return sheet


def write_montage(path: str | os.PathLike, hu: np.ndarray, labels: np.ndarray, slices: list[int],
                  spacing_xy: tuple[float, float], **kwargs) -> Path:
    sheet = montage(hu, labels, slices, spacing_xy, **kwargs)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path)
