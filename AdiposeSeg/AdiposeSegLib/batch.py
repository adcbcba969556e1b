"""Batch over many scans: one result folder per scan, a summary CSV, failures reported, re-runs resume."""
from __future__ import annotations

import csv
import io
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .errors import AdiposeSegError, Cancelled
from .image_io import is_volume_file, looks_like_dicom, read_ct
from .model_card import LoadedModel
from .pipeline import segment_image
from .progress import RunControl
from .results import case_id_for, write_results
from .safe_write import write_text
from .tissues import LABELS, NAMES, SegmentOptions

SUMMARY_COLUMNS = (["case_id", "status", "source", "message", "slices"]
                   + [f"{NAMES[k]}_volume_cm3" for k in LABELS] + [f"{NAMES[k]}_mean_HU" for k in LABELS]
                   + ["VAT_SAT_ratio", "seconds"])


def find_inputs(source: str | os.PathLike | Iterable[str]) -> list[str]:
    """Scans to process: a list file (one path a line), a folder of volumes and/or DICOM folders, or paths."""
    if not isinstance(source, (str, os.PathLike)):
        return [str(p) for p in source]
    source = str(source)
    if os.path.isfile(source) and source.lower().endswith((".txt", ".lst", ".list")):
        base = Path(source).parent
        lines = [l.strip() for l in Path(source).read_text().splitlines()]
        return [str(base / l) if not os.path.isabs(l) else l for l in lines if l and not l.startswith("#")]
    if not os.path.isdir(source):
        raise AdiposeSegError(f"{source}: give a folder of scans or a .txt list of paths")
    found = []
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and (is_volume_file(entry.path) and not entry.name.lower().endswith(".seg.nrrd")):
            found.append(entry.path)
        elif entry.is_dir() and any(looks_like_dicom(f.path) for f in os.scandir(entry.path) if f.is_file()):
            found.append(entry.path)
    loose_dicom = [e.path for e in os.scandir(source) if e.is_file() and looks_like_dicom(e.path)]
    if loose_dicom and not found:
        found.append(source)
    return found


@dataclass
class CaseOutcome:
    case_id: str
    status: str          # done, skipped, failed, cancelled
    source: str
    message: str = ""
    summary: dict | None = None
    seconds: float = 0.0


def _unique_case_ids(paths: list[str]) -> list[str]:
    ids, seen = [], {}
    for p in paths:
        cid = case_id_for(p)
        n = seen.get(cid, 0)
        seen[cid] = n + 1
        ids.append(cid if n == 0 else f"{cid}_{n + 1}")
    return ids


def process_case(path: str, case_id: str, out_root: Path, model: LoadedModel, options: SegmentOptions,
                 control: RunControl, labelmap_format: str | None, skip_done: bool = True) -> CaseOutcome:
    case_dir = out_root / case_id
    summary_file = case_dir / f"{case_id}_summary.json"
    if skip_done and summary_file.is_file():
        return CaseOutcome(case_id, "skipped", path, "already done", json.loads(summary_file.read_text()))
    t0 = time.perf_counter()
    try:
        image = read_ct(path)
        result = segment_image(image, model, options, control)
        write_results(result, case_dir, case_id, model, source=path, labelmap_format=labelmap_format)
    except Cancelled:
        return CaseOutcome(case_id, "cancelled", path, "cancelled")
    except AdiposeSegError as exc:
        return CaseOutcome(case_id, "failed", path, str(exc), seconds=time.perf_counter() - t0)
    except Exception as exc:  # a batch goes on past anything one scan does wrong
        return CaseOutcome(case_id, "failed", path, f"{exc.__class__.__name__}: {exc}", seconds=time.perf_counter() - t0)
    return CaseOutcome(case_id, "done", path, "", json.loads(summary_file.read_text()), time.perf_counter() - t0)


def summary_csv(outcomes: list[CaseOutcome]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, SUMMARY_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for o in outcomes:
        row = {"case_id": o.case_id, "status": o.status, "source": o.source, "message": o.message,
               "seconds": f"{o.seconds:.2f}"}
        if o.summary:
            row["slices"] = "{}-{}".format(*o.summary.get("slices_processed", ["", ""]))
            for key, value in (o.summary.get("totals") or {}).items():
                row[key] = "" if value is None else f"{value:.4f}"
        writer.writerow(row)
    return buf.getvalue()


def run_batch(inputs: list[str], out_dir: str | os.PathLike, model: LoadedModel, options: SegmentOptions | None = None,
              workers: int = 1, control: RunControl | None = None, labelmap_format: str | None = None,
              on_case: Callable[[CaseOutcome], None] | None = None) -> tuple[list[CaseOutcome], Path]:
    """Process every input; returns the outcomes and the summary CSV's path.

    Workers > 1 reads and writes scans in parallel threads; the network runs in the same process
    (torch releases the GIL), so memory stays that of one model.
    """
    options = options or SegmentOptions()
    control = control or RunControl()
    out_root = Path(out_dir)
    out_root.mkdir(parents=True, exist_ok=True)
    ids = _unique_case_ids(inputs)
    outcomes: list[CaseOutcome | None] = [None] * len(inputs)

    def one(i: int) -> CaseOutcome:
        if control.cancelled:
            return CaseOutcome(ids[i], "cancelled", inputs[i], "cancelled")
        outcome = process_case(inputs[i], ids[i], out_root, model, options, RunControl(None, control.cancel_event), labelmap_format)
        if on_case:
            on_case(outcome)
        return outcome

    if workers <= 1:
        for i in range(len(inputs)):
            outcomes[i] = one(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, outcome in zip(range(len(inputs)), pool.map(one, range(len(inputs)))):
                outcomes[i] = outcome
    summary_path = write_text(out_root / "summary.csv", summary_csv(outcomes))
    return outcomes, summary_path
