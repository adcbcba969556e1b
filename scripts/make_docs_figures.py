"""Render the figures in docs/: the model's output on the real CT in ../shared/data/real-ct, beside
TotalSegmentator's tissue masks, and generated phantoms beside real slices.

    .venv/bin/python scripts/make_docs_figures.py [--model DIR] [--out docs] [--lumbar-labels runs/ts2/train]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "AdiposeSeg"))
sys.path.insert(0, str(ROOT))

from AdiposeSegLib.reading.image_io import read_ct  # noqa: E402
from AdiposeSegLib.model.model_card import load_model  # noqa: E402
from AdiposeSegLib.reading.orientation import to_canonical  # noqa: E402
from AdiposeSegLib.reporting.overlay import false_colour  # noqa: E402
from AdiposeSegLib.running.pipeline import segment_image  # noqa: E402
from AdiposeSegLib.tissues import SegmentOptions  # noqa: E402
from training.phantom import phantom_volume  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real-ct"
TS = REAL / "totalsegmentator-example"


def tile(rgb: np.ndarray, spacing_xy, width: int, caption: str) -> Image.Image:
    h, w = rgb.shape[:2]
    height = int(round(width * (h * spacing_xy[1]) / (w * spacing_xy[0])))
    im = Image.fromarray(rgb).resize((width, height), Image.BILINEAR)
    ImageDraw.Draw(im).text((4, 4), caption, fill=(255, 255, 0))
    return im


def grid(rows: list[list[Image.Image]]) -> Image.Image:
    w = max(sum(t.width for t in r) for r in rows)
    h = sum(max(t.height for t in r) for r in rows)
    sheet = Image.new("RGB", (w, h))
    y = 0
    for r in rows:
        x = 0
        for t in r:
            sheet.paste(t, (x, y))
            x += t.width
        y += max(t.height for t in r)
    return sheet


def real_output(model, out: Path) -> None:
    options = SegmentOptions(device="cpu")
    # held-out slab of example_ct_sm (slices 0..9 were never trained on) with TotalSegmentator's masks
    ct = read_ct(TS / "example_ct_sm.nii.gz")
    ref = to_canonical(sitk.ReadImage(str(TS / "tissue_types_labelmap_on_ct_sm.nii.gz")))
    res = segment_image(ct, model, options)
    ref_a = sitk.GetArrayFromImage(ref)
    ref_a[ref_a == 2] = 2
    sp = res.canonical_image.GetSpacing()
    rows = []
    for k in (1, 5, 9, 20):
        tag = "held out" if k < 10 else "trained on"
        rows.append([tile(false_colour(res.canonical_hu[k]), sp, 300, f"CT slice {k} ({tag})"),
                     tile(false_colour(res.canonical_hu[k], res.canonical_labels[k]), sp, 300, "AdiposeSeg"),
                     tile(false_colour(res.canonical_hu[k], ref_a[k]), sp, 300, "TotalSegmentator tissue_types")])
    grid(rows).save(out / "real_ct_heldout_vs_totalsegmentator.png")
    # the whole example CT, T11 to the femoral heads (no tissue reference below L2)
    full = read_ct(TS / "example_ct.nii.gz")
    res = segment_image(full, model, options)
    sp = res.canonical_image.GetSpacing()
    picks = [10, 30, 50, 72, 95]
    rows = [[tile(false_colour(res.canonical_hu[k], res.canonical_labels[k]), sp, 260, f"slice {k}" + (" (L3)" if 65 <= k <= 79 else ""))
             for k in picks]]
    grid(rows).save(out / "real_ct_full_example.png")
    # the JPEG 2000 DICOM series (512x512, 0.98 mm) and the dcmqi GE series
    rows = []
    for path, ks in ((TS / "example_ct_dicom", (3, 10, 17)), (REAL / "dcmqi-ct3slice", (1,))):
        img = read_ct(path)
        res = segment_image(img, model, options)
        sp = res.canonical_image.GetSpacing()
        rows.append([tile(false_colour(res.canonical_hu[k], res.canonical_labels[k]), sp, 300, f"{path.name} slice {k}") for k in ks])
    grid(rows).save(out / "real_ct_dicom_series.png")


def phantoms_vs_real(out: Path) -> None:
    ct = to_canonical(read_ct(TS / "example_ct.nii.gz"))
    a = sitk.GetArrayFromImage(ct)
    real = [tile(false_colour(a[k]), ct.GetSpacing(), 240, f"real, slice {k}") for k in (20, 72, 100)]
    dcm = to_canonical(read_ct(TS / "example_ct_dicom"))
    real.append(tile(false_colour(sitk.GetArrayFromImage(dcm)[10]), dcm.GetSpacing(), 240, "real DICOM"))
    plain, labelled = [], []
    for seed in (1, 7, 12, 21):
        p, lab = phantom_volume(seed=seed, size=256, slices=1)
        hu, lab_a = sitk.GetArrayFromImage(p)[0], sitk.GetArrayFromImage(lab)[0]
        plain.append(tile(false_colour(hu), p.GetSpacing(), 240, f"phantom {seed}"))
        labelled.append(tile(false_colour(hu, lab_a), p.GetSpacing(), 240, f"phantom {seed}: exact labels"))
    grid([real, plain, labelled]).save(out / "phantoms_vs_real.png")


def lumbar_labels(folder: Path, out: Path) -> None:
    """The semi-automatic lumbar training labels (`prepare-totalseg --lumbar`), for the check by eye."""
    ct_path = next(folder.glob("ts_example_full_z*[0-9].nii.gz"))
    first = int(ct_path.name.split("_z")[1].split("-")[0])   # ts_example_full_zA-B: example_ct's slices A..B-1
    ct = to_canonical(sitk.ReadImage(str(ct_path)))
    labels = to_canonical(sitk.ReadImage(str(next(folder.glob("ts_example_full_z*_labels.nii.gz")))))
    hu, lab = sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(labels)
    spacing = ct.GetSpacing()[:2]
    rows = []
    for k in (2, 12, 25, 38):
        rows.append([tile(false_colour(hu[k], np.zeros_like(lab[k])), spacing, 300, f"example_ct z {first + k}"),
                     tile(false_colour(hu[k], lab[k]), spacing, 300, "training labels")])
    grid(rows).save(out / "lumbar_training_labels.png")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model")
    p.add_argument("--out", default=str(ROOT / "docs"))
    p.add_argument("--lumbar-labels", help="a prepare-totalseg --lumbar training folder (e.g. runs/ts2/train): draw its labels")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    real_output(model, out)
    phantoms_vs_real(out)
    if args.lumbar_labels:
        lumbar_labels(Path(args.lumbar_labels), out)
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
