"""Peak memory of a run process (the command line, the Slicer module's child process)."""
from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 << 20   # 4 MB (1 MB gave the same peak but mmapped every batch temporary: 0.4-1 s slower per 200 slices)


def return_freed_blocks() -> None:
    """Make glibc give large freed blocks (4 MB and more) back to the system at once.

    The network's activations (tens of MB per batch) are allocated and freed for every batch. glibc
    raises its mmap threshold after the first such free and from then on keeps those blocks in the
    heap, where the resident size stays at its high-water mark; a fixed threshold turns that off.
    Nothing happens on other C libraries or systems.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass
