"""Speed of the data path: read, inference, post-processing, write, end to end, network alone, memory.

    .venv/bin/python benchmarks/benchmark.py [--slices 100] [--device auto] [--model DIR] [--json out.json]

A 512x512xN phantom CT (0.8 mm pixels, like a clinical abdominal scan) is written to NRRD and
segmented through the same functions the CLI uses. Also reads the real JPEG 2000 DICOM series in
../shared/data/real-ct. Numbers are wall-clock seconds of one run after a warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "AdiposeSeg"), str(ROOT)]

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from AdiposeSegLib.model.device import resolve_device  # noqa: E402
from AdiposeSegLib.reading.image_io import read_ct  # noqa: E402
from AdiposeSegLib.model.model_card import load_model  # noqa: E402
from AdiposeSegLib.running.pipeline import segment_image  # noqa: E402
from AdiposeSegLib.reporting.results import write_results  # noqa: E402
from AdiposeSegLib.tissues import SegmentOptions  # noqa: E402
from training.phantom import phantom_volume  # noqa: E402

REAL_DICOM = ROOT.parent / "shared" / "data" / "real-ct" / "totalsegmentator-example" / "example_ct_dicom"


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def network_throughput(model, device: str, size: int, batch: int, repeats: int = 3) -> float:
    """Slices per second through the network alone on (batch, 1, size, size) inputs, in the backend
    the pipeline uses (ONNX Runtime on the CPU when the model has a current export, else torch)."""
    onnx = model.onnx_network() if device == "cpu" else None
    if onnx is not None:
        x = np.random.default_rng(0).standard_normal((batch, 1, size, size)).astype(np.float32)
        onnx(x)
        t = time.perf_counter()
        for _ in range(repeats):
            onnx(x)
        return repeats * batch / (time.perf_counter() - t)
    net = model.inference_network().to(device)  # what the pipeline runs: batch norm folded
    x = torch.randn(batch, 1, size, size, device=device)
    ctx = torch.autocast("cuda", dtype=torch.float16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), ctx:
        net(x)
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(repeats):
            net(x)
        if device == "cuda":
            torch.cuda.synchronize()
    return repeats * batch / (time.perf_counter() - t)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--slices", type=int, default=100)
    p.add_argument("--device", default="auto")
    p.add_argument("--model")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json")
    args = p.parse_args()
    device = resolve_device(args.device)
    model = load_model(args.model)
    options = SegmentOptions(device=device, batch_size=args.batch_size)
    info = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "model": f"{model.card.name} {model.card.version}", "slices": args.slices}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)

    ct, _ = phantom_volume(seed=11, size=512, slices=args.slices, spacing=0.8, slice_thickness=2.5)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.nrrd"
        sitk.WriteImage(ct, str(path))
        segment_image(read_ct(path)[:, :, :4], model, options)  # warm-up
        image, t_read = timed(read_ct, path)
        result, t_seg = timed(segment_image, image, model, options)
        _, t_write = timed(write_results, result, Path(tmp) / "out", "bench", model, labelmap_format="nrrd")
        _, t_dicom = timed(read_ct, REAL_DICOM) if REAL_DICOM.is_dir() else (None, float("nan"))
    timings = {
        "read_nrrd_s": t_read, "prepare_s": result.timings["prepare_s"], "inference_s": result.timings["inference_s"],
        "postprocess_s": result.timings["postprocess_s"], "levels_s": result.timings.get("levels_s", 0.0),
        "statistics_s": result.timings.get("statistics_s", 0.0), "write_s": t_write, "end_to_end_s": t_read + t_seg + t_write,
        "read_real_dicom_20x512x512_s": t_dicom,
        "pipeline_slices_per_s": args.slices / t_seg,
        "network_slices_per_s_model_grid_192": network_throughput(model, device, 192, args.batch_size),
        "network_slices_per_s_512": network_throughput(model, device, 512, args.batch_size),
        "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "backend": "onnxruntime" if model.onnx_path is not None and device == "cpu" else "torch",
    }
    if device == "cuda":
        timings["peak_cuda_MiB"] = torch.cuda.max_memory_allocated() / 2**20
    report = {"setup": info, "timings": timings}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
