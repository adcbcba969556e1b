"""DICOM SEG and SR for PACS (issue 10 D): read back by highdicom and by dcmqi (what Slicer's DICOM plugins use)."""
import copy
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


# The SEG's frames encoded straight to bytes (reporting/seg_frames.py) against highdicom's own full construction

_VOLATILE = {"SOPInstanceUID", "SeriesInstanceUID", "MediaStorageSOPInstanceUID", "DimensionOrganizationUID",
             "ContentDate", "ContentTime", "SeriesDate", "SeriesTime", "InstanceCreationDate", "InstanceCreationTime",
             "ContributionDateTime"}


def _as_tree(ds):
    out = {}
    for element in ds:
        if element.keyword in _VOLATILE:
            continue
        if element.VR == "SQ":
            out[element.keyword or str(element.tag)] = [_as_tree(item) for item in element.value]
        else:
            out[element.keyword or str(element.tag)] = (element.VR, element.value)
    return out


def _both_ways(tmp_path, monkeypatch, array, sources, reference_sources=None, labels=LABELS):
    """The SEG as written, and as highdicom makes it whole (from full headers), read back as trees."""
    from AdiposeSegLib.reporting import dicom_seg
    from AdiposeSegLib.reporting.dicom_context import DicomContext

    import datetime

    now = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc)

    def context():
        return DicomContext("m", "1", "x", slice_range=(0, len(array)), slice_count=len(array),
                            run={"options": {"include_imat": 4 in labels}}, uid_root="1.2.3", now=now)

    _, _, labelled = dicom_seg.write_dicom_seg(array, sources, tmp_path / "fast.dcm", context())
    with monkeypatch.context() as m:
        m.setattr(dicom_seg, "_frame_plan", lambda *args: None)
        _, _, whole_labelled = dicom_seg.write_dicom_seg(array, reference_sources or sources, tmp_path / "whole.dcm",
                                                       context())
    whole = pydicom.dcmread(str(tmp_path / "whole.dcm"))
    frames = {(int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber),
               str(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID))
              for f in whole.PerFrameFunctionalGroupsSequence}
    assert labelled == whole_labelled == (frames if array.any() else set())   # the SR's "empty at L3" test
    return [_as_tree(pydicom.dcmread(str(tmp_path / "fast.dcm"))), _as_tree(whole)]


def _series(files, count):
    """`count` source headers made from the shared 3-slice series: UIDs and positions continued 1 mm apart."""
    from AdiposeSegLib.reporting.dicom_seg import read_sources

    first = read_sources([str(files[0])])[0]
    out = []
    for k in range(count):
        ds = copy.deepcopy(first)
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{k + 1}"
        ds.ImagePositionPatient = [first.ImagePositionPatient[0], first.ImagePositionPatient[1],
                                   float(first.ImagePositionPatient[2]) - k]
        out.append(ds)
    return out


def _labels(count, rows, cols):
    array = np.zeros((count, rows, cols), np.uint8)
    yy, xx = np.mgrid[:rows, :cols]
    r = np.hypot(yy - rows / 2, xx - cols / 2) / (min(rows, cols) / 2)
    array[:, r < 0.9], array[:, r < 0.75], array[:, r < 0.6], array[:, r < 0.2] = 1, 4, 2, 0
    array[:, (r > 0.4) & (r < 0.45)] = 3
    return array


def test_seg_frames_are_highdicoms_element_for_element(dcmqi_series, tmp_path, monkeypatch):
    from AdiposeSegLib.reporting.dicom_seg import read_sources
    from AdiposeSegLib.reading.dicom_headers import read_header

    files = sorted(dcmqi_series.glob("*.dcm"))
    sources = read_sources([str(f) for f in files])
    array = _labels(3, int(sources[0].Rows), int(sources[0].Columns))
    array[1] = 0                              # an empty plane: left out, the dimension index skips it
    array[2][array[2] == 4] = 0               # IMAT absent on one plane
    cases = {"as read": (array, sources), "head first": (array[::-1], sources[::-1]),
             "nothing labelled": (np.zeros_like(array), sources)}
    for name, (labels, srcs) in cases.items():
        fast, whole = _both_ways(tmp_path, monkeypatch, labels, srcs)
        assert fast == whole, name
    fast, whole = _both_ways(tmp_path, monkeypatch, array, sources, labels=(1, 2, 3))   # --no-imat
    assert fast == whole and [item["SegmentLabel"][1] for item in fast["SegmentSequence"]] == ["SAT", "VAT", "Muscle"]
    # the headers as the reader keeps them (no second read of files 2..n) give the same SEG
    headers = [read_header(str(f)) for f in files]
    fast, whole = _both_ways(tmp_path, monkeypatch, array, read_sources(headers), reference_sources=sources)
    assert fast == whole
    assert int(fast["NumberOfFrames"][1]) == 4 + 3   # 4 segments on plane 0, 3 on plane 2


def test_seg_frames_pack_across_frames_when_a_frame_is_not_whole_bytes(dcmqi_series, tmp_path, monkeypatch):
    """31 x 37 pixels a frame: DICOM's BINARY bit stream runs on across frame boundaries."""
    sources = _series(sorted(dcmqi_series.glob("*.dcm")), 20)
    for ds in sources:
        ds.Rows, ds.Columns = 31, 37
    array = _labels(20, 31, 37)
    array[7] = 0
    fast, whole = _both_ways(tmp_path, monkeypatch, array, sources)
    (_, ours), (_, theirs) = fast.pop("PixelData"), whole.pop("PixelData")
    assert fast == whole
    assert int(fast["NumberOfFrames"][1]) == 4 * 19 and len(ours) == len(theirs) == (4 * 19 * 31 * 37 + 7) // 8 + 1
    # the same bits; the odd length's pad byte is 0x00 as PS3.5 8.1.1 says (highdicom 0.28 pads with "0")
    assert ours[:-1] == theirs[:-1] and ours[-1:] == b"\0"
