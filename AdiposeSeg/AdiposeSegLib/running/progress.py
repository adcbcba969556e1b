"""Progress reporting with cancellation, shared by the CLI, the Slicer logic and training."""
from __future__ import annotations

import threading
from typing import Callable

from ..errors import Cancelled

ProgressCallback = Callable[[float, str], None]


class RunControl:
    """Carries a progress callback and a cancel flag through a run.

    `report(fraction, message)` calls the callback and raises `Cancelled` once `cancel()` was
    called (from any thread), so long loops stop at the next step.
    """

    def __init__(self, callback: ProgressCallback | None = None, cancel_event: threading.Event | None = None):
        self.callback = callback
        self.cancel_event = cancel_event or threading.Event()

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled("cancelled by the user")

    def report(self, fraction: float, message: str = "") -> None:
        self.check()
        if self.callback is not None:
            self.callback(min(max(float(fraction), 0.0), 1.0), message)

    def sub(self, start: float, stop: float) -> "RunControl":
        """A control whose 0..1 maps onto start..stop of this one (same cancel flag)."""
        parent = self

        def forward(fraction: float, message: str) -> None:
            if parent.callback is not None:
                parent.callback(start + (stop - start) * fraction, message)

        return RunControl(forward, self.cancel_event)
