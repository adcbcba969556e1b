"""The ground-truth dataset manifest: written by "Save as ground truth", read by the training package."""
from __future__ import annotations

import csv
import io
from pathlib import Path

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ["case_id", "image", "segmentation", "prediction", "source", "model_version", "edited", "date",
                    "l3_slice", "l3_source"]   # L3: canonical slice; "auto" (found on the bone) or "manual" (set by the user)


def read_manifest(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def manifest_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, MANIFEST_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
