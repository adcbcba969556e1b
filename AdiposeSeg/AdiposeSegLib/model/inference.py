"""Batched slice-wise inference: canonical HU slices in, per-voxel class (argmax) on the native grid out.

On the CPU, a model with a current ONNX export runs in ONNX Runtime with NumPy around it (no torch
import); otherwise, and on GPUs, in torch. Each batch comes with the window of the slices that can
hold tissue (read off the model grid), so the caller's per-pixel work skips the air around the body.

(Running the network a batch ahead in a thread, to overlap it with the NumPy work, was measured on
2 cores and gained nothing: ONNX Runtime already keeps both cores busy. The NumPy class decision
instead splits each batch's slices over `workers`, filling the cores while the network waits.)
"""
from __future__ import annotations

import time
from typing import Iterator

import numpy as np

from .grid import GridMapping
from .model_card import LoadedModel
from ..running.progress import RunControl
from ..running.slice_workers import INLINE, SliceWorkers

STAGES = ("to_grid_s", "network_s", "class_decision_s")


def class_batches(
    hu: np.ndarray,
    spacing_rc: tuple[float, float],
    model: LoadedModel,
    device: str = "cpu",
    batch_size: int = 8,
    control: RunControl | None = None,
    stage_times: dict | None = None,
    workers: SliceWorkers = INLINE,
) -> Iterator[tuple[int, int, np.ndarray, tuple[slice, slice]]]:
    """hu: (slices, rows, cols) in canonical axial order. Yields (start, stop, classes, (rows, cols)):
    the uint8 classes of hu[start:stop][:, rows, cols]; every pixel outside that window is background.
    `stage_times` (optional) accumulates seconds per stage."""
    control = control or RunControl()
    times = stage_times if stage_times is not None else {}
    for key in STAGES:
        times.setdefault(key, 0.0)
    card = model.card
    mapping = GridMapping.for_slice(hu.shape[1:], spacing_rc, card.pixel_spacing_mm, card.grid_pixels)
    n = hu.shape[0]
    onnx = model.onnx_network() if device == "cpu" else None
    to_grid, network, decide = _onnx_backend(onnx, workers) if onnx is not None else _torch_backend(model, device)
    control.report(0.0, f"segmenting {n} slices on {device}" + (" (ONNX Runtime)" if onnx is not None else ""))
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        t0 = time.perf_counter()
        x = to_grid(hu[start:stop], mapping, card.hu_window)
        t1 = time.perf_counter()
        scores = network(x)
        t2 = time.perf_counter()
        classes, window = decide(scores, mapping)
        t3 = time.perf_counter()
        times["to_grid_s"] += t1 - t0
        times["network_s"] += t2 - t1
        times["class_decision_s"] += t3 - t2
        yield start, stop, classes, window
        control.report(stop / n, f"segmented slice {stop} of {n}")


def _onnx_backend(network, workers: SliceWorkers):
    from .grid_numpy import hu_to_grid, tissue_classes

    return hu_to_grid, network, lambda scores, mapping: tissue_classes(scores, mapping, workers)


def _torch_backend(model: LoadedModel, device: str):
    import torch

    from .preprocess import classes_on_native, hu_to_grid

    network = model.inference_network()
    if next(network.parameters()).device.type != device:
        network.to(device)

    def run(x):
        with torch.inference_mode():
            if device != "cuda":
                return network(x)
            with torch.autocast("cuda", dtype=torch.float16):
                out = network(x)
            torch.cuda.synchronize()   # so that the stage times are the network's
            return out

    def decide(logits, mapping):
        with torch.inference_mode():
            return classes_on_native(logits, mapping).cpu().numpy(), (slice(None), slice(None))

    def to_grid(slices, mapping, window):
        with torch.inference_mode():
            return hu_to_grid(slices, mapping, window, device=device)

    return to_grid, run, decide
