"""DICOM SEG + SR on de-identified series (issue 21): written whatever Type 2 attribute the source
lacks, accepted by validators nobody here wrote (dciodvfy from dicom3tools, dcmqi), and never at
the cost of the measurements."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from AdiposeSegLib.reading.image_io import read_ct
from AdiposeSegLib.reporting.dicom_context import DicomContext, check_uid_root, series_numbers
from AdiposeSegLib.reporting.dicom_export import write_dicom_pair
from AdiposeSegLib.reporting.dicom_seg import COPIED_TYPE2
from AdiposeSegLib.running.cli import main
from AdiposeSegLib.tissues import IMAT, LABELS, NAMES, TERMINOLOGY

BIN = Path(sys.executable).parent


def dciodvfy_errors(path: Path) -> list[str]:
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.fail("dciodvfy (Debian dicom3tools) is part of the test requirements: bash scripts/setup.sh installs it")
    done = subprocess.run([tool, str(path)], capture_output=True, text=True)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def tid1500(path: Path, tmp_path: Path) -> list[dict]:
    out = tmp_path / f"{path.stem}.json"
    subprocess.run([str(BIN / "tid1500reader"), "--inputDICOM", str(path), "--outputMetadata", str(out)],
                   check=True, capture_output=True)
    return json.loads(out.read_text())["Measurements"]


def _threshold_labels(image: sitk.Image) -> sitk.Image:
    """Labels by the HU windows alone (SAT for fat, muscle for soft tissue): enough to write from."""
    hu = sitk.GetArrayFromImage(image)
    labels = np.where((hu >= -190) & (hu <= -30), 1, np.where((hu >= -29) & (hu <= 150), 3, 0)).astype(np.uint8)
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(image)
    return out


@pytest.mark.parametrize("removed", [(name,) for name in COPIED_TYPE2] + [COPIED_TYPE2], ids=lambda r: "+".join(r) if len(r) < 3 else "all")
def test_seg_and_sr_written_whatever_type2_attribute_the_source_lacks(removed, deidentified_dicom, tmp_path):
    series = deidentified_dicom(removed)
    info: dict = {}
    image = read_ct(str(series), info=info)
    labels = _threshold_labels(image)
    context = DicomContext("test", "1", "0", slice_range=(0, labels.GetSize()[2]), slice_count=labels.GetSize()[2])
    staged, notes, failures = write_dicom_pair(labels, info["volume_files"], tmp_path, "case", context,
                                               {"SAT_volume_cm3": 1.0, "Muscle_volume_cm3": 1.0})
    assert failures == [], notes
    for name in ("case_seg.dcm", "case_sr.dcm"):
        assert dciodvfy_errors(tmp_path / name) == []
        ds = pydicom.dcmread(tmp_path / name, stop_before_pixels=True)
        for attribute in removed:   # Type 2: present, empty where the source has none
            assert attribute in ds and not str(ds[attribute].value or ""), attribute


def _segment(series, out, model, *extra) -> tuple[int, dict]:
    code = main(["segment", str(series), "-o", str(out), "--model", str(model), "--device", "cpu", "-q",
                 "--case-id", "case", *extra])
    return code, json.loads((out / "case_summary.json").read_text())


def test_deidentified_series_gets_a_valid_seg_and_sr_with_context(deidentified_dicom, default_model, tmp_path):
    """All Type 2 attributes gone, a slice subset, L3 set by hand, no IMAT: the SEG holds only the
    analysed images and the labelled segments; the SR passes dciodvfy, links every L3 group to its
    segment and CT image (dcmqi), carries the context, and reads back with the summary's numbers."""
    hd = pytest.importorskip("highdicom")
    series = deidentified_dicom(COPIED_TYPE2)
    code, summary = _segment(series, tmp_path / "out", default_model.directory, "--slices", "5:15", "--l3", "10", "--no-imat",
                             "--uid-root", "1.2.826.0.1.3680043.10.1234", "--content-creator", "Doe^Jane")
    assert code == 0 and summary["optional_outputs_failed"] == []
    seg_path, sr_path = tmp_path / "out" / "case_seg.dcm", tmp_path / "out" / "case_sr.dcm"
    assert dciodvfy_errors(seg_path) == [] and dciodvfy_errors(sr_path) == []
    seg = hd.seg.segread(str(seg_path))
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [label for label in LABELS if label != IMAT]
    files = sorted(series.iterdir())
    by_uid = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in files}
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    info: dict = {}
    read_ct(str(series), info=info)
    volume_files = [Path(f) for f in info["volume_files"]]
    analysed = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in volume_files[5:15]}
    assert len(referenced) == 10 and referenced <= set(by_uid) and referenced == analysed
    assert seg.SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.1234.")
    assert str(seg.ContentCreatorName) == "Doe^Jane" and seg.SeriesDate and seg.SeriesTime
    sr = hd.sr.srread(str(sr_path))
    assert sr.SeriesNumber != seg.SeriesNumber and sr.SeriesDate
    groups = sr.content.get_volumetric_roi_measurement_groups()
    l3 = summary["levels"]["L3"]
    l3_uid = pydicom.dcmread(volume_files[l3["input_slice"]], stop_before_pixels=True).SOPInstanceUID
    at_l3 = [g for g in groups if g.tracking_identifier.endswith("at L3")]
    expected = {"SAT": l3["SAT_cm2"], "VAT": l3["VAT_cm2"], "Muscle": l3["SMA_cm2"]}
    assert {g.tracking_identifier.split()[0] for g in at_l3} == {k for k, v in expected.items() if v > 0} == set(expected)
    for group in at_l3:
        name = group.tracking_identifier.split()[0]
        segment, *images = [item.ReferencedSOPSequence[0] for item in group.referenced_segment]
        assert segment.ReferencedSOPInstanceUID == seg.SOPInstanceUID and "ReferencedFrameNumber" not in segment
        assert NAMES[int(segment.ReferencedSegmentNumber)] == name
        assert [image.ReferencedSOPInstanceUID for image in images] == [l3_uid]   # the CT image it was measured on
        area = next(m for m in group.get_measurements() if m.name.value == "42798000")
        assert area.value == pytest.approx(expected[name], rel=1e-6)
        parameters = " | ".join(_texts(group[0]))
        assert "analysed: slices 5..14 of 20" in parameters and "set by hand" in parameters
        assert "fat window: -190..-30 HU" in parameters and "IMAT: not labelled" in parameters
        assert "quality arms_in_view" in parameters
    volumes = {g.tracking_identifier.split()[0]: next(m.value for m in g.get_measurements() if m.name.value == "118565006")
               for g in groups if "volume" in g.tracking_identifier}
    assert "IMAT" not in volumes
    for name, value in volumes.items():
        assert value == pytest.approx(summary["totals"][f"{name}_volume_cm3"], rel=1e-6)
    # dcmqi's reader (Slicer's QuantitativeReporting) links every group, the L3 ones included, to its segment
    items = tid1500(sr_path, tmp_path)
    assert {m["TrackingIdentifier"] for m in items if m["TrackingIdentifier"].endswith("at L3")} == {f"{n} at L3" for n in at_l3_names(at_l3)}
    for item in items:
        assert item["segmentationSOPInstanceUID"] == seg.SOPInstanceUID
        assert NAMES[int(item["ReferencedSegment"])] == item["TrackingIdentifier"].split()[0]


def _texts(item) -> list[str]:
    """Every TEXT value below a content item (the algorithm parameters among them)."""
    out = [str(item.TextValue)] if getattr(item, "ValueType", "") == "TEXT" else []
    for child in getattr(item, "ContentSequence", []):
        out += _texts(child)
    return out


def at_l3_names(groups) -> set:
    return {g.tracking_identifier.split()[0] for g in groups}


def test_rerun_refers_to_the_sr_it_replaces_and_gets_new_series_numbers(deidentified_dicom, tiny_model_dir, tmp_path):
    series = deidentified_dicom(COPIED_TYPE2)
    assert _segment(series, tmp_path / "out", tiny_model_dir, "--slices", "8:11")[0] == 0
    first = pydicom.dcmread(tmp_path / "out" / "case_sr.dcm")
    first_seg = pydicom.dcmread(tmp_path / "out" / "case_seg.dcm", stop_before_pixels=True)
    import time
    time.sleep(1.1)   # series numbers count seconds
    assert _segment(series, tmp_path / "out", tiny_model_dir, "--slices", "8:11", "--overwrite")[0] == 0
    second = pydicom.dcmread(tmp_path / "out" / "case_sr.dcm")
    second_seg = pydicom.dcmread(tmp_path / "out" / "case_seg.dcm", stop_before_pixels=True)
    assert second.SOPInstanceUID != first.SOPInstanceUID
    assert second_seg.SeriesNumber > first_seg.SeriesNumber and second.SeriesNumber > first.SeriesNumber
    assert len({first_seg.SeriesNumber, first.SeriesNumber, second_seg.SeriesNumber, second.SeriesNumber}) == 4
    predecessor = second.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert predecessor.ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert dciodvfy_errors(tmp_path / "out" / "case_sr.dcm") == []


def test_a_broken_dicom_output_costs_no_measurement(deidentified_dicom, tiny_model_dir, tmp_path):
    """The CT files vanish between reading and writing (a moved folder): the SEG/SR fail (the SEG copies
    the first file's patient and study modules; the others' UIDs and planes come from the headers read
    before), the measurements, table and figures are published, the notes say why and the exit code is 3."""
    from AdiposeSegLib.model.model_card import load_model
    from AdiposeSegLib.reading.dicom import seg_sources
    from AdiposeSegLib.reporting.results import write_results
    from AdiposeSegLib.running.pipeline import segment_image
    from AdiposeSegLib.running.progress import RunControl
    from AdiposeSegLib.tissues import SegmentOptions

    series = tmp_path / "series"
    shutil.copytree(deidentified_dicom(COPIED_TYPE2), series)
    info: dict = {}
    image = read_ct(str(series), info=info)
    model = load_model(str(tiny_model_dir))
    result = segment_image(image, model, SegmentOptions(device="cpu"), RunControl())
    sources = seg_sources(info, None)
    assert [s.path for s in sources] == info["volume_files"]   # the headers as read, in slice order
    Path(sources[0].path).unlink()
    files = write_results(result, tmp_path / "out", "case", model, dicom_sources=sources)
    summary = json.loads(files.summary.read_text())
    assert files.dicom_seg is None and files.dicom_sr is None
    assert summary["totals"]["SAT_volume_cm3"] == pytest.approx(result.statistics.totals["SAT_volume_cm3"])
    assert (tmp_path / "out" / "case_slices.csv").exists() and (tmp_path / "out" / "case.seg.nrrd").exists()
    failed = {f["output"]: f for f in summary["optional_outputs_failed"]}
    assert failed["DICOM SEG"]["kind"] == "failed" and "FileNotFoundError" == failed["DICOM SEG"]["error"]
    assert any(n.startswith("no DICOM SEG (nor SR) written") for n in summary["notes"])


def test_exit_code_3_when_an_asked_for_seg_cannot_be_made(dicom_j2k, tiny_model_dir, tmp_path):
    """The shared series as published has no UIDs: by default that is a note (exit 0), asked for by
    --dicom-seg it is exit 3; the measurements are there either way."""
    code, summary = _segment(dicom_j2k, tmp_path / "default", tiny_model_dir, "--slices", "8:10")
    assert code == 0 and summary["totals"]["SAT_volume_cm3"] > 0
    code, summary = _segment(dicom_j2k, tmp_path / "asked", tiny_model_dir, "--slices", "8:10", "--dicom-seg")
    assert code == 3 and summary["totals"]["SAT_volume_cm3"] > 0
    assert {f["output"] for f in summary["optional_outputs_failed"]} == {"DICOM SEG", "DICOM SR"}


def test_codes_are_distinct_per_tissue():
    pairs = {(TERMINOLOGY[label][1][0], (TERMINOLOGY[label][2] or ("",))[0]) for label in LABELS}
    assert len(pairs) == len(LABELS)


def test_uid_root_and_series_numbers():
    import datetime

    assert check_uid_root("1.2.3") == "1.2.3."
    for bad in ("1.02.3", "abc", "1..2", "1." * 30):
        with pytest.raises(ValueError):
            check_uid_root(bad)
    now = datetime.datetime(2026, 12, 6, 12, tzinfo=datetime.timezone.utc)
    seg, sr = series_numbers(now)
    later = series_numbers(now + datetime.timedelta(seconds=1))
    assert sr == seg + 1 and later[0] > sr and later[1] < 2 ** 31
