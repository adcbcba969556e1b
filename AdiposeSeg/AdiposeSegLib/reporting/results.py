"""Everything one segmented scan leaves on disk, written in one place for the CLI, batch and Slicer."""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from ..running.identity import bounded_id, strip_suffix
from ..reading.orientation import axial_count
from ..measuring.indices import level_report
from ..model.model_card import LoadedModel
from .overlay import choose_slices, write_montage
from ..running.pipeline import SegmentationResult
from ..errors import OutputError
from .publish import publish, staging_folder
from .safe_write import atomic_path
from .writers import write_labelmap, write_segmentation, write_statistics_csv, write_summary_json

LABELMAP_FORMATS = ("nrrd", "nii.gz", "nii", "mha")


@dataclass
class OutputFiles:
    segmentation: Path
    statistics: Path
    summary: Path
    overlay: Path | None = None
    labelmap: Path | None = None
    dicom_seg: Path | None = None
    dicom_sr: Path | None = None    # TID 1500 measurement report referring to the SEG
    levels: Path | None = None      # sagittal level marks beside the L3 slice
    report: Path | None = None      # the one-page patient report (PNG)
    report_pdf: Path | None = None  # the same page as PDF

    def as_dict(self) -> dict:
        return {k: str(v) for k, v in self.__dict__.items() if v is not None}


def case_id_for(path: str | os.PathLike) -> str:
    """A single scan's case id: its file or folder name without the image suffix."""
    name = Path(os.path.abspath(str(path)).rstrip("/\\")).name
    return bounded_id(strip_suffix(name))


def result_names(case_id: str) -> list[str]:
    """Every file name a case's result set can have (to replace an earlier set whole)."""
    names = [f"{case_id}.seg.nrrd", f"{case_id}_slices.csv", f"{case_id}_summary.json", f"{case_id}_overlay.png",
             f"{case_id}_failed.json", f"{case_id}_seg.dcm", f"{case_id}_sr.dcm",
             f"{case_id}_levels.png", f"{case_id}_report.png", f"{case_id}_report.pdf"]
    return names + [f"{case_id}_labels.{fmt}" for fmt in LABELMAP_FORMATS]


# what a result set can do without: the measurements (segmentation, table, summary) never wait for these
OPTIONAL_FIELDS = {"overlay": "_overlay.png", "levels": "_levels.png", "report": "_report.png",
                   "report_pdf": "_report.pdf", "dicom_seg": "_seg.dcm", "dicom_sr": "_sr.dcm"}


def _failed(what: str, exc: BaseException) -> dict:
    """An optional output that could not be written, as the summary's optional_outputs_failed lists it."""
    return {"output": what, "kind": "failed", "reason": f"{exc.__class__.__name__}: {exc}"[:300]}


def _drop_optional(staged: dict, stage: Path, case_id: str, files: OutputFiles, summary: dict, failures: list) -> bool:
    """The disk filled up before the summary: free the optional outputs so the measurements are written,
    and say which were dropped. False when there was nothing to drop."""
    dropped = [field for field, suffix in OPTIONAL_FIELDS.items() if f"{case_id}{suffix}" in staged]
    for field in dropped:
        name = f"{case_id}{OPTIONAL_FIELDS[field]}"
        (stage / name).unlink(missing_ok=True)
        staged.pop(name)
        setattr(files, field, None)
        failures.append({"output": field, "kind": "failed", "reason": "the disk was full: dropped so that the "
                                                                       "measurements could be written"})
    if dropped:
        summary["notes"].append(f"the disk was full: {', '.join(dropped)} not written, so that the measurements were")
        summary["files"] = files.as_dict()
        summary["optional_outputs_failed"] = failures
    return bool(dropped)


def summary_extra(identity: dict, key: dict, info: dict, **more) -> dict:
    """What a summary records besides the numbers: the input's identity, the run key, how the input
    was read (file lists left out: the identity's fingerprint covers them) and its quality flags."""
    reading = {k: v for k, v in info.items() if k not in ("files", "volume_files", "volume_headers")}
    return {"input": identity, "run": key, "reading": reading, "quality": info.get("quality", {}), **more}


def write_results(
    result: SegmentationResult,
    out_dir: str | os.PathLike,
    case_id: str,
    model: LoadedModel,
    source: str = "",
    labelmap_format: str | None = None,
    overlay_slices: list[int] | None = None,
    overwrite: bool = False,
    extra: dict | None = None,
    patient: dict | None = None,
    dicom_sources: list | None = None,
    dicom_options: dict | None = None,
) -> OutputFiles:
    """Write a case's result set as a unit (staged, then moved into `out_dir`, the summary last).

    An earlier set of the same case id is an error unless `overwrite`; then it is replaced whole,
    and kept if writing the new one fails. `extra` goes into the summary (input identity, run key,
    how the input was read, quality flags). `dicom_sources` (the CT images' headers or files, slice k = image k) adds a
    DICOM SEG and SR (`<case>_seg.dcm`, `<case>_sr.dcm`; `dicom_options`: uid_root, content_creator).
    An optional output (figure, SEG, SR) that fails is named in the summary's notes and
    `optional_outputs_failed`; the measurements are written all the same.
    """
    if labelmap_format and labelmap_format not in LABELMAP_FORMATS:
        raise ValueError(f"label map format {labelmap_format!r}: choose one of {', '.join(LABELMAP_FORMATS)}")
    if not case_id or case_id.startswith("."):
        raise ValueError(f"case id {case_id!r}: give a name that does not start with a dot (--case-id)")
    out = Path(out_dir)
    with staging_folder(out) as stage:
        staged = {
            f"{case_id}.seg.nrrd": write_segmentation(result.labels, stage / f"{case_id}.seg.nrrd"),
            f"{case_id}_slices.csv": write_statistics_csv(result.statistics, stage / f"{case_id}_slices.csv"),
        }
        if labelmap_format:
            name = f"{case_id}_labels.{labelmap_format}"
            staged[name] = write_labelmap(result.labels, stage / name)
        start, stop = result.slice_range
        if overlay_slices:
            chosen = [s for s in overlay_slices if start <= s < stop]
        else:
            l3 = (result.levels.get("L3") or {}).get("slice")
            l3 = [l3 - start] if l3 is not None and start <= l3 < stop else []
            chosen = [start + s for s in choose_slices(result.canonical_labels[start:stop], must_include=l3)]
        failures: list[dict] = []   # optional outputs that could not be written: noted, never fatal

        def optional(name: str, what: str, write):
            try:
                path = write()
            except Exception as exc:
                failures.append(_failed(what, exc))
                return
            if path:
                staged[name] = path

        if chosen:
            spacing = result.canonical_image.GetSpacing()
            optional(f"{case_id}_overlay.png", "overlay figure", lambda: write_montage(
                stage / f"{case_id}_overlay.png", result.canonical_hu, result.canonical_labels, chosen,
                (spacing[0], spacing[1]), with_plain=True))
        sheet = []   # the levels picture, drawn once for its own file and the report
        if result.levels and result.canonical_hu is not None:
            from .levels_figure import levels_figure

            def levels_png():
                sheet.append(levels_figure(result.canonical_image, result.canonical_hu, result.canonical_labels,
                                           result.levels))
                if sheet[0] is None:
                    return None
                with atomic_path(stage / f"{case_id}_levels.png") as tmp:
                    sheet[0].save(tmp, format="PNG")
                return stage / f"{case_id}_levels.png"

            optional(f"{case_id}_levels.png", "levels figure", levels_png)
        dicom_notes = []
        if dicom_sources:
            from .. import __version__
            from .dicom_context import DicomContext
            from .dicom_export import write_dicom_pair

            try:
                context = DicomContext(
                    model_name=result.model_info.get("name", "AdiposeSeg"),
                    model_version=result.model_info.get("version", ""), software_version=__version__,
                    run=(extra or {}).get("run") or {}, slice_range=tuple(result.slice_range),
                    slice_count=axial_count(result.labels),
                    quality={**result.quality, **((extra or {}).get("quality") or {})}, levels=result.levels,
                    **(dicom_options or {}))
            except ValueError as exc:
                dicom_notes.append(f"no DICOM SEG (nor SR) written: {exc}")
                failures.append({"output": "DICOM SEG", "kind": "failed", "reason": str(exc)})
            else:
                written, more_notes, more_failures = write_dicom_pair(
                    result.labels, dicom_sources, stage, case_id, context, result.statistics.totals,
                    replaces_dir=out if overwrite else None)
                staged.update(written)
                dicom_notes += more_notes
                failures += more_failures
        dicom_notes += [f"no {f['output']} written: {f['reason']}" for f in failures
                        if f["output"] in ("overlay figure", "levels figure")]
        files = OutputFiles(segmentation=out / f"{case_id}.seg.nrrd", statistics=out / f"{case_id}_slices.csv",
                            summary=out / f"{case_id}_summary.json",
                            labelmap=out / f"{case_id}_labels.{labelmap_format}" if labelmap_format else None,
                            **{field: out / f"{case_id}{suffix}" for field, suffix in OPTIONAL_FIELDS.items()
                               if f"{case_id}{suffix}" in staged})
        stats = result.statistics
        summary = {
            "case_id": case_id,
            "status": "done",
            "source": source,
            "model": {"name": model.card.name, "version": model.card.version, "directory": str(model.directory),
                      "network": result.model_info.get("network", "")},
            "device": result.device,
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "size_xyz": list(result.labels.GetSize()),
            "spacing_xyz_mm": list(result.labels.GetSpacing()),
            "slices_processed": list(result.slice_range),
            "totals": stats.totals,
            "l3": stats.l3_row,
            "volumes_L1_L5": stats.volumes_l1_l5,
            "notes": stats.notes + dicom_notes,
            "optional_outputs_failed": failures,
            "timings_s": result.timings,
            "files": files.as_dict(),
        }
        extra = dict(extra or {})
        summary["quality"] = {**result.quality, **extra.pop("quality", {})}
        summary["patient"] = patient or {}
        summary["levels"] = {name: level_report(measures, patient, with_flags=name == "L3")
                             for name, measures in result.levels.items()}
        summary.update(extra)
        try:   # drawn from the summary, so written after it is complete (and before it is saved)
            from .patient_report import write_report

            names = {field: f"{case_id}{OPTIONAL_FIELDS[field]}" for field in ("report", "report_pdf")}
            write_report(stage / names["report"], stage / names["report_pdf"], summary, sheet[0] if sheet else None)
            for field, name in names.items():
                staged[name] = stage / name
                setattr(files, field, out / name)
            summary["files"] = files.as_dict()
        except Exception as exc:   # the report is optional: the measurements are written all the same
            failures.append(_failed("patient report", exc))
            summary["notes"].append(f"no patient report written: {failures[-1]['reason']}")
        try:
            staged[f"{case_id}_summary.json"] = write_summary_json(summary, stage / f"{case_id}_summary.json")
        except OutputError as exc:
            if "disk is full" not in str(exc) or not _drop_optional(staged, stage, case_id, files, summary, failures):
                raise
            staged[f"{case_id}_summary.json"] = write_summary_json(summary, stage / f"{case_id}_summary.json")
        publish(staged, out, marker=f"{case_id}_summary.json", overwrite=overwrite, replaces=result_names(case_id),
                clash_hint="choose another output folder or case id, or --overwrite to replace that case's results")
    return files
