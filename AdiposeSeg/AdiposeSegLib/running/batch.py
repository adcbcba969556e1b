"""Batch over many scans: one result folder per case, bound to its input, model and options.

A case's id comes from its path (stable under reordering and insertion); it is "done" only when
its summary records the same input (path, series, content fingerprint) and the same run (model
weights, options). `shard=(i, n)` processes a stable share of the cases, so a Slurm job array or a
Kubernetes Indexed Job can spread a cohort over machines; `aggregate` merges the results.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..reporting.aggregate import aggregate, summary_csv_text
from ..reading.discover import find_inputs  # noqa: F401  (part of the batch API)
from ..errors import AdiposeSegError, Cancelled
from .identity import (case_id_in, case_ids, check_unchanged, file_states, input_files, input_identity,
                       legacy_case_ids, run_key)
from .output_lock import output_lock
from ..reading.dicom import dicom_files, seg_sources
from ..reading.image_io import read_ct
from ..reading.patients import merged, patient_for
from ..model.model_card import LoadedModel
from .pipeline import segment_image
from .progress import RunControl
from ..reporting.publish import clean_leftovers
from ..reporting.results import summary_extra, write_results
from ..reporting.safe_write import write_text
from ..tissues import SegmentOptions


@dataclass
class CaseOutcome:
    case_id: str
    status: str          # done, skipped, failed, cancelled
    source: str
    message: str = ""
    summary: dict | None = None
    seconds: float = 0.0


def in_shard(case_id: str, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    index, count = shard
    return int(hashlib.sha1(case_id.encode()).hexdigest()[:8], 16) % count == index


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: give INDEX/COUNT, e.g. 0/8 (INDEX from 0 to COUNT-1)") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: INDEX must be 0..COUNT-1 and COUNT at least 1")
    return index, count


def identity_for(path: str, files: list[str] | None = None) -> dict:
    """The input's identity; `files`: its DICOM files when already listed (a folder is scanned once)."""
    if os.path.isdir(path):
        return input_identity(path, None, dicom_files(path) if files is None else files)
    return input_identity(path, None, None)


def _given(patient: dict | None) -> dict:
    """The per-case settings from the patients file that change a result (height, weight, sex, L3)."""
    return {k: v for k, v in (patient or {}).items() if k != "source"}


def _same_result(summary: dict, identity: dict, key: dict, patient: dict | None = None) -> bool:
    recorded = summary.get("input") or {}
    return (summary.get("status") == "done" and recorded.get("path") == identity["path"]
            and recorded.get("fingerprint") == identity["fingerprint"] and summary.get("run") == key
            and summary.get("given_per_case", {}) == _given(patient))


def process_case(path: str, case_id: str, out_root: Path, model: LoadedModel, options: SegmentOptions,
                 control: RunControl, labelmap_format: str | None, key: dict, skip_done: bool = True,
                 patient: dict | None = None, dicom_seg: bool | None = None,
                 dicom_options: dict | None = None, shard: tuple[int, int] | None = None) -> CaseOutcome:
    case_dir = out_root / case_id
    clean_leftovers(case_dir)
    summary_file = case_dir / f"{case_id}_summary.json"
    t0 = time.perf_counter()
    try:
        files = input_files(path)
        states = file_states(files)
        identity = identity_for(path, files)
    except OSError as exc:
        return _failed(case_dir, case_id, path, f"{path}: cannot be read ({exc.strerror or exc})", key, {"path": path}, t0)
    note = ""
    if summary_file.is_file():
        try:
            previous = json.loads(summary_file.read_text())
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict) or not isinstance(previous.get("input", {}), dict):
            previous, changed = {}, "the earlier result file was unreadable"
        elif skip_done and _same_result(previous, identity, key, patient):
            return CaseOutcome(case_id, "skipped", path, "already done with this input, model and options", previous)
        else:
            changed = ("the input changed" if (previous.get("input") or {}).get("fingerprint") != identity["fingerprint"]
                       else "the model, options or labelling rules changed" if previous.get("run") != key
                       else "the patient data or L3 changed")
        note = "computed again: " + changed
    try:
        info: dict = {}
        image = read_ct(path, info=info)
        check_unchanged(path, states)   # the fingerprint is of what was read
        identity["series_uid"] = (info.get("series") or {}).get("uid", "")
        l3 = (patient or {}).get("l3_slice")
        result = segment_image(image, model, options, control, l3_slice=l3)
        extra = summary_extra(identity, key, info, given_per_case=_given(patient),
                              **({"shard": {"index": shard[0], "count": shard[1]}} if shard else {}))
        write_results(result, case_dir, case_id, model, source=path, labelmap_format=labelmap_format,
                      overwrite=True, extra=extra, patient=merged(info.get("patient"), patient),
                      dicom_sources=seg_sources(info, dicom_seg), dicom_options=dicom_options)
    except Cancelled:
        return CaseOutcome(case_id, "cancelled", path, "cancelled")
    except AdiposeSegError as exc:
        return _failed(case_dir, case_id, path, str(exc), key, identity, t0)
    except Exception as exc:  # a batch goes on past anything one scan does wrong
        return _failed(case_dir, case_id, path, f"{exc.__class__.__name__}: {exc}", key, identity, t0)
    return CaseOutcome(case_id, "done", path, note, json.loads(summary_file.read_text()), time.perf_counter() - t0)


def _failed(case_dir: Path, case_id: str, path: str, message: str, key: dict, identity: dict, t0: float) -> CaseOutcome:
    """Record a failure beside (never instead of) an earlier complete result, for `aggregate` to report."""
    record = {"case_id": case_id, "status": "failed", "source": path, "message": message, "input": identity, "run": key,
              "date": datetime.datetime.now().isoformat(timespec="seconds")}
    try:
        write_text(case_dir / f"{case_id}_failed.json", json.dumps(record, indent=2) + "\n")
    except AdiposeSegError:
        pass  # the outcome still reports it
    return CaseOutcome(case_id, "failed", path, message, record, time.perf_counter() - t0)


def run_batch(inputs: list[str], out_dir: str | os.PathLike, model: LoadedModel, options: SegmentOptions | None = None,
              workers: int = 1, control: RunControl | None = None, labelmap_format: str | None = None,
              on_case: Callable[[CaseOutcome], None] | None = None,
              shard: tuple[int, int] | None = None, patients: dict | None = None,
              dicom_seg: bool | None = None, dicom_options: dict | None = None) -> tuple[list[CaseOutcome], Path]:
    """Process every input (or this shard's share); returns the outcomes and the summary CSV's path.

    Without a shard the summary is OUT/summary.csv over all inputs; with one it is
    OUT/shards/summary-I-of-N.csv, and `adiposeseg aggregate OUT` makes the cohort table.
    Workers > 1 reads and writes scans in parallel threads; the network runs in this process.
    """
    options = options or SegmentOptions()
    control = control or RunControl()
    out_root = Path(out_dir)
    with output_lock(out_root, shard):
        return _run_locked(inputs, out_root, model, options, workers, control, labelmap_format, on_case, shard, patients,
                           dicom_seg, dicom_options)


def _run_locked(inputs, out_root, model, options, workers, control, labelmap_format, on_case, shard, patients,
                dicom_seg, dicom_options):
    clean_leftovers(out_root)
    base = case_ids(inputs)
    ids = [case_id_in(out_root, b, p, legacy) for b, p, legacy in zip(base, inputs, legacy_case_ids(inputs))]
    mine = [i for i in range(len(inputs)) if in_shard(base[i], shard)]
    key = run_key(model, options)
    outcomes: list[CaseOutcome | None] = [None] * len(mine)

    def one(j: int) -> CaseOutcome:
        i = mine[j]
        if control.cancelled:
            return CaseOutcome(ids[i], "cancelled", inputs[i], "cancelled")
        outcome = process_case(inputs[i], ids[i], out_root, model, options, RunControl(None, control.cancel_event),
                               labelmap_format, key, patient=patient_for(patients, base[i], inputs[i]), dicom_seg=dicom_seg,
                               dicom_options=dicom_options, shard=shard)
        if on_case:
            on_case(outcome)
        return outcome

    if workers <= 1:
        for j in range(len(mine)):
            outcomes[j] = one(j)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for j, outcome in enumerate(pool.map(one, range(len(mine)))):
                outcomes[j] = outcome
    if shard is None:
        summary_path, _report = aggregate(out_root, [(ids[i], inputs[i]) for i in range(len(inputs))], outcomes)
    else:
        summary_path = write_text(out_root / "shards" / f"summary-{shard[0]}-of-{shard[1]}.csv",
                                  summary_csv_text([_row_from_outcome(o) for o in outcomes]))
    return outcomes, summary_path


def _row_from_outcome(o: CaseOutcome) -> dict:
    record = dict(o.summary or {})
    record.update({"case_id": o.case_id, "status": o.status, "source": o.source, "message": o.message,
                   "seconds": f"{o.seconds:.2f}"})
    return record


def outside_folder(inputs: list[str], folder: str | os.PathLike) -> list[str]:
    """The inputs that do not lie inside `folder` (a batch's own output folder inside its input tree
    would otherwise be taken as a case)."""
    root = Path(folder).resolve()
    return [p for p in inputs if not (Path(p).resolve() == root or root in Path(p).resolve().parents)]
