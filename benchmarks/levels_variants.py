"""Vertebral levels on variants of the real example CT: the table in docs/levels_variants.md.

    .venv/bin/python benchmarks/levels_variants.py

The variants and crops are those of Testing/test_levels_variants.py (z-crops, fine pixels and thin
slices, HU clipped at 1023, portal-venous-like contrast, an aorta lying on the body, fields of view
cutting the flanks or the back). L3 offset: the middle slice found minus
TotalSegmentator's L3 body middle, in 3 mm slices (a vertebra is about 10 slices tall).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "AdiposeSeg"))
sys.path.insert(0, str(ROOT / "Testing"))

from AdiposeSegLib.measuring.vertebral_levels import detect_levels  # noqa: E402
from AdiposeSegLib.reading.orientation import to_canonical  # noqa: E402
from test_levels_variants import CROPS, L3_MIDDLE, VARIANTS  # noqa: E402


def main() -> int:
    ct = to_canonical(sitk.ReadImage(str(ROOT.parent / "shared" / "data" / "real-ct" / "totalsegmentator-example"
                                         / "example_ct.nii.gz")))
    print("| slices | variant | anchor | confidence | L3 offset | sacrum | last rib | crest top | longest processes | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for first, last in CROPS:
        for name, make in VARIANTS.items():
            image = make(ct[:, :, first:last], first)
            t0 = time.perf_counter()
            report = detect_levels(image)
            seconds = time.perf_counter() - t0
            scale = image.GetSpacing()[2] / 3.0
            l3 = report.levels.get("L3")
            offset = f"{l3['mid_k'] * scale + first - L3_MIDDLE:+.1f}" if l3 else "-"
            a = report.anchors or {}
            crest = (a.get("iliac_crest") or {}).get("top_slice")
            print(f"| {first}..{last - 1} | {name} | {report.anchor} | {report.confidence} | {offset} | "
                  f"{'yes' if (a.get('sacrum') or {}).get('found') else 'no'} | "
                  f"{'yes' if (a.get('last_rib') or {}).get('found') else 'no'} | "
                  f"{'-' if crest is None else f'{crest * scale + first:.0f}'} | "
                  f"{(a.get('transverse_processes') or {}).get('longest_at', '-')} | {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
