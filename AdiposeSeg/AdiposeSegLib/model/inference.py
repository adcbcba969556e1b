"""Batched slice-wise inference: canonical HU slices in, per-voxel class (argmax) on the native grid out.

On the CPU, a model with a current ONNX export runs in ONNX Runtime with NumPy around it (no torch
import); otherwise, and on GPUs, in torch.

The network runs one batch ahead in a worker thread (ONNX Runtime and torch release the GIL while
they compute), so the caller's work on a batch - the class decision here, HU gating and island
removal in the pipeline - overlaps the network's work on the next one. On 2 CPU cores this hides
most of the NumPy work behind the network.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np

from .grid import GridMapping
from .model_card import LoadedModel
from ..running.progress import RunControl

STAGES = ("to_grid_s", "network_s", "class_decision_s")


def class_batches(
    hu: np.ndarray,
    spacing_rc: tuple[float, float],
    model: LoadedModel,
    device: str = "cpu",
    batch_size: int = 8,
    control: RunControl | None = None,
    stage_times: dict | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """hu: (slices, rows, cols) in canonical axial order. Yields (start, stop, uint8 classes of
    hu[start:stop]) in order. `stage_times` (optional) accumulates seconds per stage; network_s is
    the network's own time in its thread, which overlaps the other stages."""
    control = control or RunControl()
    times = stage_times if stage_times is not None else {}
    for key in STAGES:
        times.setdefault(key, 0.0)
    card = model.card
    mapping = GridMapping.for_slice(hu.shape[1:], spacing_rc, card.pixel_spacing_mm, card.grid_pixels)
    n = hu.shape[0]
    onnx = model.onnx_network() if device == "cpu" else None
    backend = _onnx_backend(onnx) if onnx is not None else _torch_backend(model, device)
    to_grid, network, decide = backend
    control.report(0.0, f"segmenting {n} slices on {device}" + (" (ONNX Runtime)" if onnx is not None else ""))

    def timed_network(x):
        t = time.perf_counter()
        out = network(x)
        times["network_s"] += time.perf_counter() - t
        return out

    def submit(pool, start):
        t = time.perf_counter()
        x = to_grid(hu[start:min(n, start + batch_size)], mapping, card.hu_window)
        times["to_grid_s"] += time.perf_counter() - t
        return pool.submit(timed_network, x)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="adiposeseg-network") as pool:
        pending = submit(pool, 0) if n else None
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            scores = pending.result()
            pending = submit(pool, stop) if stop < n else None
            t = time.perf_counter()
            classes = decide(scores, mapping)
            times["class_decision_s"] += time.perf_counter() - t
            yield start, stop, classes
            control.report(stop / n, f"segmented slice {stop} of {n}")


def predict_classes(hu: np.ndarray, spacing_rc: tuple[float, float], model: LoadedModel, device: str = "cpu",
                    batch_size: int = 8, control: RunControl | None = None) -> np.ndarray:
    """The classes of every slice at once (uint8, the shape of `hu`)."""
    out = np.zeros(hu.shape, dtype=np.uint8)
    for start, stop, classes in class_batches(hu, spacing_rc, model, device, batch_size, control):
        out[start:stop] = classes
    return out


def _onnx_backend(network):
    from .grid_numpy import classes_on_native, hu_to_grid

    return hu_to_grid, network, classes_on_native


def _torch_backend(model: LoadedModel, device: str):
    import torch

    from .preprocess import classes_on_native, hu_to_grid

    network = model.inference_network()
    if next(network.parameters()).device.type != device:
        network.to(device)

    def run(x):
        # inference mode and autocast are per thread: entered in the network's own thread
        with torch.inference_mode():
            if device != "cuda":
                return network(x)
            with torch.autocast("cuda", dtype=torch.float16):
                out = network(x)
            torch.cuda.synchronize()
            return out

    def decide(logits, mapping):
        with torch.inference_mode():
            return classes_on_native(logits, mapping).cpu().numpy()

    def to_grid(slices, mapping, window):
        with torch.inference_mode():
            return hu_to_grid(slices, mapping, window, device=device)

    return to_grid, run, decide
