"""The DICOM SEG + SR of one result, for the CLI, batch and the Slicer module alike.

Optional outputs: whatever goes wrong here (a header, highdicom, the disk) is returned as a note
and a failure record, never raised, so the measurements are always published.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..reading.orientation import axial_axis, input_axial_index
from .dicom_context import DicomContext


def analysed_files(labels: sitk.Image, slice_range: tuple[int, int]) -> list[int]:
    """Indices of the source files (slice k of the volume = file k) the analysed canonical slices lie
    on; every file when the volume's own slice axis is not the axial one (a sagittal series)."""
    count = labels.GetSize()[2]
    if axial_axis(labels)[0] != 2:
        return list(range(count))
    return sorted(input_axial_index(labels, k) for k in range(*slice_range))


def previous_sr(path: Path, study_uid: str):
    """The SR a re-run replaces (same study), for its Predecessor Documents Sequence; None if none."""
    if not path.is_file():
        return None
    try:
        import pydicom

        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        return ds if str(ds.get("StudyInstanceUID", "")) == study_uid else None
    except Exception:   # an unreadable earlier file is simply not referenced
        return None


def write_dicom_pair(labels: sitk.Image, source_files: list, stage: Path, case_id: str, context: DicomContext,
                     totals: dict, replaces_dir: Path | None = None) -> tuple[dict, list[str], list[dict]]:
    """Write `<case>_seg.dcm` and `<case>_sr.dcm` into `stage`. Returns (staged files by name, notes,
    failures [{"output", "reason"}])."""
    from .dicom_seg import SegNotWritten, read_sources, write_dicom_seg
    from .dicom_sr import write_dicom_sr

    staged: dict = {}
    notes: list[str] = []
    failures: list[dict] = []
    seg_name, sr_name = f"{case_id}_seg.dcm", f"{case_id}_sr.dcm"
    with warnings.catch_warnings():
        # highdicom warns about the source's own header values (e.g. a one-part PatientName)
        warnings.filterwarnings("ignore", category=UserWarning, module="highdicom")
        try:
            indices = analysed_files(labels, context.slice_range)
            if len(source_files) != labels.GetSize()[2]:
                raise SegNotWritten(f"{len(source_files)} source files for {labels.GetSize()[2]} slices")
            sources = read_sources([source_files[i] for i in indices])
            staged[seg_name], seg, labelled = write_dicom_seg(_slices(labels, indices), sources, stage / seg_name, context)
        except Exception as exc:   # an optional output: said, never fatal
            reason = _reason(exc)
            notes.append(f"no DICOM SEG (nor SR) written: {reason}")
            # "cannot": this input cannot honestly have one (e.g. anonymised UIDs); "failed": something broke
            kind = "cannot" if isinstance(exc, SegNotWritten) else "failed"
            failures += [{"output": "DICOM SEG", "kind": kind, "reason": reason},
                         {"output": "DICOM SR", "kind": kind, "reason": "needs the DICOM SEG"}]
            if kind == "failed":
                failures[0]["error"] = exc.__class__.__name__
            return staged, notes, failures
        try:
            if replaces_dir is not None and context.predecessor is None:
                context.predecessor = previous_sr(replaces_dir / sr_name, str(sources[0].StudyInstanceUID))
            by_slice = dict(zip(indices, sources))
            staged[sr_name], sr_notes = write_dicom_sr(seg, labelled, sources, by_slice, totals, context, stage / sr_name)
            notes += sr_notes
            if context.predecessor is not None:
                notes.append(f"the DICOM SR replaces the earlier one ({context.predecessor.SOPInstanceUID}), "
                             "named in its Predecessor Documents Sequence")
        except Exception as exc:
            staged.pop(sr_name, None)
            reason = _reason(exc)
            notes.append(f"no DICOM SR written: {reason}")
            failures.append({"output": "DICOM SR", "kind": "failed", "reason": reason, "error": exc.__class__.__name__})
    return staged, notes, failures


def _slices(labels: sitk.Image, indices: list[int]) -> np.ndarray:
    """The label slices on those files: a view where they are a run (a whole scan: no copy), else a copy."""
    array = sitk.GetArrayViewFromImage(labels)
    step = indices[1] - indices[0] if len(indices) > 1 else 1
    if indices and abs(step) == 1 and list(indices) == list(range(indices[0], indices[-1] + step, step)):
        return array[indices[0]::step][:len(indices)]
    return array[indices]


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text if len(text) < 300 else text[:297] + "..."
