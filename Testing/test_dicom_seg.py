"""DICOM SEG for PACS (issue 10 D, first part): read back by highdicom and by dcmqi (what Slicer's DICOM plugins use)."""
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
    assert any("no DICOM SEG written" in n and "SOPClassUID" in n for n in summary["notes"])


def test_no_seg_when_not_dicom_or_switched_off(dcmqi_series, example_ct_sm, tiny_model_dir, tmp_path):
    _segment(example_ct_sm, tmp_path / "nifti", tiny_model_dir)
    assert not (tmp_path / "nifti" / "case_seg.dcm").exists()
    _segment(dcmqi_series, tmp_path / "off", tiny_model_dir, "--no-dicom-seg")
    assert not (tmp_path / "off" / "case_seg.dcm").exists()
