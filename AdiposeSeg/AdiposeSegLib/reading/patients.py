"""Patient data for the indices: a CSV with one row per case (height, weight, sex, optional L3 slice).

Columns: `id` (the case id, e.g. p1_ct) or `path` (the scan), `height_m`, `weight_kg`, `sex` (M/F),
and optionally `l3_slice` (the L3 index in the canonical order of the slice table). Values that
cannot be a human's are refused (a height of 175 is in cm, not m).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from ..errors import InputReadError


def _number(row: dict, key: str, lo: float, hi: float, where: str):
    text = (row.get(key) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputReadError(f"{where}: {key} {text!r} is not a number") from None
    if not lo <= value <= hi:
        hint = " (is it in cm? give metres)" if key == "height_m" and value > 3 else ""
        raise InputReadError(f"{where}: {key} {value:g} is outside {lo:g}..{hi:g}{hint}")
    return value


def checked_patient(values: dict, where: str, source: str) -> dict:
    """height_m / weight_kg / sex (text or numbers; empty = not given) checked to be a human's:
    {"height_m", "weight_kg", "sex", "source"} with the given ones."""
    row = {k: "" if values.get(k) is None else str(values.get(k)) for k in ("height_m", "weight_kg", "sex")}
    patient = {"source": source}
    height = _number(row, "height_m", 0.4, 2.5, where)
    weight = _number(row, "weight_kg", 2.0, 400.0, where)
    if height is not None:
        patient["height_m"] = height
    if weight is not None:
        patient["weight_kg"] = weight
    sex = row["sex"].strip().upper()[:1]
    if sex:
        if sex not in ("M", "F"):
            raise InputReadError(f"{where}: sex {values.get('sex')!r}: give M or F")
        patient["sex"] = sex
    return patient


def read_patients(path: str | os.PathLike) -> dict[str, dict]:
    """{case id or resolved scan path: {"height_m", "weight_kg", "sex", "l3_slice", "source"}}."""
    path = Path(path)
    if not path.is_file():
        raise InputReadError(f"{path}: no such patients file")
    out: dict[str, dict] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or [])
        if not columns & {"id", "case_id", "path"}:
            raise InputReadError(f"{path}: needs a column id (the case id) or path (the scan); found {sorted(columns)}")
        for n, row in enumerate(reader, start=2):
            where = f"{path}, line {n}"
            patient = checked_patient(row, where, str(path))
            l3 = _number(row, "l3_slice", 0, 100000, where)
            if l3 is not None:
                patient["l3_slice"] = int(l3)
            key = (row.get("id") or row.get("case_id") or "").strip()
            if key:
                out[key] = patient
            if (row.get("path") or "").strip():
                scan = Path(row["path"].strip())
                out[str((scan if scan.is_absolute() else path.parent / scan).resolve())] = patient
    return out


def patient_for(patients: dict[str, dict] | None, case_id: str, source: str) -> dict | None:
    if not patients:
        return None
    return patients.get(case_id) or patients.get(str(Path(source).resolve()))


def merged(header: dict | None, given: dict | None) -> dict:
    """What the user gave wins over the DICOM header, field by field; the sources are kept."""
    out = {k: v for k, v in (header or {}).items() if k != "source"}
    sources = {k: (header or {}).get("source", "") for k in out}
    for k, v in (given or {}).items():
        if k not in ("source", "l3_slice"):
            out[k] = v
            sources[k] = (given or {}).get("source", "")
    if out:
        out["sources"] = sources
    return out
