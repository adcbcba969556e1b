"""DICOM SEG and SR for PACS (issue 10 D): read back by highdicom and by dcmqi (what Slicer's DICOM plugins use)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from AdiposeSegLib.running.cli import main
from AdiposeSegLib.tissues import LABELS, NAMES, TERMINOLOGY


def _segment(source, out, model, *extra):
    assert main(["segment", str(source), "-o", str(out), "--model", str(model), "--device", "cpu", "-q", "--labelmap", "nrrd",
                 "--case-id", "case", *extra]) == 0
    return json.loads((out / "case_summary.json").read_text())


def _centroids(image: sitk.Image) -> dict:
    array = sitk.GetArrayViewFromImage(image)
    out = {}
    for label in LABELS:
        idx = np.argwhere(array == label)
        if len(idx):
            k, j, i = idx.mean(axis=0)
            out[label] = np.array(image.TransformContinuousIndexToPhysicalPoint((float(i), float(j), float(k))))
    return out


def test_seg_round_trips_through_highdicom_and_dcmqi(dcmqi_series, tiny_model_dir, tmp_path):
    hd = pytest.importorskip("highdicom")
    _segment(dcmqi_series, tmp_path / "out", tiny_model_dir)
    seg_path = tmp_path / "out" / "case_seg.dcm"
    ours = sitk.ReadImage(str(tmp_path / "out" / "case_labels.nrrd"))
    assert sitk.GetArrayViewFromImage(ours).any()
    seg = hd.seg.segread(str(seg_path))
    assert seg.SegmentationType == "BINARY"
    for label in LABELS:
        description = seg.get_segment_description(label)
        assert description.segment_label == NAMES[label]
        assert description.segmented_property_type.value == TERMINOLOGY[label][1][0]
        modifier = TERMINOLOGY[label][2]
        regions = [r.value for r in description.anatomic_regions]
        assert regions == ([modifier[0]] if modifier else [])
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in dcmqi_series.glob("*.dcm")}
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced == sources
    # dcmqi (as Slicer's DICOM plugins do) turns it back into the same label map, in the same place
    converter = Path(sys.executable).parent / "segimage2itkimage"
    if not converter.exists():
        pytest.fail("dcmqi is part of the test requirements")
    (tmp_path / "dcmqi").mkdir()
    subprocess.run([str(converter), "--inputDICOM", str(seg_path), "--outputDirectory", str(tmp_path / "dcmqi"),
                    "--outputType", "nrrd", "--mergeSegments"], check=True, capture_output=True)
    back = sitk.ReadImage(str(next((tmp_path / "dcmqi").glob("*.nrrd"))))
    resampled = sitk.Resample(back, ours, sitk.Transform(), sitk.sitkNearestNeighbor, 0, back.GetPixelID())
    assert np.array_equal(sitk.GetArrayViewFromImage(resampled), sitk.GetArrayViewFromImage(ours))
    a, b = _centroids(ours), _centroids(back)  # a flip or an offset would move these
    assert a.keys() == b.keys()
    for label in a:
        assert np.linalg.norm(a[label] - b[label]) < 0.5


def test_no_seg_for_anonymised_sources_and_the_summary_says_why(dicom_j2k, tiny_model_dir, tmp_path):
    summary = _segment(dicom_j2k, tmp_path / "out", tiny_model_dir)
    assert not (tmp_path / "out" / "case_seg.dcm").exists()
    assert any("no DICOM SEG" in n and "SOPClassUID" in n for n in summary["notes"])


def test_no_seg_when_not_dicom_or_switched_off(dcmqi_series, example_ct_sm, tiny_model_dir, tmp_path):
    _segment(example_ct_sm, tmp_path / "nifti", tiny_model_dir)
    assert not (tmp_path / "nifti" / "case_seg.dcm").exists()
    _segment(dcmqi_series, tmp_path / "off", tiny_model_dir, "--no-dicom-seg")
    assert not (tmp_path / "off" / "case_seg.dcm").exists()


def test_sr_holds_the_l3_measurements_and_volumes_referring_to_the_seg(dcmqi_series, default_model, tmp_path):
    """TID 1500: per tissue the L3 area (and muscle density) on the SEG frame of the L3 slice, with
    finding site L3 vertebra, and the volumes on the whole segments; highdicom and dcmqi read it."""
    hd = pytest.importorskip("highdicom")
    summary = _segment(dcmqi_series, tmp_path / "out", default_model.directory, "--l3", "1")
    l3 = summary["levels"]["L3"]
    seg = pydicom.dcmread(tmp_path / "out" / "case_seg.dcm")
    sr = hd.sr.srread(str(tmp_path / "out" / "case_sr.dcm"))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"   # Comprehensive 3D SR
    evidence = {sop.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence}
    assert seg.SOPInstanceUID in evidence
    volumetric = sr.content.get_volumetric_roi_measurement_groups()
    assert sr.content.get_planar_roi_measurement_groups() == []   # every group names its segment (TID 1411)
    l3_slice_uid = sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in dcmqi_series.glob("*.dcm")),
                          key=lambda ds: float(ds.ImagePositionPatient[2]))[l3["input_slice"]].SOPInstanceUID
    expected_area = {"SAT": l3["SAT_cm2"], "VAT": l3["VAT_cm2"], "Muscle": l3["SMA_cm2"], "IMAT": l3["IMAT_cm2"]}
    found = {}
    for group in (g for g in volumetric if g.tracking_identifier.endswith("at L3")):
        name = group.tracking_identifier.split()[0]
        assert "36470004" in [site.value.value for site in group.finding_sites]      # L3 vertebra
        segment, image = [item.ReferencedSOPSequence[0] for item in group.referenced_segment]
        assert segment.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        assert NAMES[int(segment.ReferencedSegmentNumber)] == name
        assert image.ReferencedSOPInstanceUID == l3_slice_uid   # measured on the L3 slice
        area = next(m for m in group.get_measurements() if m.name.value == "42798000")
        found[name] = area.value
    assert found.keys() == {k for k, v in expected_area.items() if v > 0}
    for name, value in found.items():
        assert value == pytest.approx(expected_area[name], rel=1e-6)
    volumes = {g.tracking_identifier.split()[0]: next(m.value for m in g.get_measurements() if m.name.value == "118565006")
               for g in volumetric if "volume" in g.tracking_identifier}
    for name, value in volumes.items():
        assert value == pytest.approx(summary["totals"][f"{name}_volume_cm3"], rel=1e-6)
    # a whole segment is referred to by its source series, one item, not one per source image (for an
    # 807-slice series those items made the SR 735 KB and its writing 4.4 s longer)
    series_uid = pydicom.dcmread(next(dcmqi_series.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID
    for group in (g for g in volumetric if "volume" in g.tracking_identifier):
        segment, series = list(group.referenced_segment)
        assert segment.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == seg.SOPInstanceUID
        assert series.UID == series_uid
    # dcmqi's TID 1500 reader (QuantitativeReporting in Slicer) reads the same numbers
    reader = Path(sys.executable).parent / "tid1500reader"
    subprocess.run([str(reader), "--inputDICOM", str(tmp_path / "out" / "case_sr.dcm"), "--outputMetadata",
                    str(tmp_path / "sr.json")], check=True, capture_output=True)
    items = json.loads((tmp_path / "sr.json").read_text())["Measurements"]
    volume_groups = [m for m in items if "volume" in m["TrackingIdentifier"]]
    assert volume_groups and all(m["SourceSeriesForImageSegmentation"] == series_uid for m in volume_groups)
    muscle = next(m for m in items if m["TrackingIdentifier"] == "Muscle at L3")
    values = {i["quantity"]["CodeMeaning"]: float(i["value"]) for i in muscle["measurementItems"]}
    assert values["Area"] == pytest.approx(l3["SMA_cm2"], rel=1e-9)
    assert values["Attenuation Coefficient"] == pytest.approx(l3["SMD_HU"], rel=1e-9)
