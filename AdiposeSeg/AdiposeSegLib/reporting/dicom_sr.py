"""DICOM SR (TID 1500 Measurement Report) for PACS: the L3 measurements and the tissue volumes,
each group referring to its segment in the DICOM SEG written beside it.

Per tissue at L3 (when the level was measured): area (cm2) and, for muscle, mean attenuation (HU),
finding site L3 vertebra. Per tissue over the analysed slices: volume (cm3) and mean attenuation.
Every group is a TID 1411 volumetric group whose Referenced Segment names its SEG segment: that is
the form dcmqi's tid1500reader (what Slicer's QuantitativeReporting reads) links to a segment. An
L3 group also names the one CT image it was measured on (Source Image for Segmentation): a
"Referenced Segmentation Frame" (TID 1410) would carry both frame and segment numbers in one
reference, which the standard forbids. Algorithm parameters (TID 4019) on every measurement record
the model, the labelling rules, the analysed slices, the quality flags and how L3 was found.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from ..tissues import NAMES, TERMINOLOGY
from .dicom_context import DicomContext, coded
from .safe_write import atomic_path


def write_dicom_sr(seg, labelled: set, sources: list, source_of_input_slice: dict, totals: dict, context: DicomContext,
                   out_path: str | os.PathLike) -> tuple[Path, list[str]]:
    """seg: the DICOM SEG written for `sources` (the analysed CT headers), `labelled` where each segment has
    pixels, as (segment number, source SOP Instance UID) pairs (write_dicom_seg's); source_of_input_slice maps
    an input slice number (the levels' `input_slice`) to its header. Returns the path and notes
    (what was left out and why)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    def algorithm(extra: list[str]):
        return hd.sr.AlgorithmIdentification(name=context.model_name, version=context.model_version or "0",
                                             parameters=context.rule_parameters() + context.quality_parameters() + extra)

    hu = hd.sr.CodedConcept("[hnsf'U]", "UCUM", "Hounsfield unit")
    notes: list[str] = []
    groups = []
    present = {int(item.SegmentNumber) for item in seg.SegmentSequence}
    l3 = context.levels.get("L3") or {}
    ct = source_of_input_slice.get(int(l3["input_slice"])) if "SMA_cm2" in l3 else None
    if ct is not None:
        l3_algorithm = algorithm(context.l3_parameters())
        areas = {"SAT": l3["SAT_cm2"], "VAT": l3["VAT_cm2"], "Muscle": l3["SMA_cm2"], "IMAT": l3["IMAT_cm2"]}
        for label in context.labels:
            if label not in present or (label, str(ct.SOPInstanceUID)) not in labelled:
                notes.append(f"{NAMES[label]} is empty on the L3 slice: no L3 group for it in the DICOM SR")
                continue
            measurements = [hd.sr.Measurement(name=codes.SCT.Area, value=float(areas[NAMES[label]]),
                                              unit=codes.UCUM.SquareCentimeter, algorithm_id=l3_algorithm)]
            if NAMES[label] == "Muscle" and not math.isnan(l3.get("SMD_HU", float("nan"))):
                measurements.append(hd.sr.Measurement(name=codes.DCM.AttenuationCoefficient, value=float(l3["SMD_HU"]),
                                                      unit=hu, derivation=codes.SCT.Mean, algorithm_id=l3_algorithm))
            segment = hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=label,
                source_images=[hd.sr.SourceImageForSegmentation(ct.SOPClassUID, ct.SOPInstanceUID)])
            groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=context.uid(), identifier=f"{NAMES[label]} at L3"),
                referenced_segment=segment, finding_type=coded(TERMINOLOGY[label][1]),
                finding_sites=_sites(label, codes.SCT.L3Vertebra), algorithm_id=l3_algorithm,
                measurements=measurements))
    elif "SMA_cm2" in l3:
        notes.append("the L3 slice lies outside the analysed slices: the DICOM SR holds the volumes only")
    else:
        notes.append("no measured L3: the DICOM SR holds the volumes only")
    volume_algorithm = algorithm([])
    series_uid = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
    for label in context.labels:
        name = NAMES[label]
        if label not in present or not totals.get(f"{name}_volume_cm3"):
            continue
        measurements = [hd.sr.Measurement(name=codes.SCT.Volume, value=float(totals[f"{name}_volume_cm3"]),
                                          unit=codes.UCUM.CubicCentimeter, algorithm_id=volume_algorithm)]
        mean = totals.get(f"{name}_mean_HU")
        if mean is not None and not math.isnan(mean):
            measurements.append(hd.sr.Measurement(name=codes.DCM.AttenuationCoefficient, value=float(mean), unit=hu,
                                                  derivation=codes.SCT.Mean, algorithm_id=volume_algorithm))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=context.uid(),
                                                         identifier=f"{name} volume, {context.slices_text()}"[:64]),
            # the whole segment, by its source series (TID 1411 allows it): one reference, where listing each
            # source image (from_segmentation) made thousands of content items for a long series
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=label,
                source_series=hd.sr.SourceSeriesForSegmentation(series_uid)),
            finding_type=coded(TERMINOLOGY[label][1]), finding_sites=_sites(label), algorithm_id=volume_algorithm,
            measurements=measurements))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=context.uid(), name="AdiposeSeg", manufacturer_name="AdiposeSeg", model_name=context.model_name))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion, imaging_measurements=groups)
    sr = hd.sr.Comprehensive3DSR(
        evidence=sources + [seg], content=report, series_instance_uid=context.uid(),
        series_number=context.sr_series_number, sop_instance_uid=context.uid(), instance_number=1,
        manufacturer="AdiposeSeg", is_complete=True, series_description=context.series_description("SR"),
        software_versions=context.software_version,
        previous_versions=[context.predecessor] if context.predecessor is not None else None,
        series_date=context.now.date(), series_time=context.now.time(),
        content_date=context.now.date(), content_time=context.now.time())
    with atomic_path(out_path) as tmp:
        sr.save_as(str(tmp))
    return Path(out_path), notes


def _sites(label: int, *more):
    """Finding sites: where the tissue lies (VAT, IMAT: the type modifier of tissues.TERMINOLOGY) and
    the level it was measured at."""
    import highdicom as hd

    region = TERMINOLOGY[label][2]
    return [hd.sr.FindingSite(anatomic_location=code) for code in ([coded(region)] if region else []) + list(more)]
