"""Canonical axial orientation (LPS) and the way back to the input's exact geometry."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

CANONICAL = "LPS"  # array rows go anterior->posterior, columns right->left: radiological view


def orientation_code(image: sitk.Image) -> str:
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def to_canonical(image: sitk.Image) -> sitk.Image:
    """Permute/flip axes so that slices along k are axial (LPS); voxel values are not resampled."""
    if orientation_code(image) == CANONICAL:
        return image
    return sitk.DICOMOrient(image, CANONICAL)


def from_canonical(canonical: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Undo `to_canonical`: the result has exactly the reference's size, spacing, origin, direction."""
    code = orientation_code(reference)
    result = canonical if orientation_code(canonical) == code else sitk.DICOMOrient(canonical, code)
    if result.GetSize() != reference.GetSize():
        raise RuntimeError(f"orientation round trip changed the size {reference.GetSize()} -> {result.GetSize()}")
    if not np.allclose(result.GetOrigin(), reference.GetOrigin(), atol=1e-3 * max(reference.GetSpacing())):
        raise RuntimeError(f"orientation round trip moved the origin {reference.GetOrigin()} -> {result.GetOrigin()}")
    result.CopyInformation(reference)
    return result


def axial_axis(image: sitk.Image) -> tuple[int, bool]:
    """The image's own index axis that its canonical axial slices run along (the one nearest to z),
    and whether it runs from the feet up; read from the geometry, without reorienting the volume."""
    return axial_axis_of(np.array(image.GetDirection()).reshape(3, 3))


def axial_axis_of(direction: np.ndarray) -> tuple[int, bool]:
    """axial_axis from a 3x3 direction matrix (columns: the index axes) in LPS or RAS: both share the
    superior row, so a volume node's IJK-to-RAS directions give the same answer as its image's."""
    axis = int(np.argmax(np.abs(direction[2])))
    return axis, bool(direction[2][axis] > 0)


def axial_count(image: sitk.Image) -> int:
    """Number of axial slices (the canonical k axis)."""
    return image.GetSize()[axial_axis(image)[0]]


def input_axial_index(image: sitk.Image, k: int) -> int:
    """Canonical slice k as an index along the image's own axial axis (and back: the map is its own inverse)."""
    axis, upward = axial_axis(image)
    return k if upward else image.GetSize()[axis] - 1 - k
