"""The segmentation that runs in a child process, off the GUI thread."""
from __future__ import annotations




from ..running.child_job import ChildSegmentation
from ..errors import AdiposeSegError



# ---------------------------------------------------------------- the job that runs off the GUI thread

class SegmentJob:
    """A segmentation running in a child process. Poll `done` from a GUI timer, then call `finish()`.

    `finish()` applies the result to the scene (on the caller's thread); a cancel, a failure or a
    crash of the child leaves the scene as it was.
    """

    def __init__(self, volume_node, runner: ChildSegmentation, apply):
        self.volume_node = volume_node
        self.runner = runner
        self._apply = apply
        self.outputs: tuple | None = None
        self._finished = False

    @property
    def done(self) -> bool:
        return self.runner.poll()

    @property
    def fraction(self) -> float:
        return self.runner.fraction

    @property
    def message(self) -> str:
        return self.runner.message

    def cancel(self) -> None:
        self.runner.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        return self.runner.wait(timeout)

    def finish(self):
        """Apply the result to the scene. Raises Cancelled (even if the child had finished: the
        user's cancel wins), the run's error, or an error when the volume left the scene meanwhile."""
        if self.outputs is not None:
            return self.outputs
        if self._finished:
            raise AdiposeSegError("this run has already ended")
        self._finished = True
        try:
            result = self.runner.result()
            self.outputs = self._apply(result)
            return self.outputs
        finally:
            self.runner.cleanup()


# ---------------------------------------------------------------- the logic

