"""Would a rule fix what the model leaves out? Checks two candidate post-processing rules on the
held-out real slab (TotalSegmentator's example_ct_sm, slices 0..9, never trained on) against
TotalSegmentator's tissue masks:

* every unclaimed fat-range voxel inside the body to VAT (all, or grown from VAT by N pixels away
  from gas), or to its nearest fat compartment, or each patch to the compartment it touches most
  (kept away from air and gas, optionally only in small patches), and the rule the pipeline applies
  by default (`claim_visceral_fat`), starting from the network's labels without it; each scored
  against TotalSegmentator as it is, and ignoring the fat-range voxels it leaves unlabelled (it does
  not follow the definition that every fat-range voxel in the body is SAT, VAT or IMAT), and
* muscle grown by N pixels into unclaimed muscle-range voxels (anywhere, or only outside
  TotalSegmentator's organ masks, so that it cannot grow into liver, spleen or bowel);

each also against TotalSegmentator's muscle held to -29..150 HU (as the model's is), and VAT+IMAT also
against torso fat plus the fat-range voxels of TotalSegmentator's muscle (IMAT by the definitions).
The model's muscle includes the rim the network called SAT (`muscle_rim`, labelling rules 4), which
the pipeline always applies; the grown variants start from it.

    .venv/bin/python benchmarks/compartment_rules_check.py [--model DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "AdiposeSeg"))

from AdiposeSegLib.model.model_card import load_model  # noqa: E402
from AdiposeSegLib.reading.orientation import to_canonical  # noqa: E402
from AdiposeSegLib.running.pipeline import segment_image  # noqa: E402
from AdiposeSegLib.measuring.postprocess import CLAIM_GAS_GAP_PX, CLAIM_GAS_HU, CLAIM_MAX_PATCH_MM2, IN_PLANE  # noqa: E402
from AdiposeSegLib.tissues import IMAT, MUSCLE, VAT, HUWindows, SegmentOptions  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "real-ct" / "totalsegmentator-example"
HELD_OUT = (0, 10)


def dice(a, b) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def grow(seed, allowed, steps):
    out = seed.copy()
    for _ in range(steps):
        out |= ndimage.binary_dilation(out, IN_PLANE) & allowed
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="Compartment and muscle rules on the held-out real slab")
    parser.add_argument("--model", help="model directory (default: the bundled model)")
    args = parser.parse_args()
    model = load_model(args.model) if args.model else load_model()
    print(f"model {model.card.name} {model.card.version}")
    result = segment_image(sitk.ReadImage(str(DATA / "example_ct_sm.nii.gz")), model,   # the network's labels alone
                           SegmentOptions(device="cpu", slices=HELD_OUT, find_levels=False, claim_visceral_fat=False))
    lo, hi = HELD_OUT
    ours, hu = result.canonical_labels[lo:hi], result.canonical_hu[lo:hi].astype(float)
    ref = sitk.GetArrayFromImage(to_canonical(sitk.ReadImage(str(DATA / "tissue_types_labelmap_on_ct_sm.nii.gz"))))[lo:hi]
    ref_fat, ref_muscle = ref == 2, ref == 3     # torso fat (compared with VAT + IMAT), skeletal muscle
    body = np.stack([ndimage.binary_fill_holes(ndimage.binary_opening(h > -500, iterations=2)) for h in hu])
    fat_range, muscle_range = HUWindows().is_fat(hu), HUWindows().is_muscle(hu)
    fat = fat_range & body & (ours == 0)
    print(f"unclaimed fat-range voxels in the body: {fat.sum()}; TotalSegmentator: torso fat {(fat & ref_fat).sum()}, "
          f"SAT {(fat & (ref == 1)).sum()}, nothing {(fat & (ref == 0)).sum()}")
    vat_imat = (ours == VAT) | (ours == IMAT)
    # TotalSegmentator does not label every fat-range voxel in the body, as the definition does: the
    # second score ignores the fat-range voxels it leaves unlabelled ("ambiguous pixels ignored")
    care = ~(fat_range & body & (ref == 0))

    def scored(mask, reference):
        return f"{dice(mask, reference):.4f}, ignoring its unlabelled fat {dice(mask & care, reference & care):.4f}"

    print(f"VAT+IMAT vs torso fat: model {scored(vat_imat, ref_fat)} ({100 * (vat_imat.sum() / ref_fat.sum() - 1):+.1f}%); "
          f"SAT {scored(ours == 1, ref == 1)}")
    gas = (hu < -400) & body
    for gas_px in (0, 2):
        allowed = fat & ~(ndimage.binary_dilation(gas, IN_PLANE, iterations=gas_px) if gas_px else np.zeros_like(gas))
        for steps in (1, 3, 10, 1000):
            grown = grow(ours == VAT, allowed, steps) | (ours == IMAT)
            print(f"  VAT grown {steps:4d} px, {gas_px} px from gas: {scored(grown, ref_fat)} "
                  f"({100 * (grown.sum() / ref_fat.sum() - 1):+.1f}%)")
    in_plane = ndimage.generate_binary_structure(2, 1)
    pixel_mm2 = float(np.prod(result.canonical_image.GetSpacing()[:2]))
    for air_hu, gap in ((-400, 1), (-250, 2)):
        for max_mm2 in (30, 200, None):
            claimed = ours.copy()
            for k in range(ours.shape[0]):
                near_air = ndimage.binary_dilation(hu[k] < air_hu, in_plane, iterations=gap)
                take = fat_range[k] & (ours[k] == 0) & ~near_air
                if max_mm2 is not None:
                    patches, _ = ndimage.label(take, in_plane)
                    take &= (np.bincount(patches.ravel()) * pixel_mm2)[patches] <= max_mm2
                fat_labels = np.where(np.isin(ours[k], [1, 2, 4]), ours[k], 0)
                _, (ii, jj) = ndimage.distance_transform_edt(fat_labels == 0, return_indices=True)
                claimed[k][take] = fat_labels[ii, jj][take]
            vat_imat_c = np.isin(claimed, [2, 4])
            print(f"  nearest compartment, {gap} px from < {air_hu} HU, patches {'any size' if max_mm2 is None else f'<= {max_mm2} mm2'}: "
                  f"VAT+IMAT {scored(vat_imat_c, ref_fat)} ({100 * (vat_imat_c.sum() / ref_fat.sum() - 1):+.1f}%), "
                  f"SAT {scored(claimed == 1, ref == 1)}")
    for air_hu, gap in ((-400, 1), (-250, 2)):
        near_air = ndimage.binary_dilation(hu < air_hu, IN_PLANE, iterations=gap)
        for max_mm2 in (30, 200, None):
            touched = touch_rule(ours, fat_range & (ours == 0) & body & ~near_air, pixel_mm2, max_mm2)
            vat_imat_t = np.isin(touched, [2, 4])
            print(f"  patch joins the compartment it touches most, {gap} px from < {air_hu} HU, patches "
                  f"{'any size' if max_mm2 is None else f'<= {max_mm2} mm2'}: VAT+IMAT {scored(vat_imat_t, ref_fat)} "
                  f"({100 * (vat_imat_t.sum() / ref_fat.sum() - 1):+.1f}%), SAT {scored(touched == 1, ref == 1)}")
    built = segment_image(sitk.ReadImage(str(DATA / "example_ct_sm.nii.gz")), model,   # the default pipeline
                          SegmentOptions(device="cpu", slices=HELD_OUT, find_levels=False)).canonical_labels[lo:hi]
    vat_imat_b = np.isin(built, [2, 4])
    print(f"  the pipeline's rule (claim_visceral_fat: patches touching VAT and not SAT, {CLAIM_GAS_GAP_PX} px from "
          f"< {CLAIM_GAS_HU:.0f} HU, <= {CLAIM_MAX_PATCH_MM2:.0f} mm2): VAT+IMAT {scored(vat_imat_b, ref_fat)} "
          f"({100 * (vat_imat_b.sum() / ref_fat.sum() - 1):+.1f}%), SAT {scored(built == 1, ref == 1)}")
    # like for like: the fat-range voxels of TotalSegmentator's muscle mask are IMAT by the definitions
    # (the pipeline labels every fat-range voxel within the muscle IMAT; TotalSegmentator calls it muscle)
    ref_fat_held = ref_fat | (ref_muscle & fat_range)
    for name, mask in (("model", vat_imat), ("the pipeline's rule", vat_imat_b)):
        print(f"  {name} against torso fat + its muscle's fat-range voxels (IMAT): VAT+IMAT {scored(mask, ref_fat_held)} "
              f"({100 * (mask.sum() / ref_fat_held.sum() - 1):+.1f}%)")
    unlabelled_muscle_range = muscle_range & (ours == 0)
    muscle = ours == MUSCLE
    print(f"Muscle vs TotalSegmentator: model {dice(muscle, ref_muscle):.4f} ({100 * (muscle.sum() / ref_muscle.sum() - 1):+.1f}%); "
          f"its muscle we leave unlabelled {(ref_muscle & (ours == 0)).sum()}, call fat {(ref_muscle & np.isin(ours, [1, 2, 4])).sum()}")
    held = ref_muscle & muscle_range
    organs = _organs_on(result.canonical_hu[lo:hi])
    print(f"  (against its muscle held to -29..150 HU: model {dice(muscle, held):.4f} ({100 * (muscle.sum() / held.sum() - 1):+.1f}%))")
    for where, allowed in (("anywhere", unlabelled_muscle_range), ("outside organs", unlabelled_muscle_range & ~organs)):
        for steps in (1, 2, 3):
            grown = grow(muscle, allowed, steps)
            print(f"  muscle grown {steps} px {where}: {dice(grown, ref_muscle):.4f} ({100 * (grown.sum() / ref_muscle.sum() - 1):+.1f}%); "
                  f"held {dice(grown, held):.4f} ({100 * (grown.sum() / held.sum() - 1):+.1f}%)")
    return 0


def touch_rule(labels, take, pixel_mm2, max_mm2):
    """Each in-plane patch of `take` voxels joins the fat compartment (SAT, VAT, IMAT) whose voxels
    it touches most; patches touching none, or larger than max_mm2, stay unlabelled."""
    out = labels.copy()
    patches, count = ndimage.label(take, IN_PLANE)
    touches = [np.bincount(patches[ndimage.binary_dilation(labels == c, IN_PLANE)], minlength=count + 1) for c in (1, 2, 4)]
    best = np.argmax(touches, axis=0)
    fate = np.array([1, 2, 4], np.uint8)[best]
    fate[np.max(touches, axis=0) == 0] = 0
    if max_mm2 is not None:
        fate[np.bincount(patches.ravel(), minlength=count + 1) * pixel_mm2 > max_mm2] = 0
    fate[0] = 0
    out[take] = fate[patches[take]]
    return out


def _organs_on(hu_slab: np.ndarray) -> np.ndarray:
    """TotalSegmentator's `total` organ masks (any label) on the slab's slices: they lie on the full
    example CT, whose canonical slices are matched to the slab's by their HU."""
    full_hu = sitk.GetArrayFromImage(to_canonical(sitk.ReadImage(str(DATA / "example_ct.nii.gz"))))
    organs = sitk.GetArrayFromImage(to_canonical(sitk.ReadImage(str(DATA / "example_seg_fast_force_split.nii.gz"))))
    start = next(k for k in range(full_hu.shape[0] - hu_slab.shape[0] + 1) if np.array_equal(full_hu[k], hu_slab[0]))
    return organs[start:start + hu_slab.shape[0]] > 0


if __name__ == "__main__":
    raise SystemExit(main())
