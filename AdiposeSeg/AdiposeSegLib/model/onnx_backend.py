"""CPU inference with ONNX Runtime: the model's batch-norm-folded network exported to `model.onnx`.

Measured here (2 cores): 53 slices/s at the 192 grid against torch's 38, and 0.2 s to import
against torch's 2 s, with scores equal to 2e-5. Used only when the export belongs to the weights
beside it (the card records the sha256 of `model.pt` it was made from) and onnxruntime is
installed; otherwise inference runs in torch as before.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from ..file_hash import file_sha256
from ..running.slice_workers import usable_cores

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
PRECISIONS = ("int8", "fp32")


def precision() -> str:
    """ADIPOSESEG_PRECISION: int8 (the default, where the model has a current int8 export) or fp32."""
    wanted = os.environ.get("ADIPOSESEG_PRECISION", "int8").strip().lower() or "int8"
    if wanted not in PRECISIONS:
        raise ValueError(f"ADIPOSESEG_PRECISION={wanted!r}: give int8 or fp32")
    return wanted


def usable_export(model_dir: Path, card_dict: dict, weights: Path) -> Path | None:
    """The directory's ONNX export when it was made from these weights and onnxruntime is present."""
    entry = card_dict.get("onnx") or {}
    path = model_dir / entry.get("file", ONNX_FILE)
    if not path.is_file() or not entry.get("weights_sha256") or os.environ.get("ADIPOSESEG_BACKEND") == "torch":
        return None
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    weights_sha = file_sha256(weights)
    if entry["weights_sha256"] != weights_sha:
        return None   # the weights were retrained after the export: the export is stale
    int8 = card_dict.get("onnx_int8") or {}
    int8_path = model_dir / int8.get("file", INT8_FILE)
    if (precision() == "int8" and int8_path.is_file() and int8.get("weights_sha256") == weights_sha
            and int8.get("fp32_sha256") == file_sha256(path) and int8.get("sha256") == file_sha256(int8_path)):
        return int8_path
    return path


class OnnxNetwork:
    """A callable (n, 1, H, W) float32 -> (n, C, H, W) float32 on the CPU."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or usable_cores()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle threads sleep instead of spinning after each batch: spinning took the cores from the
        # class decision and gate threads between batches (measured: pipeline 43 -> 48 slices/s, network unchanged)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # the arena re-uses the activations' memory from batch to batch; without it (and with glibc's mmap
        # threshold fixed at 4 MB, as before 2026-12-07) every batch mapped and zeroed fresh pages: 807 slices
        # took 23.4-24.1 s with 7.8-8.5 s of kernel time, against 18.0-18.7 s and 1.3 s (peak RSS +150 MiB)
        options.enable_cpu_mem_arena = True
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x):
        return self.session.run(None, {self.input: x})[0]


def export_onnx(model, out_dir: Path | None = None) -> Path:
    """Write `model.onnx` (dynamic batch and size) beside the weights and record it in the card."""
    import torch

    from .model_card import CARD_FILE, WEIGHTS_FILE

    out_dir = Path(out_dir or model.directory)
    network = model.inference_network().cpu().eval()
    example = torch.zeros(2, 1, model.card.grid_pixels, model.card.grid_pixels)
    path = out_dir / ONNX_FILE
    with warnings.catch_warnings():   # the TorchScript exporter is deprecated in favour of one needing onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(network, example, str(path), input_names=["hu"], output_names=["scores"], opset_version=17,
                          dynamic_axes={"hu": {0: "n", 2: "h", 3: "w"}, "scores": {0: "n", 2: "h", 3: "w"}}, dynamo=False)
    card_path = out_dir / CARD_FILE
    card = json.loads(card_path.read_text())
    card["onnx"] = {"file": ONNX_FILE, "weights_sha256": file_sha256(out_dir / WEIGHTS_FILE), "opset": 17,
                    "note": "batch norm folded into the convolutions; used for CPU inference when onnxruntime is installed"}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return path
