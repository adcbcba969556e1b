"""Batched slice-wise inference: canonical HU slices in, per-voxel class (argmax) on the native grid out.

On the CPU, a model with a current ONNX export runs in ONNX Runtime with NumPy around it (no torch
import); otherwise, and on GPUs, in torch.
"""
from __future__ import annotations

import numpy as np

from .grid import GridMapping
from .model_card import LoadedModel
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
    out = np.zeros(hu.shape, dtype=np.uint8)
    n = hu.shape[0]
    onnx = model.onnx_network() if device == "cpu" else None
    run = _onnx_batches(onnx, mapping, card.hu_window) if onnx is not None else _torch_batches(model, mapping, card.hu_window, device)
    control.report(0.0, f"segmenting {n} slices on {device}" + (" (ONNX Runtime)" if onnx is not None else ""))
    with run as step:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            out[start:stop] = step(hu[start:stop])
            control.report(stop / n, f"segmented slice {stop} of {n}")
    return out


class _onnx_batches:
    def __init__(self, network, mapping: GridMapping, window):
        self.network, self.mapping, self.window = network, mapping, window

    def __enter__(self):
        from .grid_numpy import classes_on_native, hu_to_grid

        return lambda slices: classes_on_native(self.network(hu_to_grid(slices, self.mapping, self.window)), self.mapping)

    def __exit__(self, *exc):
        return False


class _torch_batches:
    def __init__(self, model: LoadedModel, mapping: GridMapping, window, device: str):
        self.model, self.mapping, self.window, self.device = model, mapping, window, device

    def __enter__(self):
        import contextlib

        import torch

        from .preprocess import classes_on_native, hu_to_grid

        network = self.model.inference_network()
        if next(network.parameters()).device.type != self.device:
            network.to(self.device)
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(torch.inference_mode())
        if self.device == "cuda":
            self._stack.enter_context(torch.autocast("cuda", dtype=torch.float16))

        def step(slices):
            logits = network(hu_to_grid(slices, self.mapping, self.window, device=self.device))
            return classes_on_native(logits, self.mapping).cpu().numpy()
        return step

    def __exit__(self, *exc):
        self._stack.close()
        return False
