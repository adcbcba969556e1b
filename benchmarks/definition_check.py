"""The default model against references drawn by the definitions, and against TotalSegmentator (issue 24 C).

    .venv/bin/python benchmarks/definition_check.py [--model DIR] [--figure docs/definition_reference_errors.png]
    .venv/bin/python benchmarks/definition_check.py --case dicom_series [--model DIR] [--figure FILE]

Slab: the held-out real slices (example_ct z 82..91 = example_ct_sm 0..9, L2-T12, 3 mm; never trained
on). References: (1) `training/definition_reference.py` with the corrections in
`training/references/corrections.json` (no model's output; its ignored band left out of every
score); (2) TotalSegmentator's `tissue_types` masks, as drawn and held to the HU windows; and the two
references against each other (what TotalSegmentator's muscle leaves out of the definition's). Each
tissue's errors are counted as misses and extras; `--figure` shows where the muscle's lie.
ADIPOSESEG_PRECISION=fp32 compares fp32 networks (the default on CPU is the int8 export where one exists).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "AdiposeSeg"))
TS = ROOT.parent / "shared" / "data" / "real-ct" / "totalsegmentator-example"
SLAB = (82, 92)
TISSUES = {"SAT": 1, "VAT": 2, "Muscle": 3, "IMAT": 4}


def canonical_array(image: sitk.Image) -> np.ndarray:
    from AdiposeSegLib.reading.orientation import to_canonical

    return sitk.GetArrayFromImage(to_canonical(image))


def definition_reference(ct: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """The slab's definition reference (corrections applied) and its HU, both canonical."""
    from AdiposeSegLib.reading.orientation import to_canonical
    from training.definition_reference import load_corrections, reference_volume

    canon = to_canonical(ct)
    hu = sitk.GetArrayFromImage(canon).astype(np.float32)
    spacing = (canon.GetSpacing()[1], canon.GetSpacing()[0])
    return reference_volume(hu, spacing, load_corrections("example_ct"), slices=SLAB), hu[SLAB[0]:SLAB[1]]


def scores(pred: np.ndarray, ref: np.ndarray, merge_vat_imat: bool = False) -> dict:
    """Per tissue (VAT and IMAT as one when merged): Dice, volume difference %, missed and extra
    voxels, on the voxels the reference does not ignore."""
    from AdiposeSegLib.measuring.evaluate import dice

    keep = ref != 255
    groups = ({"SAT": (1,), "VAT+IMAT": (2, 4), "Muscle": (3,)} if merge_vat_imat
              else {name: (k,) for name, k in TISSUES.items()})
    out = {}
    for name, labels in groups.items():
        p, r = np.isin(pred, labels) & keep, np.isin(ref, labels) & keep
        out[name] = (dice(p, r), 100.0 * (p.sum() - r.sum()) / max(1, r.sum()), int((r & ~p).sum()), int((p & ~r).sum()))
    return out


def print_table(title: str, table: dict) -> None:
    print(f"\n{title}")
    print("| tissue | Dice | volume | missed voxels | extra voxels |")
    print("| --- | --- | --- | --- | --- |")
    for name, (d, vol, miss, extra) in table.items():
        print(f"| {name} | {d:.4f} | {vol:+.1f}% | {miss} | {extra} |")


def figure(path: Path, hu: np.ndarray, pred: np.ndarray, ref: np.ndarray, ts: np.ndarray | None, slices: list[int],
           title: str = "CT (3 mm, held out)", scale: int = 4) -> None:
    from PIL import Image, ImageDraw

    rows = []
    others = (pred,) if ts is None else (ts, pred)
    for k in slices:
        g = np.clip((hu[k] + 160) / 400, 0, 1) * 255
        panels = []
        for other in others:
            rgb = np.stack([g] * 3, -1)
            r, p = ref[k] == 3, other[k] == 3
            rgb[r & p] = 0.5 * rgb[r & p] + 0.5 * np.array((150, 80, 225))
            rgb[r & ~p] = (255, 60, 60)           # in the definition's muscle, missed
            rgb[p & ~r & (ref[k] != 255)] = (60, 160, 255)    # drawn, not the definition's muscle
            rgb[ref[k] == 255] = 0.6 * rgb[ref[k] == 255] + 0.4 * np.array((255, 255, 0))
            panels.append(rgb)
        row = np.concatenate([np.stack([g] * 3, -1)] + panels, 1).astype(np.uint8)
        rows.append(row)
    img = np.concatenate(rows, 0)
    im = Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST)
    d = ImageDraw.Draw(im)
    w = hu.shape[2] * scale
    titles = (title,) + (() if ts is None else ("TotalSegmentator vs definition",)) + ("AdiposeSeg vs definition",)
    for i, text in enumerate(titles):
        d.text((i * w + 6, 4), text, fill=(255, 255, 0))
    d.text((6, im.height - 14), "violet: both  red: definition's muscle missed  blue: extra  yellow tint: ignored band",
           fill=(255, 255, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def predict(ct: sitk.Image, model_dir: str | None):
    """The pipeline's canonical labels for the whole CT (levels not searched) and the run's result."""
    from AdiposeSegLib.model.model_card import load_model
    from AdiposeSegLib.running.pipeline import segment_image
    from AdiposeSegLib.running.progress import RunControl
    from AdiposeSegLib.tissues import SegmentOptions

    result = segment_image(ct, load_model(model_dir), SegmentOptions(device="cpu", find_levels=False), RunControl())
    return result.canonical_labels, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--case", choices=("example_ct", "dicom_series"), default="example_ct",
                        help="example_ct: the held-out 3 mm slab (also against TotalSegmentator); dicom_series: the "
                             "20-slice 0.98 mm contrast series (another patient, rib level, never trained on; no other reference)")
    args = parser.parse_args()
    if args.case == "dicom_series":
        return dicom_series(args)

    from AdiposeSegLib.measuring.evaluate import gate_labels
    from AdiposeSegLib.tissues import HUWindows

    ct = sitk.ReadImage(str(TS / "example_ct.nii.gz"))
    ref, hu = definition_reference(ct)
    labels, result = predict(ct, args.model)
    pred = labels[SLAB[0]:SLAB[1]]
    ts = canonical_array(sitk.ReadImage(str(TS / "tissue_types_labelmap_on_ct_sm.nii.gz")))[0:SLAB[1] - SLAB[0]].astype(np.uint8)
    if ts.shape != ref.shape:
        raise SystemExit(f"grids differ: {ts.shape} vs {ref.shape}")
    ts_gated = gate_labels(ts, hu, HUWindows())
    print(f"model {result.model_info['name']} {result.model_info['version']}; slab example_ct z {SLAB[0]}..{SLAB[1] - 1};"
          f" definition reference ignores {100.0 * (ref == 255).mean():.1f}% of the slab's voxels")
    print_table("AdiposeSeg vs the definition reference", scores(pred, ref))
    print_table("TotalSegmentator (held to the HU windows) vs the definition reference", scores(ts_gated, ref))
    print_table("AdiposeSeg vs TotalSegmentator as drawn (VAT+IMAT vs torso fat)", scores(pred, ts, merge_vat_imat=True))
    print_table("AdiposeSeg vs TotalSegmentator held to the HU windows (VAT+IMAT vs torso fat)", scores(pred, ts_gated, merge_vat_imat=True))
    if args.figure:
        figure(args.figure, hu, pred, ref, ts_gated, [1, 5, 9])
        print(f"\nwrote {args.figure}")
    return 0


def dicom_series(args) -> int:
    """The second real case: example_ct_dicom (T11-T12, 0.98 mm, contrast, arms down), all 20 slices."""
    from AdiposeSegLib.reading.image_io import read_ct
    from AdiposeSegLib.reading.orientation import to_canonical
    from training.definition_reference import load_corrections, reference_volume

    ct = read_ct(str(TS / "example_ct_dicom"))
    canon = to_canonical(ct)
    hu = sitk.GetArrayFromImage(canon).astype(np.float32)
    ref = reference_volume(hu, (canon.GetSpacing()[1], canon.GetSpacing()[0]), load_corrections("example_ct_dicom"))
    pred, result = predict(ct, args.model)
    print(f"model {result.model_info['name']} {result.model_info['version']}; example_ct_dicom, 20 slices;"
          f" definition reference ignores {100.0 * (ref == 255).mean():.1f}% of the voxels")
    print_table("AdiposeSeg vs the definition reference", scores(pred, ref))
    if args.figure:
        crop = (slice(None), slice(60, 420), slice(None))
        figure(args.figure, hu[crop], pred[crop], ref[crop], None, [0, 10, 19], title="CT (0.98 mm, never trained on)", scale=1)
        print(f"\nwrote {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
