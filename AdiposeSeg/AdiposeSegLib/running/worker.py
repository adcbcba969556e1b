"""The child-process side of a background run: `python -m AdiposeSegLib.running.worker WORK_FOLDER`.

Slicer's main thread holds the GIL, so a Python thread in Slicer's process barely runs; the module
therefore runs the engine here, in a separate interpreter (Slicer's PythonSlicer). The request and
the results travel as files in one work folder:

  request.json   written by the parent: input image, model folder, options, L3 slice
  progress       "fraction<TAB>message", replaced at every step (read by the parent's timer)
  labels.nrrd    the label map in the input's exact geometry         (on success)
  result.json    statistics, slice range, device, timings            (on success, written last)
  error.json     {"kind", "message"}: a failure the user can act on  (on failure; exit code 2)
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

REQUEST = "request.json"
PROGRESS = "progress"
LABELS = "labels.nrrd"
RESULT = "result.json"
ERROR = "error.json"
INPUT = "input.nrrd"


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class _Progress:
    """Writes the progress file; until the engine reports, a heartbeat says which start-up step is running
    (importing PyTorch and loading the model take seconds, and the user sees every second pass)."""

    def __init__(self, folder: Path):
        self.target = folder / PROGRESS
        self.tmp = folder / (PROGRESS + ".tmp")
        self.lock = threading.Lock()
        self.phase, self.phase_start = "starting", time.monotonic()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _write(self, fraction: float, message: str) -> None:
        with self.lock:
            try:
                self.tmp.write_text(f"{fraction:.4f}\t{message}")
                os.replace(self.tmp, self.target)
            except OSError:  # Windows: the parent may be reading the file this instant; progress is best effort
                pass

    def _beat(self) -> None:
        while not self.stop.wait(0.5):
            self._write(0.0, f"{self.phase} ({time.monotonic() - self.phase_start:.1f} s)")

    def starting(self, phase: str) -> None:
        self.phase, self.phase_start = phase, time.monotonic()
        self._write(0.0, phase)

    def __call__(self, fraction: float, message: str) -> None:
        if not self.stop.is_set():
            self.stop.set()
            self.thread.join()
        self._write(fraction, message)


def run(folder: Path) -> int:
    report = _Progress(folder)
    report.starting("starting")
    import SimpleITK as sitk

    from ..errors import AdiposeSegError
    from ..model.model_card import load_model
    from .pipeline import segment_image
    from .progress import RunControl
    from ..tissues import options_from_dict

    request = json.loads((folder / REQUEST).read_text())
    try:
        report.starting("loading the model")   # with torch, the slow part of start-up: shown as its own step
        model = load_model(request.get("model_dir") or None)
        report.starting("reading the CT")
        image = sitk.ReadImage(str(folder / request.get("input", INPUT)))
        result = segment_image(image, model, options_from_dict(request["options"]), RunControl(report),
                               l3_slice=request.get("l3_slice"))
        sitk.WriteImage(result.labels, str(folder / LABELS), useCompression=False)
        _write_json(folder / RESULT, {"statistics": result.statistics.to_dict(), "slice_range": list(result.slice_range),
                                      "device": result.device, "timings": result.timings, "quality": result.quality, "levels": result.levels,
                                      "model": {"name": model.card.name, "version": model.card.version}})
        return 0
    except AdiposeSegError as exc:
        _write_json(folder / ERROR, {"kind": exc.__class__.__name__, "message": str(exc)})
    except MemoryError:
        _write_json(folder / ERROR, {"kind": "MemoryError", "message": "the computer ran out of memory; "
                                     "segment a slice range instead of the whole volume, or close other programs"})
    except Exception as exc:
        traceback.print_exc()
        message = f"{exc.__class__.__name__}: {exc}"
        if "out of memory" in str(exc).lower():
            message = ("the GPU ran out of memory; choose device 'cpu', or close other programs that use the GPU "
                       f"({exc.__class__.__name__})")
        _write_json(folder / ERROR, {"kind": exc.__class__.__name__, "message": message})
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m AdiposeSegLib.running.worker WORK_FOLDER", file=sys.stderr)
        return 2
    code = run(Path(argv[0]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the results are on disk; tearing down torch's interpreter state only costs the user a second


if __name__ == "__main__":
    sys.exit(main())
