"""Dataset folders from the TotalSegmentator example CT (real patient CT with its tissue model's masks).

`example_ct_sm` (30 slices, T11..L2) is split along z into a held-out slab, a gap, and a training slab,
so that the agreement we report is on slices the model never trained on. Its labels map directly:
1 subcutaneous fat -> SAT, 2 torso fat -> VAT, 3 skeletal muscle -> Muscle. Files go to a folder
outside the repository; the CT itself is never copied into the project.
"""
from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

CT = "example_ct_sm.nii.gz"
LABELS = "tissue_types_labelmap_on_ct_sm.nii.gz"


def parse_range(text: str) -> tuple[int, int]:
    a, b = text.split(":")
    return int(a), int(b)


def prepare(source: Path, out: Path, holdout: str = "0:10", gap: int = 2) -> list[str]:
    ct = sitk.ReadImage(str(source / CT))
    labels = sitk.ReadImage(str(source / LABELS))
    n = ct.GetSize()[2]
    h0, h1 = parse_range(holdout)
    if not (0 <= h0 < h1 <= n):
        raise ValueError(f"hold-out {holdout} outside 0..{n}")
    train_ranges = [(0, max(0, h0 - gap)), (min(n, h1 + gap), n)]
    train_ranges = [(a, b) for a, b in train_ranges if b - a > 0]
    lines = []
    for folder, ranges in (("holdout", [(h0, h1)]), ("train", train_ranges)):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for a, b in ranges:
            name = f"ts_example_sm_z{a:02d}-{b:02d}"
            sitk.WriteImage(ct[:, :, a:b], str(out / folder / f"{name}.nii.gz"))
            sitk.WriteImage(sitk.Cast(labels[:, :, a:b], sitk.sitkUInt8), str(out / folder / f"{name}_labels.nii.gz"))
            lines.append(f"{folder}: {name} (slices {a}..{b - 1} of {CT})")
    return lines
