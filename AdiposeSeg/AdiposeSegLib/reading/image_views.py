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

    def __init__(self, image: sitk.Image, view: np.ndarray, writable: bool = False):
        self.image = image
        interface = dict(view.__array_interface__)
        if writable:   # the image owns its buffer, which SimpleITK only exposes read-only
            interface["data"] = (interface["data"][0], False)
        self.__array_interface__ = interface


def image_view(image: sitk.Image) -> np.ndarray:
    """A read-only (k, j, i) view of the image's pixels that keeps the image alive."""
    view = np.asarray(_Holder(image, sitk.GetArrayViewFromImage(image)))
    view.flags.writeable = False
    return view


def writable_view(image: sitk.Image) -> np.ndarray:
    """A writable (k, j, i) view of a new image's pixels that keeps the image alive: labels are written
    straight into the label image, without a second copy of the volume (issue 27 C)."""
    return np.asarray(_Holder(image, sitk.GetArrayViewFromImage(image), writable=True))


def zero_image_like(reference: sitk.Image, pixel_id=sitk.sitkUInt8) -> sitk.Image:
    """An image of zeros on the reference's grid (SimpleITK zero-fills a new image's buffer)."""
    image = sitk.Image(reference.GetSize(), pixel_id)
    image.CopyInformation(reference)
    return image
