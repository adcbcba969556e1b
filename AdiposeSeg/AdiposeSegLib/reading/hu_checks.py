"""Is this really a CT in Hounsfield units, of a human body? Checks that refuse rather than guess.

A body-composition number from values that are not HU (an offset, a lost or doubled rescale, an
MR), from a wrong pixel spacing, or from NaN voxels fed to the network is silently wrong; each
check here turns such an input into a refusal that names the cause.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import ImageShapeError, NotCTError

AIR_BAND = (-1150.0, -800.0)      # air (and lung) in any calibrated CT
BODY_HU = -500.0                  # above this: body (and table)
HUMAN_SIZE_MM = (80.0, 1000.0)    # widest in-plane body extent: a newborn's abdomen .. the widest adult
PADDING_BELOW = -1150.0           # a flat minimum this low is padding outside the field of view


def _sample(values: np.ndarray, max_slices: int = 16) -> np.ndarray:
    step = max(1, values.shape[0] // max_slices)
    return np.asarray(values[::step], dtype=np.float32)


def replace_outside_fov_nan(image: sitk.Image, source: str, info: dict) -> sitk.Image:
    """NaN/Inf voxels connected to the image border are padding: they become air (-1024 HU), noted.
    Any other non-finite voxel is refused: its value cannot be known."""
    if image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        return image
    array = sitk.GetArrayFromImage(image)
    bad = ~np.isfinite(array)
    count = int(bad.sum())
    if count == 0:
        return image
    if count == bad.size:
        raise ImageShapeError(f"{source}: every voxel is NaN or infinite; the image holds no values")
    labels, n = ndimage.label(bad)
    border = np.zeros_like(bad)
    border[[0, -1], :, :] = border[:, [0, -1], :] = border[:, :, [0, -1]] = True
    outside = np.unique(labels[border & bad])
    inside = bad & ~np.isin(labels, outside)
    if inside.any():
        k, j, i = (int(v) for v in np.argwhere(inside)[0])
        raise NotCTError(
            f"{source}: {int(inside.sum())} voxel(s) are NaN or infinite inside the image (first at voxel {i},{j},{k}), "
            "not padding at its border; their values cannot be known, so no area is computed. Re-export the CT")
    array[bad] = -1024.0
    fixed = sitk.GetImageFromArray(array)
    fixed.CopyInformation(image)
    info["notes"].append(f"{count} NaN/infinite voxels outside the field of view (connected to the image border) "
                         "were set to air, -1024 HU")
    info["quality"]["nan_padding_voxels"] = count
    return fixed


def check_hounsfield(values: np.ndarray, source: str) -> None:
    """Air must sit near -1000 HU: refuses MR and rescaled images, and HU offsets (a doubled or lost
    rescale intercept), naming the offset."""
    sample = _sample(values).ravel()
    lo, hi = float(sample.min()), float(sample.max())
    if lo < PADDING_BELOW and np.mean(sample == lo) >= 0.001:
        sample = sample[sample != lo]  # padding outside the reconstruction circle
    if sample.size == 0:
        return
    below = float(np.mean(sample < AIR_BAND[0]))
    if below > 0.01:
        offset = float(np.median(sample[sample < AIR_BAND[0]])) + 1000.0
        raise NotCTError(
            f"{source}: {below:.0%} of the voxels lie below {AIR_BAND[0]:.0f} HU, lower than air (about -1000 HU); "
            f"the values look offset by about {offset:+.0f} HU (was the rescale intercept applied twice?). "
            "These are not calibrated Hounsfield units; re-export the CT")
    air = float(np.mean((sample >= AIR_BAND[0]) & (sample <= AIR_BAND[1])))
    if air >= 0.002:
        return
    p1 = float(np.percentile(sample, 1))
    if p1 > -200 or hi - lo < 200:
        raise NotCTError(
            f"{source}: values range {lo:g}..{hi:g} with no air near -1000 HU (the lowest 1% lie above {p1:.0f}), "
            "so these are not CT Hounsfield units. An MR or a rescaled image is not supported; if this is a CT, its "
            f"values look offset by about {p1 + 1000:+.0f} HU (stored without the rescale intercept?)")
    raise NotCTError(
        f"{source}: no voxel lies in the air range {AIR_BAND[0]:.0f}..{AIR_BAND[1]:.0f} HU (the lowest 1% are at "
        f"{p1:.0f}); a CT of the abdomen shows air around the body or in the bowel. These values are not trusted as HU")


def largest_body(plane: np.ndarray) -> np.ndarray | None:
    """The largest connected region above BODY_HU in one slice (the patient, not the table), or None."""
    labels, n = ndimage.label(plane > BODY_HU)
    if n == 0:
        return None
    return labels == int(np.argmax(np.bincount(labels.ravel())[1:])) + 1


def check_body_size(values: np.ndarray, spacing_xyz: tuple[float, float, float], source: str) -> None:
    """The body's widest in-plane extent must be human: catches pixel spacing in cm or a wrong unit."""
    widths = []
    step = max(1, values.shape[0] // 8)
    for k in range(0, values.shape[0], step):
        body = largest_body(np.asarray(values[k]))
        if body is None:
            continue
        rows, cols = np.nonzero(body)
        widths.append(max((rows.max() - rows.min() + 1) * spacing_xyz[1], (cols.max() - cols.min() + 1) * spacing_xyz[0]))
    if not widths:
        raise NotCTError(f"{source}: no body found (no voxel above {BODY_HU:.0f} HU)")
    width = float(np.median(widths))
    if width < HUMAN_SIZE_MM[0]:
        raise NotCTError(
            f"{source}: the body is only {width:.0f} mm across (pixel spacing {spacing_xyz[0]:g} x {spacing_xyz[1]:g} mm); "
            "no human abdomen is that small. Is the pixel spacing stored in cm instead of mm? Fix the spacing and retry")
    if width > HUMAN_SIZE_MM[1]:
        raise NotCTError(
            f"{source}: the body would be {width:.0f} mm across (pixel spacing {spacing_xyz[0]:g} x {spacing_xyz[1]:g} mm); "
            "no human body is that wide. The pixel spacing looks wrong (a wrong unit?)")
