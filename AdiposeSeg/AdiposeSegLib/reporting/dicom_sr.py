"""DICOM SR (TID 1500 Measurement Report) for PACS: the L3 measurements and the tissue volumes,
each group referring to its segment in the DICOM SEG written beside it.

Per tissue at L3 (when the level was measured): area (cm2) and mean attenuation (HU), finding site
L3 vertebra, referencing the SEG frame of that tissue on the L3 slice. Per tissue over the scan:
volume (cm3) and mean attenuation, referencing the whole segment. Written with highdicom's
Comprehensive3DSR; the SEG and the source CT images are its evidence.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from ..tissues import LABELS, NAMES, TERMINOLOGY
from .safe_write import atomic_path


def _frame_of(seg, segment_number: int, source_uid: str) -> int | None:
    """The SEG frame (1-based) holding a segment on one source image; None when that frame is empty."""
    for number, frame in enumerate(seg.PerFrameFunctionalGroupsSequence, start=1):
        if frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber != segment_number:
            continue
        sources = frame.DerivationImageSequence[0].SourceImageSequence
        if any(item.ReferencedSOPInstanceUID == source_uid for item in sources):
            return number
    return None


def write_dicom_sr(seg, sources: list, levels: dict, totals: dict, model_info: dict, software_version: str,
                   out_path: str | os.PathLike) -> tuple[Path, list[str]]:
    """seg: the DICOM SEG written for `sources` (the source CT headers; `sources[k]` is slice k of the
    input's own slice order, the levels' `input_slice`). Returns the path and notes (what was left
    out and why)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.sr.AlgorithmIdentification(name=model_info.get("name", "AdiposeSeg"),
                                              version=model_info.get("version", "") or "0")
    hu = hd.sr.CodedConcept("[hnsf'U]", "UCUM", "Hounsfield unit")
    notes: list[str] = []
    groups = []
    l3 = levels.get("L3") or {}
    if "SMA_cm2" in l3:
        source_uid = sources[int(l3["input_slice"])].SOPInstanceUID
        site = hd.sr.FindingSite(anatomic_location=codes.SCT.L3Vertebra)
        areas = {"SAT": l3["SAT_cm2"], "VAT": l3["VAT_cm2"], "Muscle": l3["SMA_cm2"], "IMAT": l3["IMAT_cm2"]}
        for label in LABELS:
            frame = _frame_of(seg, label, source_uid)
            if frame is None:
                notes.append(f"{NAMES[label]} is empty on the L3 slice: no L3 group for it in the DICOM SR")
                continue
            measurements = [hd.sr.Measurement(name=codes.SCT.Area, value=float(areas[NAMES[label]]),
                                              unit=codes.UCUM.SquareCentimeter, algorithm_id=algorithm)]
            if NAMES[label] == "Muscle" and not math.isnan(l3.get("SMD_HU", float("nan"))):
                measurements.append(hd.sr.Measurement(name=codes.DCM.AttenuationCoefficient, value=float(l3["SMD_HU"]),
                                                      unit=hu, derivation=codes.SCT.Mean, algorithm_id=algorithm))
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{NAMES[label]} at L3"),
                referenced_segment=hd.sr.ReferencedSegmentationFrame.from_segmentation(
                    seg, frame_number=frame, segment_number=label),
                finding_type=_code(TERMINOLOGY[label][1]), finding_sites=[site], algorithm_id=algorithm,
                measurements=measurements))
    else:
        notes.append("no measured L3: the DICOM SR holds the volumes only")
    present = {int(item.SegmentNumber) for item in seg.SegmentSequence}
    for label in LABELS:
        name = NAMES[label]
        if label not in present or not totals.get(f"{name}_volume_cm3"):
            continue
        measurements = [hd.sr.Measurement(name=codes.SCT.Volume, value=float(totals[f"{name}_volume_cm3"]),
                                          unit=codes.UCUM.CubicCentimeter, algorithm_id=algorithm)]
        mean = totals.get(f"{name}_mean_HU")
        if mean is not None and not math.isnan(mean):
            measurements.append(hd.sr.Measurement(name=codes.DCM.AttenuationCoefficient, value=float(mean), unit=hu,
                                                  derivation=codes.SCT.Mean, algorithm_id=algorithm))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{name} volume"),
            referenced_segment=hd.sr.ReferencedSegment.from_segmentation(seg, segment_number=label),
            finding_type=_code(TERMINOLOGY[label][1]), algorithm_id=algorithm, measurements=measurements))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="AdiposeSeg", manufacturer_name="AdiposeSeg",
            model_name=model_info.get("name", "AdiposeSeg")))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion, imaging_measurements=groups)
    sr = hd.sr.Comprehensive3DSR(
        evidence=sources + [seg], content=report, series_instance_uid=hd.UID(), series_number=9902,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="AdiposeSeg", is_complete=True,
        series_description="AdiposeSeg body composition", software_versions=software_version)
    with atomic_path(out_path) as tmp:
        sr.save_as(str(tmp))
    return Path(out_path), notes


def _code(pair):
    import highdicom as hd

    value, meaning = pair
    return hd.sr.CodedConcept(value, "SCT", meaning)
