"""The model-grid mapping of `preprocess.py` in NumPy and Pillow, for inference without torch
(ONNX Runtime): the same resampling (Pillow's bilinear resize is torch's antialiased bilinear to
within 0.01 HU) and the same class decision on the CT's own pixels."""
from __future__ import annotations

import numpy as np

from .grid import AIR_HU, GridMapping
from ..running.slice_workers import INLINE, SliceWorkers


def _resize(slices: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if tuple(slices.shape[-2:]) == tuple(size):
        return slices.astype(np.float32, copy=False)
    out = np.empty((slices.shape[0], *size), dtype=np.float32)
    for i, s in enumerate(slices):
        out[i] = np.asarray(Image.fromarray(np.ascontiguousarray(s, dtype=np.float32), mode="F")
                            .resize((size[1], size[0]), Image.BILINEAR))
    return out


def hu_to_grid(hu_slices: np.ndarray, mapping: GridMapping, window: tuple[float, float]) -> np.ndarray:
    """(n, rows, cols) HU -> (n, 1, H, W) float32 network input, air outside the field of view."""
    x = _resize(np.asarray(hu_slices, dtype=np.float32), mapping.scaled)
    out = np.full((x.shape[0], 1, *mapping.padded), AIR_HU, dtype=np.float32)
    (r, c), (h, w) = mapping.offset, mapping.scaled
    out[:, 0, r:r + h, c:c + w] = x
    lo, hi = window
    np.clip(out, lo, hi, out=out)
    out -= lo
    out *= 2.0 / (hi - lo)
    out -= 1.0
    return out


def source_indices(in_size: int, out_size: int):
    """For bilinear upsampling with align_corners=False (PyTorch's rule): each output position's two
    source indices and the weight of the second."""
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size, dtype=np.float32) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (src - i0).astype(np.float32)


def _window(hit: np.ndarray, lo_index: np.ndarray, hi_index: np.ndarray) -> slice:
    """Native positions whose two source grid positions (lo_index, hi_index) reach a grid position
    marked in `hit`: a range, since both indices grow with the position."""
    marked = np.flatnonzero(hit)
    if marked.size == 0:
        return slice(0, 0)
    first = int(np.searchsorted(hi_index, marked[0], side="left"))
    stop = int(np.searchsorted(lo_index, marked[-1], side="right"))
    return slice(first, stop)


def _argmax(scores: np.ndarray) -> np.ndarray:
    """scores.argmax(axis=1) as uint8, a channel at a time (3x faster than argmax across the strided
    channel axis); ties keep the lower class, as argmax does."""
    best = scores[:, 0].copy()
    out = np.zeros(best.shape, dtype=np.uint8)
    for channel in range(1, scores.shape[1]):
        value = scores[:, channel]
        out[value > best] = channel
        np.maximum(best, value, out=best)
    return out


def tissue_classes(logits: np.ndarray, mapping: GridMapping, workers: SliceWorkers = INLINE) -> tuple[np.ndarray, tuple[slice, slice]]:
    """(n, C, H, W) scores -> the classes on the CT's own pixels inside the window (rows, cols) that
    holds every pixel that can be anything but background, and that window; all pixels outside it
    are background. The classes are the argmax of the bilinearly upsampled scores, interpolating only
    where the four grid points around a pixel disagree: where they agree, every convex combination of
    their scores does too - which is also why a pixel whose four grid points are all background is
    background, and the window can be read off the grid. `workers` splits the slices over threads."""
    (r, c), (h, w) = mapping.offset, mapping.scaled
    scores = logits[:, :, r:r + h, c:c + w]
    grid = np.concatenate(workers.map(lambda part: _argmax(scores[part]), scores.shape[0]))
    rows, cols = mapping.native
    tissue = grid.any(axis=0)
    if (h, w) == (rows, cols):
        window = (_window(tissue.any(axis=1), np.arange(h), np.arange(h)), _window(tissue.any(axis=0), np.arange(w), np.arange(w)))
        return grid[:, window[0], window[1]], window
    if h > rows or w > cols:   # CT pixels coarser than the model's: antialiased shrinking of every score map
        full = _argmax(np.stack([_resize(scores[:, k], mapping.native) for k in range(scores.shape[1])], axis=1))
        return full, (slice(0, rows), slice(0, cols))
    r0, r1, wr = source_indices(h, rows)
    c0, c1, wc = source_indices(w, cols)
    window = (_window(tissue.any(axis=1), r0, r1), _window(tissue.any(axis=0), c0, c1))
    rows_at = (r0[window[0]], r1[window[0]], wr[window[0]])
    cols_at = (c0[window[1]], c1[window[1]], wc[window[1]])
    parts = workers.map(lambda part: _upsampled_classes(scores[part], grid[part], rows_at, cols_at), grid.shape[0])
    return np.concatenate(parts), window


def _upsampled_classes(scores: np.ndarray, grid: np.ndarray, rows_at, cols_at) -> np.ndarray:
    """The argmax of the bilinearly upsampled scores at the native positions rows_at x cols_at (each
    (lower index, upper index, weight of the upper)), from the grid's classes where the four grid
    points agree."""
    (r0, r1, wr), (c0, c1, wc) = rows_at, cols_at
    h, w = grid.shape[1:]
    padded = np.concatenate([grid, grid[:, -1:]], axis=1)
    padded = np.concatenate([padded, padded[:, :, -1:]], axis=2)
    corner = padded[:, :-1, :-1]
    uniform = (corner == padded[:, 1:, :-1]) & (corner == padded[:, :-1, 1:]) & (corner == padded[:, 1:, 1:])
    out = grid[:, r0][:, :, c0]
    mixed = ~uniform[:, r0][:, :, c0]
    k, y, x = np.nonzero(mixed)
    if k.size:
        a, b = wr[y], wc[x]
        weights = ((1 - a) * (1 - b), (1 - a) * b, a * (1 - b), a * b)
        plane = h * w
        top_left = k * (scores.shape[1] * plane) + r0[y] * w + c0[x]
        corners = (top_left, top_left + (c1[x] - c0[x]), top_left + (r1[y] - r0[y]) * w,
                   top_left + (r1[y] - r0[y]) * w + (c1[x] - c0[x]))
        flat = np.ascontiguousarray(scores, dtype=np.float32).ravel()
        # a channel at a time: gathers from each score plane, no channels-last copy of the scores
        values = np.stack([flat[corners[0] + at] * weights[0] + flat[corners[1] + at] * weights[1]
                           + flat[corners[2] + at] * weights[2] + flat[corners[3] + at] * weights[3]
                           for at in range(0, scores.shape[1] * plane, plane)], axis=1)
        out[k, y, x] = _argmax(values)
    return out
