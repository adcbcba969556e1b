"""Everything one segmented scan leaves on disk, written in one place for the CLI, batch and Slicer."""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from .model_card import LoadedModel
from .overlay import choose_slices, write_montage
from .pipeline import SegmentationResult
from .writers import write_labelmap, write_segmentation, write_statistics_csv, write_summary_json

LABELMAP_FORMATS = ("nrrd", "nii.gz", "nii", "mha")


@dataclass
class OutputFiles:
    segmentation: Path
    statistics: Path
    summary: Path
    overlay: Path | None = None
    labelmap: Path | None = None

    def as_dict(self) -> dict:
        return {k: str(v) for k, v in self.__dict__.items() if v is not None}


def case_id_for(path: str | os.PathLike) -> str:
    name = Path(str(path).rstrip("/\\")).name
    for suffix in (".seg.nrrd", ".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def write_results(
    result: SegmentationResult,
    out_dir: str | os.PathLike,
    case_id: str,
    model: LoadedModel,
    source: str = "",
    labelmap_format: str | None = None,
    overlay_slices: list[int] | None = None,
) -> OutputFiles:
    out = Path(out_dir)
    files = OutputFiles(
        segmentation=write_segmentation(result.labels, out / f"{case_id}.seg.nrrd"),
        statistics=write_statistics_csv(result.statistics, out / f"{case_id}_slices.csv"),
        summary=out / f"{case_id}_summary.json",
    )
    if labelmap_format:
        if labelmap_format not in LABELMAP_FORMATS:
            raise ValueError(f"label map format {labelmap_format!r}: choose one of {', '.join(LABELMAP_FORMATS)}")
        files.labelmap = write_labelmap(result.labels, out / f"{case_id}_labels.{labelmap_format}")
    start, stop = result.slice_range
    if overlay_slices:
        chosen = [s for s in overlay_slices if start <= s < stop]
    else:
        chosen = [start + s for s in choose_slices(result.canonical_labels[start:stop])]
    if chosen:
        spacing = result.canonical_image.GetSpacing()
        files.overlay = write_montage(out / f"{case_id}_overlay.png", result.canonical_hu, result.canonical_labels,
                                      chosen, (spacing[0], spacing[1]), with_plain=True)
    stats = result.statistics
    summary = {
        "case_id": case_id,
        "source": source,
        "model": {"name": model.card.name, "version": model.card.version, "directory": str(model.directory)},
        "device": result.device,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "size_xyz": list(result.labels.GetSize()),
        "spacing_xyz_mm": list(result.labels.GetSpacing()),
        "slices_processed": list(result.slice_range),
        "totals": stats.totals,
        "l3": stats.l3_row,
        "notes": stats.notes,
        "timings_s": result.timings,
        "files": files.as_dict(),
    }
    write_summary_json(summary, files.summary)
    return files
