"""Per-slice areas and mean HU, totals, and the L3 row: computed with the true pixel area."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..tissues import LABELS, NAMES

SLICE_COLUMNS = (
    ["slice", "z_mm", "level"]
    + [f"{NAMES[k]}_area_cm2" for k in LABELS]
    + [f"{NAMES[k]}_mean_HU" for k in LABELS]
    + ["VAT_SAT_ratio"]
)


@dataclass
class Statistics:
    rows: list[dict]                 # one per slice, keys SLICE_COLUMNS
    totals: dict                     # volume_cm3 and mean_HU per tissue
    pixel_area_mm2: float
    voxel_volume_mm3: float
    l3_row: dict | None = None
    notes: list[str] = field(default_factory=list)
    volumes_l1_l5: dict | None = None   # tissue volumes from the top of L1 to the bottom of L5, when in view

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Statistics":
        return cls(**d)


def _ratio(vat: float, sat: float) -> float:
    return float(vat / sat) if sat > 0 else float("nan")


def label_sums(labels: np.ndarray, hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per slice, the voxel count and the HU sum of each label id: ((n, L) int64, (n, L) float64).
    Background voxels are counted but not summed."""
    n, size = labels.shape[0], max(LABELS) + 1
    counts = np.zeros((n, size), dtype=np.int64)
    sums = np.zeros((n, size), dtype=np.float64)
    for i in range(n):   # a slice at a time: no whole-volume casts
        lab, values = labels[i].ravel(), hu[i].ravel()
        counts[i] = np.bincount(lab, minlength=size)
        tissue = lab != 0
        sums[i] = np.bincount(lab[tissue], weights=values[tissue], minlength=size)
    return counts, sums


def compute_statistics(
    labels: np.ndarray,
    hu: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    z_positions_mm: np.ndarray,
    slice_indices: np.ndarray | None = None,
    l3_slice: int | None = None,
    levels: list[str] | None = None,
    sums: tuple[np.ndarray, np.ndarray] | None = None,
) -> Statistics:
    """labels, hu: (slices, rows, cols) in canonical axial order; spacing in mm (x, y, z);
    levels: the vertebral level of each of those slices ("" where none); sums: `label_sums` of
    labels and hu when the caller already has them."""
    pixel_area = float(spacing_xyz[0] * spacing_xyz[1])
    voxel_volume = pixel_area * float(spacing_xyz[2])
    n = labels.shape[0]
    indices = np.arange(n) if slice_indices is None else np.asarray(slice_indices)
    all_counts, all_sums = sums if sums is not None else label_sums(labels, hu)
    rows = []
    counts_total = {k: 0 for k in LABELS}
    hu_total = {k: 0.0 for k in LABELS}
    for i in range(n):
        counts, sums_i = all_counts[i], all_sums[i]
        row = {"slice": int(indices[i]), "z_mm": round(float(z_positions_mm[i]), 3), "level": levels[i] if levels else ""}
        for k in LABELS:
            row[f"{NAMES[k]}_area_cm2"] = counts[k] * pixel_area / 100.0
            row[f"{NAMES[k]}_mean_HU"] = float(sums_i[k] / counts[k]) if counts[k] else float("nan")
            counts_total[k] += int(counts[k])
            hu_total[k] += float(sums_i[k])
        row["VAT_SAT_ratio"] = _ratio(row["VAT_area_cm2"], row["SAT_area_cm2"])
        rows.append(row)
    totals = {}
    for k in LABELS:
        totals[f"{NAMES[k]}_volume_cm3"] = counts_total[k] * voxel_volume / 1000.0
        totals[f"{NAMES[k]}_mean_HU"] = hu_total[k] / counts_total[k] if counts_total[k] else float("nan")
    totals["VAT_SAT_ratio"] = _ratio(totals["VAT_volume_cm3"], totals["SAT_volume_cm3"])
    stats = Statistics(rows, totals, pixel_area, voxel_volume)
    if l3_slice is not None:
        matches = [r for r in rows if r["slice"] == l3_slice]
        if matches:
            stats.l3_row = dict(matches[0])
        else:
            stats.notes.append(f"L3 slice {l3_slice} is outside the processed slices")
    return stats
