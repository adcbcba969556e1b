"""Batched slice-wise inference: canonical HU slices in, per-voxel class (argmax) on the native grid out."""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from .model_card import LoadedModel
from .preprocess import GridMapping, classes_on_native, hu_to_grid
from ..running.progress import RunControl


def predict_classes(
    hu: np.ndarray,
    spacing_rc: tuple[float, float],
    model: LoadedModel,
    device: str = "cpu",
    batch_size: int = 8,
    control: RunControl | None = None,
) -> np.ndarray:
    """hu: (slices, rows, cols) in canonical axial order. Returns uint8 class ids of the same shape."""
    control = control or RunControl()
    card = model.card
    mapping = GridMapping.for_slice(hu.shape[1:], spacing_rc, card.pixel_spacing_mm, card.grid_pixels)
    network = model.inference_network()
    if next(network.parameters()).device.type != device:
        network.to(device)
    out = np.zeros(hu.shape, dtype=np.uint8)
    n = hu.shape[0]
    autocast = torch.autocast("cuda", dtype=torch.float16) if device == "cuda" else contextlib.nullcontext()
    control.report(0.0, f"segmenting {n} slices on {device}")
    with torch.inference_mode(), autocast:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            x = hu_to_grid(hu[start:stop], mapping, card.hu_window, device=device)
            logits = network(x)
            out[start:stop] = classes_on_native(logits, mapping).cpu().numpy()
            control.report(stop / n, f"segmented slice {stop} of {n}")
    return out
