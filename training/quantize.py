"""An int8 (static QDQ) export of a model's ONNX network for the CPU, calibrated on real CT slices
and phantoms, recorded in the card beside the fp32 export.

Weights per output channel (int8), activations per tensor (uint8), both calibrated by ONNX
Runtime's MinMax over network inputs made exactly as inference makes them (`hu_to_grid` on the
canonical slices). The fp32 export stays: `ADIPOSESEG_PRECISION=fp32` uses it, and torch/GPU runs
never read the int8 file. Whether the int8 network may be the default is decided by
`benchmarks/precision_check.py` against the references, not here.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from AdiposeSegLib.file_hash import file_sha256
from AdiposeSegLib.model.grid import GridMapping
from AdiposeSegLib.model.grid_numpy import hu_to_grid
from AdiposeSegLib.model.onnx_backend import INT8_FILE, ONNX_FILE
from AdiposeSegLib.model.model_card import CARD_FILE, WEIGHTS_FILE, LoadedModel


def _inputs_of_volume(model: LoadedModel, source: str, per_volume: int) -> list[np.ndarray]:
    """source: a CT path, or PATH@START:STOP for canonical slices START..STOP-1 only (e.g. to keep a
    held-out slab out of the calibration)."""
    from AdiposeSegLib.reading.image_io import read_ct
    from AdiposeSegLib.running.pipeline import canonical_arrays

    path, _, span = source.partition("@")
    _canonical, hu, spacing, _z = canonical_arrays(read_ct(path))
    start, stop = (int(v) for v in span.split(":")) if span else (0, hu.shape[0])
    stop = min(stop, hu.shape[0])
    picks = np.unique(np.linspace(start, stop - 1, min(per_volume, stop - start)).round().astype(int))
    mapping = GridMapping.for_slice(hu.shape[1:], (spacing[1], spacing[0]), model.card.pixel_spacing_mm, model.card.grid_pixels)
    x = hu_to_grid(hu[picks], mapping, model.card.hu_window)
    return [x[i:i + 4] for i in range(0, len(x), 4)]


def _same_shape(batches: list[np.ndarray]) -> list[np.ndarray]:
    """One slice per batch, all padded to the largest grid with air (-1 after scaling, as inference
    pads): ONNX Runtime's histogram calibrators stack every batch's activations."""
    slices = [s for b in batches for s in b]
    h, w = max(s.shape[-2] for s in slices), max(s.shape[-1] for s in slices)
    out = []
    for s in slices:
        padded = np.full((1, 1, h, w), -1.0, dtype=np.float32)
        r, c = (h - s.shape[-2]) // 2, (w - s.shape[-1]) // 2
        padded[0, :, r:r + s.shape[-2], c:c + s.shape[-1]] = s
        out.append(padded)
    return out


def calibration_batches(model: LoadedModel, volumes: list[str], per_volume: int = 24, phantoms: int = 48,
                        seed: int = 7) -> tuple[list[np.ndarray], dict]:
    """Network inputs from real volumes (evenly spaced slices of each) and phantom slices; and what they were."""
    from .phantom import phantom_slices

    batches = []
    for path in volumes:
        batches += _inputs_of_volume(model, path, per_volume)
    for hu, _labels, spacing in phantom_slices(seed, phantoms, 192):
        mapping = GridMapping.for_slice(hu.shape, (spacing, spacing), model.card.pixel_spacing_mm, model.card.grid_pixels)
        batches.append(hu_to_grid(hu[None], mapping, model.card.hu_window))
    described = {"real_volumes": [os.path.basename(os.path.normpath(v.partition("@")[0])) + (f" slices {v.partition('@')[2]}" if "@" in v else "")
                                  for v in volumes], "slices_per_volume": per_volume,
                 "phantom_slices": phantoms, "phantom_seed": seed,
                 "slices": int(sum(len(b) for b in batches))}
    return batches, described


def quantize_model(model: LoadedModel, volumes: list[str], per_volume: int = 24, phantoms: int = 48, seed: int = 7,
                   exclude: tuple[str, ...] = (), method: str = "MinMax") -> Path:
    """Write `model.int8.onnx` beside `model.onnx` and record it (hashes, calibration) in the card."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    directory = Path(model.directory)
    source = directory / ONNX_FILE
    if not source.is_file():
        raise FileNotFoundError(f"{source}: export the fp32 network first (training does when onnx is installed)")
    batches, described = calibration_batches(model, volumes, per_volume, phantoms, seed)
    if method != "MinMax":   # (padding changes MinMax's ranges: measured, it moved muscle further from fp32)
        batches = _same_shape(batches)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._items = iter({"hu": b} for b in batches)

        def get_next(self):
            return next(self._items, None)

    out = directory / INT8_FILE
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(exclude), calibrate_method=getattr(CalibrationMethod, method),
                        )
    card_path = directory / CARD_FILE
    card = json.loads(card_path.read_text())
    card["onnx_int8"] = {"file": INT8_FILE, "sha256": file_sha256(out), "weights_sha256": file_sha256(directory / WEIGHTS_FILE),
                         "fp32_sha256": file_sha256(source), "format": "QDQ, weights int8 per channel, activations uint8 per tensor",
                         "calibration": dict(described, method=method), "excluded_nodes": list(exclude),
                         "note": "used for CPU inference unless ADIPOSESEG_PRECISION=fp32; torch and GPU runs use the fp32 weights"}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return out
