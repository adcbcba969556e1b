"""Evaluate a model on an annotated dataset: per-case and mean Dice per tissue and volume error, to CSV."""
from __future__ import annotations

import csv
import io
import math

import numpy as np

from AdiposeSegLib.measuring.evaluate import compare, gate_labels
from AdiposeSegLib.model.model_card import LoadedModel
from AdiposeSegLib.running.pipeline import segment_image
from AdiposeSegLib.running.progress import RunControl
from AdiposeSegLib.tissues import SegmentOptions

from .dataset import CaseSpec, load_case

# How a reference's classes map onto ours when its definitions differ; e.g. TotalSegmentator's
# torso fat is all fat inside the body wall, so it is compared with VAT + IMAT together.
MERGES = {"VAT+IMAT": (2, 4)}


def evaluate_cases(model: LoadedModel, specs: list[CaseSpec], options: SegmentOptions | None = None,
                   merge_vat_imat: bool = False, gate_reference: bool = False) -> list[dict]:
    """gate_reference: first hold the reference to the tissue definitions the model's labels follow
    (`gate_labels`), for references drawn without HU windows (TotalSegmentator's masks)."""
    import SimpleITK as sitk

    options = options or SegmentOptions()
    rows = []
    for spec in specs:
        case = load_case(spec)
        result = segment_image(case.image, model, options, RunControl())
        pred = sitk.GetImageFromArray(result.canonical_labels)
        pred.CopyInformation(case.image)
        ref = case.label_image
        if gate_reference:
            ref = _image_like(gate_labels(sitk.GetArrayFromImage(ref), case.hu, options.windows), ref)
        if merge_vat_imat:
            pred, ref = (_merge(img) for img in (pred, ref))
        metrics = compare(pred, ref, allow_resample=True)
        row = {"case_id": spec.case_id, "slices": int(case.hu.shape[0])}
        for name, m in metrics.items():
            row[f"{name}_dice"] = m["dice"]
            row[f"{name}_volume_diff_pct"] = m["volume_diff_pct"]
        rows.append(row)
    return rows


def _image_like(array: np.ndarray, image):
    import SimpleITK as sitk

    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def _merge(image):
    import SimpleITK as sitk

    a = sitk.GetArrayFromImage(image)
    a[a == 4] = 2
    return _image_like(a, image)


def mean_row(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k not in ("case_id", "slices")]
    mean = {"case_id": "MEAN", "slices": sum(r["slices"] for r in rows)}
    for k in keys:
        vals = [r[k] for r in rows if not (isinstance(r[k], float) and math.isnan(r[k]))]
        mean[k] = float(np.mean(vals)) if vals else float("nan")
    return mean


def rows_to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, list(rows[0].keys()), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()
