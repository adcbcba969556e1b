"""NumPy views of SimpleITK images that keep their image alive.

`sitk.GetArrayViewFromImage` shares the image's buffer but holds no reference to the image: once the
image is collected, the view reads freed memory. Arrays that outlive the function that made the
image (a result's label and HU arrays) are made here instead.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk


class _Holder:
    """Exposes the view's buffer to NumPy and, as the new array's base, keeps the image referenced."""

    def __init__(self, image: sitk.Image, view: np.ndarray):
        self.image = image
        self.__array_interface__ = view.__array_interface__


def image_view(image: sitk.Image) -> np.ndarray:
    """A read-only (k, j, i) view of the image's pixels that keeps the image alive."""
    view = np.asarray(_Holder(image, sitk.GetArrayViewFromImage(image)))
    view.flags.writeable = False
    return view
