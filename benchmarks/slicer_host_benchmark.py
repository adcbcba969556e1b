"""How Segment runs inside Slicer: the module's background run measured in a host that holds the GIL.

    .venv/bin/python benchmarks/slicer_host_benchmark.py [--slices 16] [--mode child|thread] [--interval-ms 200]

Slicer's main thread never releases the GIL; `../shared/tools/slicer-gil-host/host.c` reproduces
that (an embedded interpreter that idles in C holding the GIL and calls a poll slot every
interval). This script compiles the host, and runs in it, on a 512x512xN phantom with the bundled
model and a real MRML scene (slicer-core):

  direct   SceneLogic.processVolume(waitForCompletion=True) on the main thread (the command line's speed)
  child    the module's Segment: processVolume(waitForCompletion=False), a child process polled by the timer
  thread   the earlier design, for comparison: segment_image in a Python thread of the host process

It prints the seconds of each (segment_to_scene_s: from Segment to the result in the scene), the longest gap between progress updates seen by the poll, and
the time Cancel takes (child mode: cancel at about 30%, until the child has ended).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST_C = ROOT.parent / "shared" / "tools" / "slicer-gil-host" / "host.c"

JOB = r'''
import os, sys, time, json
sys.path[:0] = {paths!r}
os.environ.pop("PYTHONHOME", None)  # set for this host only; the child is a normal interpreter (Slicer: PythonSlicer)
import numpy as np
import SimpleITK as sitk
import slicer
from AdiposeSegLib.scene import SceneLogic, volume_node_from_image
from AdiposeSegLib.tissues import SegmentOptions
from training.phantom import phantom_volume

scene = slicer.vtkMRMLScene()
slicer.mrmlScene = scene
logic = SceneLogic(scene, options=SegmentOptions(device="cpu"), python={python!r})  # Slicer passes PythonSlicer
ct, _ = phantom_volume(seed=11, size=512, slices={slices}, spacing=0.8, slice_thickness=2.5)
node = volume_node_from_image(scene, ct, "CT")
logic.processVolume(volume_node_from_image(scene, ct[:, :, :2], "warm-up"))  # imports and model load, as after a first run
state = {{"polls": 0, "updates": [], "last": None, "job": None, "t0": None}}
MODE = {mode!r}

def direct():
    t = time.perf_counter()
    logic.processVolume(node, replaceEdited=True)
    return time.perf_counter() - t

def start():
    state["t0"] = time.perf_counter()
    if MODE == "child":
        state["job"] = logic.processVolume(node, waitForCompletion=False, replaceEdited=True)
    else:
        import threading
        from AdiposeSegLib.running.pipeline import segment_image
        from AdiposeSegLib.running.progress import RunControl
        from AdiposeSegLib.scene import image_from_volume_node
        image = image_from_volume_node(node)
        model = logic.model()
        class Job:
            fraction = 0.0
            result = None
        job = Job()
        def report(f, m):
            job.fraction = f
        def work():
            job.result = segment_image(image, model, SegmentOptions(device="cpu"), RunControl(report))
        job.thread = threading.Thread(target=work, daemon=True)
        job.thread.start()
        state["job"] = job

def poll(yield_s):
    state["polls"] += 1
    job = state["job"]
    done = job.done if MODE == "child" else not job.thread.is_alive()
    if (job.fraction, getattr(job, "message", "")) != state["last"]:
        state["last"] = (job.fraction, getattr(job, "message", ""))
        state["updates"].append(time.perf_counter() - state["t0"])
        state.setdefault("log", []).append((round(state["updates"][-1], 2), getattr(job, "message", "")))
    if done:
        ended = time.perf_counter() - state["t0"]
        t = time.perf_counter()
        if MODE == "child":
            job.finish()  # read the result and apply it to the scene, on the main thread
        state["to_scene_s"] = ended + time.perf_counter() - t
        t = [0.0] + state["updates"]
        gaps = [b - a for a, b in zip(t, t[1:])]
        print("RESULT " + json.dumps({{"updates": len(state["updates"]), "max_update_gap_s": max(gaps) if gaps else None,
                                      "progress": state.get("log"),
                                      "segment_to_scene_s": state["to_scene_s"]}}), flush=True)
        if MODE == "child":
            c = logic.processVolume(node, waitForCompletion=False, replaceEdited=True)
            while c.fraction < 0.3 and not c.done:
                time.sleep(0.01)
            t = time.perf_counter()
            c.cancel()
            ended = c.runner.process.poll() is not None
            print("CANCEL " + json.dumps({{"cancel_s": time.perf_counter() - t, "ended": ended, "at_fraction": c.fraction}}), flush=True)
            c.runner.cleanup()
    return done
'''


def build_host(folder: Path) -> Path:
    exe = folder / "host"
    include = sysconfig.get_paths()["include"]
    config = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}-config"
    ldflags = subprocess.run([str(config), "--ldflags", "--embed"], capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["gcc", str(HOST_C), "-o", str(exe), f"-I{include}", *ldflags,
                    f"-Wl,-rpath,{sysconfig.get_config_var('LIBDIR')}"], check=True)
    return exe


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--slices", type=int, default=16)
    p.add_argument("--mode", choices=("child", "thread"), default="child")
    p.add_argument("--interval-ms", type=int, default=200)
    p.add_argument("--json")
    args = p.parse_args()
    site = sysconfig.get_paths()["purelib"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        exe = build_host(folder)
        (folder / "job.py").write_text(JOB.format(paths=[str(ROOT / "AdiposeSeg"), str(ROOT), site],
                                                   slices=args.slices, mode=args.mode, python=sys.executable))
        env = dict(os.environ, PYTHONHOME=sys.base_prefix)
        out = subprocess.run([str(exe), str(args.interval_ms), "0", "job.py"], cwd=folder, capture_output=True,
                             text=True, env=env, timeout=900)
    lines = out.stdout.splitlines()
    report = {"mode": args.mode, "slices": args.slices, "interval_ms": args.interval_ms, "cores": os.cpu_count()}
    for line in lines:
        if line.startswith("direct"):
            report["direct_s"] = float(line.split(":")[1])
        elif line.startswith("background"):
            report["through_timer_s"] = float(line.split(":")[1].split()[0])
        elif line.startswith("polls"):
            report["polls"] = int(line.split(":")[1])
        elif line.startswith(("RESULT ", "CANCEL ")):
            report.update(json.loads(line.split(" ", 1)[1]))
    if "through_timer_s" not in report:
        print(out.stdout[-3000:], out.stderr[-3000:], file=sys.stderr)
        return 1
    report["slowdown"] = report["segment_to_scene_s"] / report["direct_s"]
    del report["through_timer_s"]  # the host's own clock also counts the cancel test; segment_to_scene_s is the run
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
