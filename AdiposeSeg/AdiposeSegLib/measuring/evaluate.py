"""Agreement between a predicted and a reference label map: Dice and area/volume difference per tissue."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import InputReadError
from ..tissues import IMAT, LABELS, MUSCLE, NAMES, SAT, VAT, HUWindows


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2|A∩B| / (|A|+|B|); 1.0 when both are empty (nothing to find, nothing found)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(a, b).sum() / denom)


def gate_labels(labels: np.ndarray, hu: np.ndarray, windows: HUWindows) -> np.ndarray:
    """A reference label map held to the project's definitions: SAT and VAT only on fat-range voxels,
    Muscle only on muscle-range voxels; fat-range voxels inside a muscle mask are IMAT (fat within
    the muscle), anything else outside the windows is background."""
    fat, muscle = windows.is_fat(hu), windows.is_muscle(hu)
    out = np.zeros_like(labels)
    for label in (SAT, VAT, IMAT):
        out[(labels == label) & fat] = label
    out[(labels == MUSCLE) & muscle] = MUSCLE
    out[(labels == MUSCLE) & fat] = IMAT
    out[(labels == IMAT) & muscle] = MUSCLE   # a drawn IMAT voxel of muscle density is muscle
    return out


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=tol, atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol * 100)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def on_reference_grid(pred: sitk.Image, ref: sitk.Image, allow_resample: bool = False) -> sitk.Image:
    """Bring `pred` onto `ref`'s voxel grid (nearest neighbour in physical space) when allowed.

    Without `allow_resample` different grids are an error: a silent resampling changes the numbers.
    Refuses images that do not overlap in space at all.
    """
    if same_grid(pred, ref):
        return pred
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(ref.GetDirection())
    reordered = sitk.DICOMOrient(pred, code)
    if same_grid(reordered, ref):
        return reordered  # the same voxels stored in another order: exact, no resampling
    if not allow_resample:
        raise InputReadError(
            f"the prediction's grid (size {pred.GetSize()}, spacing {tuple(round(v, 4) for v in pred.GetSpacing())}) differs "
            f"from the reference's (size {ref.GetSize()}, spacing {tuple(round(v, 4) for v in ref.GetSpacing())}); "
            "pass --resample to compare them in physical space (nearest neighbour onto the reference)")
    resampled = sitk.Resample(pred, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(resampled).any() and sitk.GetArrayViewFromImage(pred).any():
        raise InputReadError(
            "the prediction and the reference do not overlap in physical space (different scans, or a header origin was lost)"
        )
    return resampled


def compare(pred: sitk.Image, ref: sitk.Image, labels=LABELS, allow_resample: bool = False) -> dict:
    """Per tissue: Dice, reference and predicted volume (cm³), and relative difference (%).
    Dice is NaN (undefined) when the tissue is in neither image: agreeing on nothing is no score."""
    pred = on_reference_grid(pred, ref, allow_resample)
    p, r = sitk.GetArrayViewFromImage(pred), sitk.GetArrayViewFromImage(ref)
    voxel_cm3 = float(np.prod(ref.GetSpacing())) / 1000.0
    result = {}
    for label in labels:
        pm, rm = p == label, r == label
        rv, pv = rm.sum() * voxel_cm3, pm.sum() * voxel_cm3
        result[NAMES[label]] = {
            "dice": dice(pm, rm) if (pm.any() or rm.any()) else float("nan"),
            "ref_cm3": float(rv),
            "pred_cm3": float(pv),
            "volume_diff_pct": float(100.0 * (pv - rv) / rv) if rv > 0 else float("nan"),
        }
    return result


def compare_arrays(pred: np.ndarray, ref: np.ndarray, labels=LABELS) -> dict:
    """Dice per tissue on two label arrays of the same shape."""
    if pred.shape != ref.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {ref.shape}")
    return {NAMES[k]: dice(pred == k, ref == k) for k in labels}
