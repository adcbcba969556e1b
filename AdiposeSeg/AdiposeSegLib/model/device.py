"""Choosing the compute device: auto picks cuda > mps > cpu."""
from __future__ import annotations

import os
import sys

from ..errors import AdiposeSegError

CHOICES = ("auto", "cuda", "mps", "cpu")


def available_devices() -> list[str]:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found.insert(0, "cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.insert(0, "mps")
    return found


def _surely_no_gpu() -> bool:
    """True on a Linux machine without any NVIDIA, ROCm or WSL GPU device: then the answer is the
    CPU without importing torch (2 s) just to ask it."""
    if not sys.platform.startswith("linux"):
        return False
    return not any(os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/kfd", "/dev/dxg"))


def resolve_device(choice: str = "auto") -> str:
    choice = (choice or "auto").lower()
    if choice not in CHOICES:
        raise AdiposeSegError(f"unknown device {choice!r}; choose one of {', '.join(CHOICES)}")
    if choice == "cpu" or (choice == "auto" and _surely_no_gpu()):
        return "cpu"
    found = available_devices()
    if choice == "auto":
        for preferred in ("cuda", "mps", "cpu"):
            if preferred in found:
                return preferred
    if choice not in found:
        raise AdiposeSegError(f"device {choice} is not available on this computer (available: {', '.join(found)}); use --device auto")
    return choice
