"""Body composition per vertebral level: which level each slice is in, the indices at each level's
middle slice, and tissue volumes between the top of L1 and the bottom of L5.

Slice numbers are canonical (the per-slice table's `slice` column); `input_slice` / `input_range`
give the same places as indices along the input file's own axial axis (what a viewer of that file
shows), which differ only when the file runs from head to feet.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .indices import level_measures
from .vertebral_levels import LevelReport
from ..tissues import LABELS, NAMES


def slice_names(levels: dict, count: int) -> list[str]:
    """Per canonical slice, the level found whose body range (disc to disc) holds it, else "" (the
    per-slice table's level column), from the "levels" entries."""
    names = [""] * count
    for name, level in levels.items():
        if level.get("source") == "auto" and "range" in level:
            low, high = level["range"]
            for k in range(max(0, low), min(count, high + 1)):
                names[k] = name
    return names


def manual_l3_entry(k: int, input_slice: int, z_mm: float, earlier: dict | None) -> dict:
    """Where the user put L3 (canonical slice k), keeping the slice found on the bone as auto_slice
    and its vertebral-body centre for the mark; the indices are added by the caller."""
    earlier = earlier or {}
    entry = {"slice": int(k), "input_slice": int(input_slice), "z_mm": round(float(z_mm), 3), "source": "manual",
             "anchor": "manual", "confidence": "manual"}
    if earlier.get("centre_lps_mm"):
        entry["centre_lps_mm"] = earlier["centre_lps_mm"]
    auto_slice = earlier.get("auto_slice", earlier.get("slice") if earlier.get("source") == "auto" else None)
    if auto_slice is not None:
        entry["auto_slice"] = auto_slice
    return entry


TRUSTED = ("high", "medium")   # a level found with low confidence is shown, never measured


def auto_l3_slice(report: LevelReport | None) -> int | None:
    level = (report.levels.get("L3") if report else None)
    return int(round(level["mid_k"])) if level and level["confidence"] in TRUSTED else None


def level_entries(report: LevelReport | None, manual_l3: int | None, labels: np.ndarray, hu, start: int,
                  stop: int, spacing, z_mm: np.ndarray, input_slice: Callable[[int], int]) -> dict:
    """summary.json "levels": for each level found (and a manual L3), where it is, how sure, and
    its indices when its middle slice was processed. `labels` covers slices start..stop-1."""
    out: dict = {}
    pixel_area = spacing[0] * spacing[1]

    def measures(k: int) -> dict:
        if not start <= k < stop:
            return {"not_measured": f"slice {k} is outside the processed slices {start}..{stop - 1}"}
        return level_measures(labels[k - start], np.asarray(hu[k]), pixel_area)

    for name, level in (report.levels.items() if report else ()):
        k = int(round(level["mid_k"]))
        low, high = math.ceil(level["range_k"][0]), math.ceil(level["range_k"][1]) - 1  # the slices labelled with it
        entry = {"slice": k, "range": [low, high], "input_slice": input_slice(k),
                 "input_range": sorted([input_slice(low), input_slice(high)]), "z_mm": round(float(z_mm[k]), 3),
                 "source": "auto", "anchor": level["anchor"], "confidence": level["confidence"],
                 "centre_lps_mm": level["centre_lps_mm"]}
        if "note" in level:
            entry["note"] = level["note"]
        if level["confidence"] in TRUSTED:
            out[name] = {**entry, **measures(k)}
        else:
            out[name] = {**entry, "not_measured": "found with low confidence: check the level (and give L3 by hand)"}
    if manual_l3 is not None:
        k = int(manual_l3)
        out["L3"] = {**manual_l3_entry(k, input_slice(k), z_mm[k], out.get("L3")), **measures(k)}
    return out


def l1_l5_volumes(levels: dict, rows: list[dict], slice_mm: float) -> dict | None:
    """Tissue volumes (cm3) from the top of L1 to the bottom of L5 (the "levels" entries' ranges),
    when both were found whole and every slice between them was processed."""
    l1, l5 = levels.get("L1"), levels.get("L5")
    if not (l1 and l5 and l1.get("confidence") not in (None, "low") and l5.get("confidence") not in (None, "low")):
        return None
    low, high = l5["range"][0], l1["range"][1] + 1
    chosen = [r for r in rows if low <= r["slice"] < high]
    if len(chosen) != high - low:
        return None
    volumes = {f"{NAMES[k]}_cm3": sum(r[f"{NAMES[k]}_area_cm2"] for r in chosen) * slice_mm / 10.0 for k in LABELS}
    return {"slices": [low, high - 1], **volumes}
