"""Speed of the data path, stage by stage: read, resample to the model grid, network, class decision,
HU gate + islands, levels, statistics, write; the network alone at the same grid; memory; and, with
--cli, the command line as a user runs it (process start included).

    .venv/bin/python benchmarks/benchmark.py [--slices 100] [--source phantom|real] [--cli] [--device auto] [--json out.json]

--source phantom: a 512x512xN phantom CT (0.8 mm pixels, like a clinical abdominal scan);
--source real: the 20 real 512x512 slices of ../shared/data/real-ct's DICOM series (0.977 mm),
repeated to N slices. Either is written to NRRD and segmented through the functions the CLI uses,
after a warm-up. --cli also runs `adiposeseg segment CT.nrrd -o OUT -q` as a child process on
that NRRD and on its first slice alone, reporting wall time and the child's peak RSS.
Stages run one after the other, batch by batch; the class decision and the gate + islands + sums
(postprocess_s) split each batch's slices over the cores. segment_s is the wall clock of resampling
+ network + class decision + postprocess; pipeline_over_network_alone compares the pipeline's
slices/s (prepare + segment + levels + statistics) with the network alone on the same grid.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "AdiposeSeg"), str(ROOT)]

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from AdiposeSegLib.model.device import resolve_device  # noqa: E402
from AdiposeSegLib.model.grid import GridMapping  # noqa: E402
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
    return out, time.perf_counter() - t


def real_volume(slices: int) -> sitk.Image:
    """The real DICOM series' 20 slices repeated to `slices` (their own geometry, stacked further on)."""
    series = read_ct(REAL_DICOM)
    hu = sitk.GetArrayFromImage(series)
    stacked = np.concatenate([hu] * (-(-slices // hu.shape[0])))[:slices]
    image = sitk.GetImageFromArray(stacked)
    image.SetSpacing(series.GetSpacing())
    image.SetOrigin(series.GetOrigin())
    image.SetDirection(series.GetDirection())
    return image


def run_cli(ct: Path, out: Path, device: str, model: str | None = None) -> dict:
    """`adiposeseg segment` as a user runs it: wall time and the command's peak RSS. The peak comes
    from GNU time (/usr/bin/time -f %M): Linux reports a child's peak as at least its parent's
    resident size at the fork, so this process cannot measure it itself."""
    # this checkout's code, started as the `adiposeseg` script starts it
    command = [sys.executable, "-c", "import sys; from AdiposeSegLib.running.cli import main; sys.exit(main())",
               "segment", str(ct), "-o", str(out), "--device", device, "-q"] + (["--model", model] if model else [])
    paths = [str(ROOT / "AdiposeSeg")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))   # (an empty entry would put the working directory on the path)
    gnu_time = Path("/usr/bin/time")
    report = Path(str(out) + ".time")
    if gnu_time.is_file():
        command = [str(gnu_time), "-f", "%M", "-o", str(report)] + command
    t = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"adiposeseg failed: {proc.stderr.decode()}")
    peak = round(int(report.read_text().split()[-1]) / 1024, 1) if report.is_file() else None
    return {"wall_s": round(wall, 3), "peak_rss_MiB": peak}


def network_throughput(model, device: str, size: int, batch: int, repeats: int = 3) -> float:
    """Slices per second through the network alone on (batch, 1, *size) inputs, in the backend
    the pipeline uses (ONNX Runtime on the CPU when the model has a current export, else torch)."""
    onnx = model.onnx_network() if device == "cpu" else None
    if onnx is not None:
        x = np.random.default_rng(0).standard_normal((batch, 1, *size)).astype(np.float32)
        onnx(x)
        t = time.perf_counter()
        for _ in range(repeats):
            onnx(x)
        return repeats * batch / (time.perf_counter() - t)
    import torch

    net = model.inference_network().to(device)  # what the pipeline runs: batch norm folded
    x = torch.randn(batch, 1, *size, device=device)
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
    p.add_argument("--source", choices=("phantom", "real"), default="phantom")
    p.add_argument("--cli", action="store_true", help="also time the command line in a child process")
    p.add_argument("--device", default="auto")
    p.add_argument("--model")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json")
    args = p.parse_args()
    device = resolve_device(args.device)
    model = load_model(args.model)
    options = SegmentOptions(device=device, batch_size=args.batch_size)
    backend = "onnxruntime" if model.onnx_path is not None and device == "cpu" else "torch"
    if backend == "onnxruntime":
        backend += " int8" if model.onnx_path.name.endswith("int8.onnx") else " fp32"
    info = {"device": device, "backend": backend, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "model": f"{model.card.name} {model.card.version}", "slices": args.slices, "source": args.source}
    if device == "cuda":
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)

    if args.source == "real":
        ct = real_volume(args.slices)
    else:
        ct, _ = phantom_volume(seed=11, size=512, slices=args.slices, spacing=0.8, slice_thickness=2.5)
    spacing = ct.GetSpacing()
    grid = GridMapping.for_slice((ct.GetSize()[1], ct.GetSize()[0]), (spacing[1], spacing[0]),
                                 model.card.pixel_spacing_mm, model.card.grid_pixels).padded
    cli = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.nrrd"
        sitk.WriteImage(ct, str(path))
        input_mib = path.stat().st_size / 2**20
        segment_image(read_ct(path)[:, :, :4], model, options)  # warm-up
        image, t_read = timed(read_ct, path)
        result, t_seg = timed(segment_image, image, model, options)
        _, t_write = timed(write_results, result, Path(tmp) / "out", "bench", model, labelmap_format="nrrd")
        _, t_dicom = timed(read_ct, REAL_DICOM) if REAL_DICOM.is_dir() else (None, float("nan"))
        seg_timings = dict(result.timings)
        del image, result
        if args.cli:
            one = Path(tmp) / "one.nrrd"
            sitk.WriteImage(ct[:, :, :1], str(one))
            cli["whole_volume"] = run_cli(path, Path(tmp) / "cli", device, args.model)
            cli["whole_volume"]["slices_per_s"] = round(args.slices / cli["whole_volume"]["wall_s"], 1)
            cli["single_slice"] = run_cli(one, Path(tmp) / "cli1", device, args.model)
            cli["input_MiB"] = round(input_mib, 1)
    network_alone = network_throughput(model, device, grid, args.batch_size)
    timings = {
        "read_nrrd_s": t_read, **seg_timings, "write_s": t_write,
        "end_to_end_s": t_read + t_seg + t_write,
        "read_real_dicom_20x512x512_s": t_dicom,
        "pipeline_slices_per_s": args.slices / t_seg,
        f"network_alone_slices_per_s_grid_{grid[0]}x{grid[1]}": network_alone,
        "pipeline_over_network_alone": args.slices / t_seg / network_alone,
        "peak_rss_MiB_this_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device == "cuda":
        import torch

        timings["peak_cuda_MiB"] = torch.cuda.max_memory_allocated() / 2**20
    report = {"setup": info, "timings": {k: round(v, 3) for k, v in timings.items()}, "cli": cli}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
