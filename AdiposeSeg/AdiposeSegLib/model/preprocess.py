"""Per-slice resampling between a CT's native pixel grid and the model's grid.

Training and inference both use these functions, so the network sees the same input at both.
The model grid has a fixed pixel size (mm) and at least `grid_pixels` pixels per side; a field of
view larger than that is padded, never cropped, to a multiple of 32.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .grid import AIR_HU, MULTIPLE, GridMapping  # noqa: F401  (the mapping is shared with grid_numpy)
from .grid_numpy import source_indices


def normalise(hu: torch.Tensor, window: tuple[float, float]) -> torch.Tensor:
    lo, hi = window
    return (hu.clamp(lo, hi) - lo) * (2.0 / (hi - lo)) - 1.0


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking and x.device.type == "cpu")


def hu_to_grid(hu_slices: np.ndarray | torch.Tensor, mapping: GridMapping, window: tuple[float, float], device="cpu") -> torch.Tensor:
    """(n, rows, cols) HU -> (n, 1, H, W) normalised network input, air outside the field of view."""
    x = torch.from_numpy(np.array(hu_slices, dtype=np.float32)).to(device)[:, None]
    x = _resize(x, mapping.scaled, "bilinear")
    out = torch.full((x.shape[0], 1, *mapping.padded), AIR_HU, dtype=torch.float32, device=device)
    (r, c), (h, w) = mapping.offset, mapping.scaled
    out[:, :, r : r + h, c : c + w] = x
    return normalise(out, window)


def labels_to_grid(labels: np.ndarray, mapping: GridMapping) -> torch.Tensor:
    """(n, rows, cols) label ids -> (n, H, W) int64 on the model grid (nearest neighbour)."""
    y = torch.from_numpy(np.array(labels, dtype=np.float32))[:, None]
    y = _resize(y, mapping.scaled, "nearest")
    out = torch.zeros((y.shape[0], 1, *mapping.padded), dtype=torch.float32)
    (r, c), (h, w) = mapping.offset, mapping.scaled
    out[:, :, r : r + h, c : c + w] = y
    return out[:, 0].round().long()


def logits_to_native(logits: torch.Tensor, mapping: GridMapping) -> torch.Tensor:
    """(n, C, H, W) network output -> (n, C, rows, cols) on the CT's own pixel grid."""
    (r, c), (h, w) = mapping.offset, mapping.scaled
    cropped = logits[:, :, r : r + h, c : c + w].float()
    return _resize(cropped, mapping.native, "bilinear")


def _argmax_channels(x: torch.Tensor) -> torch.Tensor:
    """argmax over dim 1 of (n, C, h, w), lowest index on ties, as torch.argmax; a pass per channel
    is several times faster than torch's reduction over the channel axis on the CPU."""
    best = x[:, 0].clone()
    index = torch.zeros(best.shape, dtype=torch.uint8, device=x.device)
    for c in range(1, x.shape[1]):
        better = x[:, c] > best
        best = torch.where(better, x[:, c], best)
        index[better] = c
    return index


def _source_indices(in_size: int, out_size: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """grid_numpy.source_indices (PyTorch's bilinear rule, align_corners=False) as tensors."""
    return tuple(torch.from_numpy(a).to(device) for a in source_indices(in_size, out_size))


def classes_on_native(logits: torch.Tensor, mapping: GridMapping) -> torch.Tensor:
    """(n, C, H, W) network output -> (n, rows, cols) uint8 class ids on the CT's pixel grid.

    Equal to the argmax of the bilinearly upsampled scores, computed without upsampling them: where
    the four grid points around a pixel agree on the class, every convex combination of their scores
    does too, so only pixels between disagreeing grid points are interpolated (a few percent)."""
    (r, c), (h, w) = mapping.offset, mapping.scaled
    scores = logits[:, :, r : r + h, c : c + w].float()
    grid = _argmax_channels(scores)
    rows, cols = mapping.native
    if (h, w) == (rows, cols):
        return grid
    if h > rows or w > cols:  # CT pixels coarser than the model's: antialiased shrinking mixes more than 4 points
        return _argmax_channels(_resize(scores, mapping.native, "bilinear"))
    r0, r1, wr = _source_indices(h, rows, scores.device)
    c0, c1, wc = _source_indices(w, cols, scores.device)
    # a grid cell is uniform when its four corners agree (edges replicated, as the interpolation clamps)
    padded = torch.cat([grid, grid[:, -1:]], dim=1)
    padded = torch.cat([padded, padded[:, :, -1:]], dim=2)
    corner = padded[:, :-1, :-1]
    uniform = (corner == padded[:, 1:, :-1]) & (corner == padded[:, :-1, 1:]) & (corner == padded[:, 1:, 1:])
    out = grid.index_select(1, r0).index_select(2, c0)
    mixed = ~uniform.index_select(1, r0).index_select(2, c0)
    if bool(mixed.any()):
        k, y, x = mixed.nonzero(as_tuple=True)
        a, b = wr[y][:, None], wc[x][:, None]
        channels_last = scores.permute(0, 2, 3, 1)
        value = ((1 - a) * (1 - b) * channels_last[k, r0[y], c0[x]] + (1 - a) * b * channels_last[k, r0[y], c1[x]]
                 + a * (1 - b) * channels_last[k, r1[y], c0[x]] + a * b * channels_last[k, r1[y], c1[x]])
        out[k, y, x] = value.argmax(dim=1).to(torch.uint8)
    return out
