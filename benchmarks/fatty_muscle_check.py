"""How does the model hold up on fatty muscle? A stress test on real anatomy.

The one real patient here has dense muscle; the issue's worst cases are older patients whose muscle is
less dense and marbled with fat (myosteatosis). This takes the held-out real slab (example_ct_sm slices
0..9, never trained on), lowers the HU of TotalSegmentator's muscle by DROP and turns streaks of it
(DROP/5 % of its voxels, smoothed noise over a threshold: streaky, unlike the training augmentation's
single pixels) into fat, then runs the pipeline with its defaults and scores it against
TotalSegmentator's masks held to the HU definitions on the changed CT (muscle at -29..150 HU, the
muscle mask's fat-range voxels IMAT):

    .venv/bin/python benchmarks/fatty_muscle_check.py [--model DIR] [--drops 0 10 20 35]

Mean muscle density on the slab is about 21 HU; a drop of 20 gives about 1 HU (severe myosteatosis),
35 goes beyond what is usually seen. Muscle called SAT or nothing is the failure this looks for.
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

from AdiposeSegLib.measuring.evaluate import dice, gate_labels  # noqa: E402
from AdiposeSegLib.model.model_card import load_model  # noqa: E402
from AdiposeSegLib.reading.orientation import to_canonical  # noqa: E402
from AdiposeSegLib.running.pipeline import segment_image  # noqa: E402
from AdiposeSegLib.tissues import IMAT, MUSCLE, SAT, VAT, HUWindows, SegmentOptions  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "real-ct" / "totalsegmentator-example"
HELD_OUT = (0, 10)
REF_MUSCLE, REF_SAT, REF_TORSO_FAT = 3, 1, 2   # tissue_types_labelmap_on_ct_sm.nii.gz


def fatty(hu: np.ndarray, muscle: np.ndarray, drop: float, seed: int = 0) -> np.ndarray:
    """`hu` with the muscle `drop` HU less dense and streaks of it (drop/5 % of its voxels) turned to fat."""
    out = hu.astype(np.int16).copy()
    if drop <= 0:
        return out
    out[muscle] -= np.int16(round(drop))
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=hu.shape), sigma=(0, 1.2, 1.2))
    share = drop / 500.0
    cut = np.quantile(field[muscle], 1 - share)
    streaks = muscle & (field > cut)
    out[streaks] = rng.integers(-120, -50, int(streaks.sum()))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model directory (default: the bundled model)")
    parser.add_argument("--drops", type=float, nargs="+", default=[0, 10, 20, 35])
    args = parser.parse_args()
    model = load_model(args.model) if args.model else load_model()
    image = sitk.ReadImage(str(DATA / "example_ct_sm.nii.gz"))
    ref_image = sitk.ReadImage(str(DATA / "tissue_types_labelmap_on_ct_sm.nii.gz"))
    native_hu, native_ref = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(ref_image)
    lo, hi = HELD_OUT
    ref_c = sitk.GetArrayFromImage(to_canonical(ref_image))[lo:hi]
    # TotalSegmentator's ids as the project's: SAT, torso fat (compared with VAT + IMAT), muscle
    ref_ids = np.select([ref_c == REF_SAT, ref_c == REF_TORSO_FAT, ref_c == REF_MUSCLE], [SAT, VAT, MUSCLE], 0).astype(np.uint8)
    print(f"model {model.card.name} {model.card.version}; held-out slab, pipeline defaults")
    print("drop HU  muscle HU  muscle Dice  volume   SAT Dice  VAT+IMAT Dice  its muscle mask called SAT / VAT / nothing")
    for drop in args.drops:
        changed = sitk.GetImageFromArray(fatty(native_hu, native_ref == REF_MUSCLE, drop))
        changed.CopyInformation(image)
        result = segment_image(changed, model, SegmentOptions(device="cpu", slices=HELD_OUT, find_levels=False))
        ours, hu = result.canonical_labels[lo:hi], result.canonical_hu[lo:hi].astype(float)
        ref = gate_labels(ref_ids, hu, HUWindows())
        ref_muscle, our_muscle = ref == MUSCLE, ours == MUSCLE
        mask = ref_ids == MUSCLE
        ref_visceral, our_visceral = (ref == VAT) | (ref == IMAT), (ours == VAT) | (ours == IMAT)
        print(f"{drop:7.0f}  {hu[ref_muscle].mean():9.1f}  {dice(our_muscle, ref_muscle):11.4f}  "
              f"{100 * (our_muscle.sum() / ref_muscle.sum() - 1):+6.1f}%  {dice(ours == SAT, ref == SAT):8.4f}  "
              f"{dice(our_visceral, ref_visceral):13.4f}  "
              f"{(mask & (ours == SAT)).sum():5d} / {(mask & (ours == VAT)).sum():4d} / {(mask & (ours == 0)).sum():4d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
