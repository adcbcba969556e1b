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


FULL_CT = "example_ct.nii.gz"
ORGANS = "example_seg_fast_force_split.nii.gz"          # TotalSegmentator `total` on example_ct
PSOAS_AND_BACK = {86: "autochthon_left", 87: "autochthon_right", 88: "iliopsoas_left", 89: "iliopsoas_right"}
SM_START = 82   # example_ct_sm is example_ct[z=82:112]; its held-out slab 0..9 is z 82..91


def ignore_wall_band(labels, hu, organs, drawn_muscles, px: int):
    """Mark IGNORE where the labelling model may have missed wall muscle: background pixels of muscle
    density within `px` pixels (in-plane) of the model's own muscle (not the muscles drawn in from
    TotalSegmentator), outside every TotalSegmentator organ. The first models left the innermost wall
    layer out; labels that call it background would teach the next model to leave it out too."""
    from scipy import ndimage

    from AdiposeSegLib.measuring.postprocess import IN_PLANE
    from AdiposeSegLib.tissues import BACKGROUND, MUSCLE, HUWindows

    from .losses import IGNORE

    wall = (labels == MUSCLE) & ~drawn_muscles
    near = ndimage.binary_dilation(wall, structure=IN_PLANE, iterations=px)
    band = near & (labels == BACKGROUND) & HUWindows().is_muscle(hu) & ~organs
    out = labels.copy()
    out[band] = IGNORE
    return out


def prepare_full(source: Path, out: Path, slices: str = "40:80", model_dir: str | None = None,
                 wall_ignore_px: int = 0) -> list[str]:
    """Semi-automatic labels for the lumbar slices of the full example CT (L5..L2), which have no
    tissue masks: the model's own gated output, with TotalSegmentator's iliopsoas and erector spinae
    (autochthon) masks drawn in as Muscle (muscle-range voxels) and IMAT (fat-range voxels). These are
    the muscles the first model missed; the slices end 2 below example_ct_sm's held-out slab."""
    import numpy as np
    from AdiposeSegLib.model.model_card import load_model
    from AdiposeSegLib.running.pipeline import segment_image
    from AdiposeSegLib.tissues import IMAT, MUSCLE, HUWindows, SegmentOptions

    a, b = parse_range(slices)
    if not 0 <= a < b <= SM_START - 2:
        raise ValueError(f"slices {slices}: must lie in 0..{SM_START - 2} (2 slices clear of the held-out slab at {SM_START})")
    ct = sitk.Cast(sitk.ReadImage(str(source / FULL_CT))[:, :, a:b], sitk.sitkInt16)
    # (the labels of model 0.2.0 were made without the visceral-fat claim, which came later)
    result = segment_image(ct, load_model(model_dir), SegmentOptions(device="cpu", find_levels=False, claim_visceral_fat=False))
    labels = sitk.GetArrayFromImage(result.labels)
    hu = sitk.GetArrayViewFromImage(ct)
    organs = sitk.GetArrayFromImage(sitk.ReadImage(str(source / ORGANS)))[a:b]
    muscles = np.isin(organs, list(PSOAS_AND_BACK))
    windows = HUWindows()
    labels[muscles & windows.is_muscle(hu)] = MUSCLE
    labels[muscles & windows.is_fat(hu)] = IMAT
    if wall_ignore_px:
        labels = ignore_wall_band(labels, hu, (organs > 0) & ~muscles, muscles, wall_ignore_px)
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(ct)
    name = f"ts_example_full_z{a:02d}-{b:02d}"
    (out / "train").mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(ct, str(out / "train" / f"{name}.nii.gz"))
    sitk.WriteImage(image, str(out / "train" / f"{name}_labels.nii.gz"))
    model = result.model_info
    return [f"train: {name} (slices {a}..{b - 1} of {FULL_CT}; labels: {model['name']} {model['version']} gated output "
            f"+ TotalSegmentator's {', '.join(PSOAS_AND_BACK.values())} as Muscle/IMAT"
            + (f"; muscle-density background within {wall_ignore_px} px of the wall ignored)" if wall_ignore_px else ")")]
