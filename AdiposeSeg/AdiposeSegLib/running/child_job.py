"""The parent side of a background run: start the engine in a child process, poll it, cancel it.

Nothing here blocks: `poll()` reads the child's progress file and exit status, so a GUI timer can
call it (Slicer's main thread holds the GIL; the child has its own interpreter and runs at full
speed). Results are read back only by `result()`, on the caller's thread.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk

from . import worker
from ..errors import AdiposeSegError, Cancelled
from .pipeline import SegmentationResult
from ..measuring.statistics import Statistics
from ..tissues import SegmentOptions, options_to_dict

ENGINE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds AdiposeSegLib
BOOTSTRAP = "import sys; sys.path.insert(0, sys.argv[1]); from AdiposeSegLib.running.worker import main; sys.exit(main(sys.argv[2:]))"


class ChildRunError(AdiposeSegError):
    """The child process failed; the message says why (its own error, or how it ended)."""


class ChildSegmentation:
    """One segmentation in a child process. `poll()` is cheap and never blocks."""

    def __init__(self, image: sitk.Image, model_dir: str | None, options: SegmentOptions, l3_slice: int | None = None,
                 python: str | None = None, work_root: str | None = None):
        self.folder = Path(tempfile.mkdtemp(prefix="adiposeseg-run-", dir=work_root))
        self.fraction, self.message = 0.0, "starting"
        self._cancelled = False
        self._returncode: int | None = None
        try:
            sitk.WriteImage(image, str(self.folder / worker.INPUT), useCompression=False)
            (self.folder / worker.REQUEST).write_text(json.dumps({
                "input": worker.INPUT, "model_dir": str(model_dir) if model_dir else None,
                "options": options_to_dict(options), "l3_slice": l3_slice}))
        except (OSError, RuntimeError) as exc:
            self.cleanup()
            raise AdiposeSegError(f"could not write the CT for the segmentation process into {self.folder.parent} ({exc}); "
                                  "free some disk space in the temporary folder") from None
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.folder / "log.txt", "wb")
        # the engine's folder goes on sys.path by the command itself: Slicer's PythonSlicer launcher
        # sets PYTHONPATH from its own settings, and the module's folder is not among them
        self.process = subprocess.Popen([python or sys.executable, "-c", BOOTSTRAP, str(ENGINE_ROOT), str(self.folder)],
                                        stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    # -- polling (GUI thread, never blocks)
    def poll(self) -> bool:
        """Update `fraction` and `message`; True once the child has ended."""
        if self._returncode is None:
            self._returncode = self.process.poll()
        try:
            fraction, message = (self.folder / worker.PROGRESS).read_text().split("\t", 1)
            self.fraction, self.message = float(fraction), message
        except (OSError, ValueError):
            pass
        return self._returncode is not None

    @property
    def done(self) -> bool:
        return self.poll()

    def cancel(self, grace_s: float = 0.5) -> None:
        """Stop the child now: terminate, then kill if it has not ended within `grace_s`."""
        self._cancelled = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._returncode = self.process.returncode

    def wait(self, timeout: float | None = None) -> bool:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return self.poll()

    # -- results (caller's thread)
    def result(self) -> SegmentationResult:
        """The run's result; raises Cancelled, the child's own error, or a message on how it ended."""
        self.wait()
        if self._cancelled:
            raise Cancelled("cancelled by the user")
        error_file = self.folder / worker.ERROR
        if error_file.is_file():
            error = json.loads(error_file.read_text())
            raise ChildRunError(error["message"])
        result_file = self.folder / worker.RESULT
        if self._returncode != 0 or not result_file.is_file():
            raise ChildRunError(f"the segmentation process ended unexpectedly (exit code {self._returncode}); "
                                f"nothing was changed. Its last output: {self.log_tail() or '(none)'}")
        data = json.loads(result_file.read_text())
        labels = sitk.ReadImage(str(self.folder / worker.LABELS))
        return SegmentationResult(labels, None, None, None, Statistics.from_dict(data["statistics"]),
                                  tuple(data["slice_range"]), data["device"], data["timings"], data["model"],
                                  data.get("quality", {}), data.get("levels", {}))

    def log_tail(self, lines: int = 5) -> str:
        try:
            self._log.flush()
            text = (self.folder / "log.txt").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def cleanup(self) -> None:
        """Remove the work folder (after the result was read, or after a cancel)."""
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()
        process = getattr(self, "process", None)
        if process is not None and process.poll() is None:
            self.cancel()
        for _ in range(3):
            try:
                shutil.rmtree(self.folder)
                return
            except FileNotFoundError:
                return
            except OSError:  # Windows: the child may hold a file for a moment after it ended
                time.sleep(0.1)
