"""The cohort table: per-case results on disk merged into one summary CSV, with what is missing or failed.

`adiposeseg aggregate OUT [--manifest LIST]` after a sharded batch; a batch without shards calls the
same code. Rows are read from each case's summary (written last, so only complete sets count) and
failure record; a failure newer than the last result shows as failed.
"""
from __future__ import annotations

import csv
import io
import json
import re
import os
from pathlib import Path

from .safe_write import write_text
from ..errors import AdiposeSegError
from ..running.identity import case_id_in
from ..tissues import LABELS, NAMES

SUMMARY_COLUMNS = (["case_id", "status", "source", "series_uid", "input_sha256", "model", "model_weights_sha256",
                    "options", "label_rules", "message", "slices"]
                   + [f"{NAMES[k]}_volume_cm3" for k in LABELS] + [f"{NAMES[k]}_mean_HU" for k in LABELS]
                   + ["VAT_SAT_ratio", "L3_slice", "L3_source", "L3_confidence", "L3_SMA_cm2", "L3_SMD_HU", "L3_IMAT_cm2", "L3_SAT_cm2", "L3_VAT_cm2",
                      "L3_SMI_cm2_m2", "sarcopenia", "myosteatosis", "visceral_obesity", "quality_flags", "seconds"])


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def row_for(record: dict) -> dict:
    """One CSV row from a case summary, a failure record, or a batch outcome."""
    identity = record.get("input") or {}
    run = record.get("run") or {}
    model = run.get("model") or record.get("model") or {}
    row = {"case_id": record.get("case_id", ""), "status": record.get("status", ""), "source": record.get("source", ""),
           "series_uid": identity.get("series_uid", ""), "input_sha256": identity.get("fingerprint", ""),
           "model": " ".join(v for v in (model.get("name", ""), model.get("version", ""), model.get("precision", "")) if v),
           "model_weights_sha256": model.get("weights_sha256", ""),
           "options": json.dumps(run.get("options"), sort_keys=True, separators=(",", ":")) if run.get("options") else "",
           "label_rules": run.get("label_rules", ""),
           "message": record.get("message", "")}
    if record.get("status") == "done" and record.get("totals"):
        row["slices"] = "{}-{}".format(*record.get("slices_processed", ["", ""]))
        for key, value in record["totals"].items():
            if key in SUMMARY_COLUMNS:
                row[key] = _fmt(value)
        l3 = (record.get("levels") or {}).get("L3")
        if l3:
            row["L3_slice"] = l3.get("slice", "")
            row["L3_source"] = l3.get("source", "")
            row["L3_confidence"] = l3.get("confidence", "")
            for key in ("SMA_cm2", "SMD_HU", "IMAT_cm2", "SAT_cm2", "VAT_cm2", "SMI_cm2_m2"):
                row[f"L3_{key}"] = _fmt(l3.get(key))
            for flag, value in (l3.get("flags") or {}).items():
                row[flag] = "yes" if value else "no"
        flags = record.get("quality") or {}
        row["quality_flags"] = ";".join(sorted(k for k, v in flags.items() if v and k not in ("details", "level_anchors")))
        row["seconds"] = record.get("seconds") or _fmt(sum((record.get("timings_s") or {}).values()))
    elif "seconds" in record:
        row["seconds"] = record["seconds"]
    return row


def summary_csv_text(records: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, SUMMARY_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow(row_for(record))
    return buf.getvalue()


class CorruptRecord(ValueError):
    """A result file that exists but cannot be read as one (truncated, edited, another program's)."""


def _read(path: Path) -> dict | None:
    """A case's result or failure record; None when absent; CorruptRecord when present but unreadable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptRecord(f"{path}: cannot be read ({exc})") from None
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise CorruptRecord(f"{path}: not valid JSON ({exc}; truncated?)") from None
    if not isinstance(record, dict) or record.get("status") not in ("done", "failed"):
        raise CorruptRecord(f"{path}: not an AdiposeSeg result record")
    return record


def case_record(out_root: Path, case_id: str) -> dict | None:
    """The case's current state on disk: its result, or its failure when that is newer; None when absent.
    A corrupt record file makes the case failed, naming the file: never a row with guessed numbers."""
    folder = out_root / case_id
    try:
        done = _read(folder / f"{case_id}_summary.json")
        failed = _read(folder / f"{case_id}_failed.json")
    except CorruptRecord as exc:
        return {"case_id": case_id, "status": "failed", "source": "", "message": f"{exc}; run the case again"}
    if done and failed:
        return failed if failed.get("date", "") >= done.get("date", "") else done
    return done or failed


def check_shards_complete(out_root: Path) -> None:
    """Without a manifest, only the shards' own tables say which cases should be there: all shards of
    one count must have run, and no two counts may be mixed (cases of a missing share would be absent
    from the table without a trace)."""
    found: dict[int, set[int]] = {}
    for path in (out_root / "shards").glob("summary-*-of-*.csv"):
        match = re.fullmatch(r"summary-(\d+)-of-(\d+)\.csv", path.name)
        if match:
            found.setdefault(int(match.group(2)), set()).add(int(match.group(1)))
    if len(found) > 1:
        raise AdiposeSegError(f"{out_root}: shards of different counts ran into this folder "
                              f"({', '.join(f'{len(v)} of {n}' for n, v in sorted(found.items()))}): the cohort may lack "
                              "the cases of a share that never ran. Aggregate with --manifest (the full input list), "
                              "or run all shards of one count")
    for count, done in found.items():
        absent = sorted(set(range(count)) - done)
        if absent:
            raise AdiposeSegError(f"{out_root}: shard(s) {', '.join(f'{i}/{count}' for i in absent)} have not run: their "
                                  "cases would be missing from the table without a trace. Run them, or aggregate with --manifest")


def aggregate(out_root: str | os.PathLike, manifest: list[tuple[str, str]] | None = None,
              outcomes: list | None = None) -> tuple[Path, dict]:
    """Write OUT/summary.csv; returns its path and {"done": [...], "failed": [...], "missing": [...]}.

    manifest: (case_id, source[, legacy id]) of every expected case; without it, every case folder in OUT.
    outcomes: this run's CaseOutcome list (adds "cancelled" and the run's messages).
    """
    out_root = Path(out_root)
    by_run = {o.case_id: o for o in (outcomes or []) if o is not None}
    if manifest is None:
        manifest = sorted((d.name, "") for d in out_root.iterdir()
                          if d.is_dir() and not d.name.startswith(".") and d.name != "shards"
                          and ((d / f"{d.name}_summary.json").is_file() or (d / f"{d.name}_failed.json").is_file()))
        check_shards_complete(out_root)
    records, report = [], {"done": [], "failed": [], "missing": [], "cancelled": []}
    for case_id, source, *legacy in manifest:
        if source:   # never another input's folder of the same name; an earlier version's id still found
            case_id = case_id_in(out_root, case_id, source, legacy[0] if legacy else None)
        record = case_record(out_root, case_id)
        outcome = by_run.get(case_id)
        if outcome is not None and outcome.status == "cancelled":
            record = {"case_id": case_id, "status": "cancelled", "source": source, "message": "cancelled"}
        elif record is None:
            record = {"case_id": case_id, "status": "missing", "source": source, "message": "no result yet"}
        elif outcome is not None:
            record = dict(record, message=outcome.message or record.get("message", ""),
                          seconds=f"{outcome.seconds:.2f}" if outcome.status == "done" else record.get("seconds", ""))
        report.setdefault(record["status"], []).append(case_id)
        records.append(record)
    path = write_text(out_root / "summary.csv", summary_csv_text(records))
    return path, report
