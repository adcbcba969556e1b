"""int8 against fp32: the same references, the same pipeline, both networks. Decides whether the
int8 export may be the CPU default (issue 27 A), by a rule fixed before it was run: on every
reference, each tissue's mean Dice moves by at most 0.002 and its total volume by at most 0.5%.

    .venv/bin/python benchmarks/precision_check.py [--model DIR] [--phantoms 6]

References: (1) the held-out real slab (example_ct_sm slices 0..9, never trained on) against
TotalSegmentator's tissue masks, as they are and held to the HU definitions (VAT+IMAT scored
against its torso fat); (2) phantoms with exact labels (seeds 900+, not the training seeds);
and, without a reference, int8 against fp32 label agreement on the real volumes (the 3 mm example
CT, the 20-slice 512x512 DICOM series, the GE 3-slice series).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REAL = ROOT.parent / "shared" / "data" / "real-ct"
TS = REAL / "totalsegmentator-example"
DICE_BOUND, VOLUME_BOUND_PCT = 0.002, 0.5


def load(precision: str, model_dir: str | None):
    from AdiposeSegLib.model.model_card import load_model

    os.environ["ADIPOSESEG_PRECISION"] = precision
    model = load_model(model_dir)
    assert model.onnx_path is not None and (model.onnx_path.name.endswith("int8.onnx") == (precision == "int8")), model.onnx_path
    return model


def labels_of(model, image):
    from AdiposeSegLib.running.pipeline import segment_image
    from AdiposeSegLib.running.progress import RunControl
    from AdiposeSegLib.tissues import SegmentOptions

    return segment_image(image, model, SegmentOptions(device="cpu"), RunControl()).canonical_labels


def dice(a, b):
    total = a.sum() + b.sum()
    return float("nan") if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


def merged(labels):
    out = labels.copy()
    out[out == 4] = 2   # VAT+IMAT, as TotalSegmentator's torso fat
    return out


def main() -> int:
    from AdiposeSegLib.measuring.evaluate import gate_labels
    from AdiposeSegLib.reading.image_io import read_ct
    from AdiposeSegLib.running.pipeline import canonical_arrays
    from AdiposeSegLib.tissues import HUWindows
    from training.phantom import phantom_volume

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--phantoms", type=int, default=6)
    args = parser.parse_args()
    models = {p: load(p, args.model) for p in ("fp32", "int8")}

    cases = []   # (reference set, image, reference canonical labels, tissues {name: label values}, merge)
    slab = sitk.ReadImage(str(TS / "example_ct_sm.nii.gz"))[:, :, 0:10]
    ref = sitk.ReadImage(str(TS / "tissue_types_labelmap_on_ct_sm.nii.gz"))[:, :, 0:10]
    _c, hu, _s, _z = canonical_arrays(slab)
    _c, ref_c, _s, _z = canonical_arrays(sitk.Cast(ref, sitk.sitkInt16))
    ts = {"SAT": 1, "VAT+IMAT": 2, "Muscle": 3}
    cases.append(("held-out slab vs TotalSegmentator", slab, np.asarray(ref_c), ts, True))
    gated = gate_labels(np.asarray(ref_c).astype(np.uint8), np.asarray(hu), HUWindows())
    cases.append(("held-out slab vs TotalSegmentator held to the HU windows", slab, merged(gated), ts, True))
    for seed in range(900, 900 + args.phantoms):
        ct, lab = phantom_volume(seed=seed, size=384, slices=6)
        _c, lab_c, _s, _z = canonical_arrays(lab)
        cases.append(("phantoms (exact labels)", ct, np.asarray(lab_c), {"SAT": 1, "VAT": 2, "Muscle": 3, "IMAT": 4}, False))

    scores: dict = {}
    for name, image, reference, tissues, merge in cases:
        for precision, model in models.items():
            pred = labels_of(model, image)
            pred = merged(pred) if merge else pred
            for tissue, value in tissues.items():
                entry = scores.setdefault(name, {}).setdefault(tissue, {"fp32": [], "int8": [], "vol": {"fp32": 0, "int8": 0}})
                entry[precision].append(dice(pred == value, reference == value))
                entry["vol"][precision] += int((pred == value).sum())
    ok = True
    print("| reference | tissue | Dice fp32 | Dice int8 | change | volume change | within the rule |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, per in scores.items():
        for tissue, e in per.items():
            d32, d8 = float(np.nanmean(e["fp32"])), float(np.nanmean(e["int8"]))
            dv = 100.0 * (e["vol"]["int8"] - e["vol"]["fp32"]) / max(e["vol"]["fp32"], 1)
            good = abs(d8 - d32) <= DICE_BOUND and abs(dv) <= VOLUME_BOUND_PCT
            ok &= good
            print(f"| {name} | {tissue} | {d32:.4f} | {d8:.4f} | {d8 - d32:+.4f} | {dv:+.2f}% | {'yes' if good else 'NO'} |")
    print("\n| real volume (no reference) | int8 vs fp32 Dice SAT / VAT / Muscle / IMAT | labelled voxels changed |")
    print("| --- | --- | --- |")
    for path in (TS / "example_ct.nii.gz", TS / "example_ct_dicom", REAL / "dcmqi-ct3slice"):
        image = read_ct(str(path))
        a, b = labels_of(models["fp32"], image), labels_of(models["int8"], image)
        d = " / ".join(f"{dice(a == k, b == k):.4f}" for k in (1, 2, 3, 4))
        changed = 100.0 * np.logical_and(a != b, (a > 0) | (b > 0)).sum() / max(int(((a > 0) | (b > 0)).sum()), 1)
        print(f"| {path.name} | {d} | {changed:.2f}% |")
    print(f"\nrule (|mean Dice change| <= {DICE_BOUND}, |volume change| <= {VOLUME_BOUND_PCT}% on every reference): "
          f"{'PASSED: int8 may be the CPU default' if ok else 'FAILED: keep fp32'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
