"""The module exports the current, edited segmentation of a DICOM-loaded CT as DICOM SEG + SR through
the engine's writers (issue 21 G), against slicer-core's real MRML scene."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core is part of the test requirements")

from scene_helpers import paint  # noqa: E402
from AdiposeSegLib.errors import AdiposeSegError  # noqa: E402
from AdiposeSegLib.reading.dicom import seg_sources  # noqa: E402
from AdiposeSegLib.reading.image_io import read_ct  # noqa: E402
from AdiposeSegLib.reporting.dicom_seg import COPIED_TYPE2  # noqa: E402
from AdiposeSegLib.scene import volume_node_from_image  # noqa: E402
from AdiposeSegLib.scene.dicom_export import DICOM_UIDS_ATTRIBUTE, dicom_source_files  # noqa: E402


def test_export_of_an_edited_segmentation_is_valid_and_holds_the_edit(logic, scene, deidentified_dicom, tmp_path):
    series = deidentified_dicom(COPIED_TYPE2)
    info: dict = {}
    image = read_ct(str(series), info=info)
    node = volume_node_from_image(scene, image, "ct")
    files = info["volume_files"]
    by_uid = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in files}
    node.SetAttribute(DICOM_UIDS_ATTRIBUTE, " ".join(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
                                                      for f in files))
    sources = dicom_source_files(node, by_uid.get)
    assert sources == files
    seg_node, _ = logic.processVolume(node)
    labels, _ = logic.labelsFromSegmentation(seg_node, node)
    edited = labels.copy()
    edited[10] = 0
    edited[10, 100:140, 200:260] = 3   # the reviewer repaints slice 10: a 40 x 60 block of muscle
    paint(scene, logic, seg_node, node, edited)
    out = logic.exportDicom(node, seg_node, sources, tmp_path / "export", caseId="ct", contentCreator="Doe^Jane")
    assert out["failures"] == []
    seg_path, sr_path = Path(out["files"]["ct_seg.dcm"]), Path(out["files"]["ct_sr.dcm"])
    for path in (seg_path, sr_path):
        done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        assert [l for l in (done.stdout + done.stderr).splitlines() if l.startswith("Error")] == []
    # dcmqi turns the SEG back into the edited labels
    converter = Path(sys.executable).parent / "segimage2itkimage"
    (tmp_path / "back").mkdir()
    subprocess.run([str(converter), "--inputDICOM", str(seg_path), "--outputDirectory", str(tmp_path / "back"),
                    "--outputType", "nrrd", "--mergeSegments"], check=True, capture_output=True)
    back = sitk.ReadImage(str(next((tmp_path / "back").glob("*.nrrd"))))
    ours = sitk.GetImageFromArray(edited)
    ours.CopyInformation(image)
    resampled = sitk.Resample(back, ours, sitk.Transform(), sitk.sitkNearestNeighbor, 0, back.GetPixelID())
    assert np.array_equal(sitk.GetArrayViewFromImage(resampled), edited)
    seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    assert str(seg.ContentCreatorName) == "Doe^Jane"
    # a second export without replacing is refused; the first stays
    with pytest.raises(Exception):
        logic.exportDicom(node, seg_node, sources, tmp_path / "export", caseId="ct")
    assert pydicom.dcmread(seg_path, stop_before_pixels=True).SOPInstanceUID == seg.SOPInstanceUID
    again = logic.exportDicom(node, seg_node, sources, tmp_path / "export", caseId="ct", overwrite=True)
    sr = pydicom.dcmread(again["files"]["ct_sr.dcm"])
    assert "PredecessorDocumentsSequence" in sr
    # the browser app passes the reader's headers instead of the files: the same SEG, no header re-read
    headers = seg_sources(info, None)
    assert [h.path for h in headers] == files
    light = logic.exportDicom(node, seg_node, headers, tmp_path / "light", caseId="ct")
    assert light["failures"] == []
    light_seg, full_seg = pydicom.dcmread(light["files"]["ct_seg.dcm"]), pydicom.dcmread(again["files"]["ct_seg.dcm"])
    assert light_seg.PixelData == full_seg.PixelData and light_seg.NumberOfFrames == full_seg.NumberOfFrames
    assert _frames(light_seg) == _frames(full_seg)


def _frames(seg) -> list:
    """Each frame's source image and position."""
    return [(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID,
             f.PlanePositionSequence[0].ImagePositionPatient) for f in seg.PerFrameFunctionalGroupsSequence]


def test_export_refuses_a_volume_not_loaded_from_dicom(logic, scene, example_ct_sm, tmp_path):
    ct_node = volume_node_from_image(scene, read_ct(example_ct_sm), "example_ct_sm")
    seg_node, _ = logic.processVolume(ct_node)
    with pytest.raises(AdiposeSegError, match="not loaded from DICOM"):
        logic.exportDicom(ct_node, seg_node, dicom_source_files(ct_node, lambda uid: ""), tmp_path)
    assert not any(tmp_path.iterdir())
