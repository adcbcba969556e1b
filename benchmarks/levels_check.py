"""Vertebral levels found by AdiposeSeg against TotalSegmentator's vertebra labels on its example CT.

    .venv/bin/python benchmarks/levels_check.py [--json OUT]

The reference for each vertebra is its body (the label's voxels in front of TotalSegmentator's
spinal cord): centroid slice and slice range. These labels are a model's output, not truth.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "AdiposeSeg"))

from AdiposeSegLib.measuring.vertebral_levels import detect_levels  # noqa: E402
from AdiposeSegLib.reading.orientation import to_canonical  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "real-ct" / "totalsegmentator-example"
TS_LABELS = {"S1": 26, "L5": 27, "L4": 28, "L3": 29, "L2": 30, "L1": 31, "T12": 32, "T11": 33}
SPINAL_CORD = 79


def reference_bodies(seg: np.ndarray) -> dict:
    """Per vertebra: (centroid k, min k, max k) of its body voxels (in front of the spinal cord)."""
    out = {}
    cord_front = {}
    for k in range(seg.shape[0]):
        j = np.nonzero((seg[k] == SPINAL_CORD).any(axis=1))[0]
        if j.size:
            cord_front[k] = j.min()
    for name, label in TS_LABELS.items():
        k, j, _ = np.nonzero(seg == label)
        if k.size == 0:
            continue
        front = np.array([jj < cord_front.get(kk, 10**9) for kk, jj in zip(k, j)])
        if front.sum() < 20:
            continue
        kb = k[front]
        out[name] = (float(kb.mean()), int(kb.min()), int(kb.max()), bool(k.max() < seg.shape[0] - 1 and k.min() > 0))
    return out


def check(ct_path: Path, seg_array: np.ndarray) -> dict:
    canonical = to_canonical(sitk.ReadImage(str(ct_path)))
    report = detect_levels(canonical)
    ref = reference_bodies(seg_array)
    rows = {}
    for name, (centroid, lo, hi, whole) in ref.items():
        found = report.levels.get(name)
        row = {"reference_mid": round(centroid, 1), "reference_range": [lo, hi], "reference_whole": whole}
        if found:
            row.update({"found_mid": round(found["mid_k"], 1), "found_range": [round(v, 1) for v in found["range_k"]],
                        "off_slices": round(found["mid_k"] - centroid, 1), "confidence": found["confidence"]})
        rows[name] = row
    return {"anchor": report.anchor, "confidence": report.confidence, "notes": report.notes,
            "extra": sorted(set(report.levels) - set(ref)), "levels": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json")
    args = parser.parse_args()
    seg_full = sitk.GetArrayFromImage(to_canonical(sitk.ReadImage(str(DATA / "example_seg_fast_force_split.nii.gz"))))
    results = {"example_ct (3 mm, T11..femoral heads)": check(DATA / "example_ct.nii.gz", seg_full),
               # example_ct_sm is example_ct[z=82:112] (its header origin is stale; its own grid is used)
               "example_ct_sm (slices 82..111: T11..L2)": check(DATA / "example_ct_sm.nii.gz", seg_full[82:112])}
    for case, result in results.items():
        print(f"{case}: anchor {result['anchor']}, confidence {result['confidence']}")
        for name, row in result["levels"].items():
            found = (f"found mid {row['found_mid']} range {row['found_range']}, off {row['off_slices']:+.1f} slices"
                     if "found_mid" in row else "not found")
            print(f"  {name:4s} reference mid {row['reference_mid']:6.1f} range {row['reference_range']}: {found}")
        for note in result["notes"]:
            print(f"  note: {note}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
