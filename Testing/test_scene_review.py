"""What a reader adjusts while reviewing a result, on slicer-core's real MRML (issue 26 E): the
patient's height, weight and sex and the indices they give (kept current through edits), the
one-page report of the result as it is now, how the segments show, window presets, and a table
row moving the slice views."""
import io
import json

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is part of the test requirements")

from PIL import Image  # noqa: E402

from AdiposeSegLib.errors import AdiposeSegError  # noqa: E402
from AdiposeSegLib.reading.image_io import read_ct  # noqa: E402
from AdiposeSegLib.scene import SceneLogic, volume_node_from_image  # noqa: E402
from AdiposeSegLib.tissues import NAMES, SegmentOptions  # noqa: E402
from scene_helpers import paint  # noqa: E402


@pytest.fixture
def reviewed(scene, example_ct):
    """The default model's result on the example CT's slices 60..90 (L3 among them)."""
    logic = SceneLogic(scene, options=SegmentOptions(device="cpu"))
    volume = volume_node_from_image(scene, read_ct(example_ct), "example_ct")
    segmentation, table = logic.processVolume(volume, options=SegmentOptions(device="cpu", slices=(60, 90)))
    return logic, volume, segmentation, table


def _column(table_node, name):
    column = table_node.GetTable().GetColumnByName(name)
    return [column.GetValue(i) for i in range(column.GetNumberOfValues())]


def _erase_muscle(logic, scene, volume, segmentation, input_slice):
    labels, _ = logic.labelsFromSegmentation(segmentation, volume)
    edited = labels.copy()
    edited[input_slice][edited[input_slice] == 3] = 0
    r, c = edited.shape[1] // 2, edited.shape[2] // 2
    edited[input_slice, r - 10:r + 10, c - 25:c + 25] = 3   # 1,000 voxels of muscle instead
    paint(scene, logic, segmentation, volume, edited)


def test_the_patient_gives_the_indices_and_they_follow_an_edit(reviewed, scene):
    logic, volume, segmentation, _ = reviewed
    assert "SMI_cm2_m2" not in logic.levelReports(segmentation)["L3"]          # no height: no index
    stored = logic.setPatient(segmentation, "1.75", 80, "m")
    assert stored["height_m"] == 1.75 and stored["weight_kg"] == 80 and stored["sex"] == "M"
    l3 = logic.levelReports(segmentation)["L3"]
    assert l3["SMI_cm2_m2"] == pytest.approx(l3["SMA_cm2"] / 1.75 ** 2)
    assert l3["BMI_kg_m2"] == pytest.approx(80 / 1.75 ** 2) and set(l3["flags"]) == {"sarcopenia", "myosteatosis",
                                                                                       "visceral_obesity"}
    levels_table = logic.levelsTable(segmentation)
    assert _column(levels_table, "SMI_cm2_m2")[0] == pytest.approx(l3["SMI_cm2_m2"])
    assert levels_table.GetColumnUnitLabel("SMI_cm2_m2") == "cm2/m2"

    with pytest.raises(AdiposeSegError, match=r"is it in cm\? give metres"):
        logic.setPatient(segmentation, 175, 80, "M")                           # cm, not m: refused
    with pytest.raises(AdiposeSegError, match="give M or F"):
        logic.setPatient(segmentation, 1.75, 80, "x")
    assert logic.patient(segmentation)["height_m"] == 1.75                     # the earlier values stay

    # an edit of the L3 slice: SMA and SMI follow it, none stays from before the edit
    _erase_muscle(logic, scene, volume, segmentation, l3["input_slice"])
    logic.updateStatistics(segmentation, volume)
    after = logic.levelReports(segmentation)["L3"]
    pixel_cm2 = np.prod(volume.GetSpacing()[:2]) / 100
    assert after["SMA_cm2"] == pytest.approx(1000 * pixel_cm2, rel=1e-6)
    assert after["SMI_cm2_m2"] == pytest.approx(after["SMA_cm2"] / 1.75 ** 2)
    assert _column(logic.levelsTable(segmentation), "SMI_cm2_m2")[0] == pytest.approx(after["SMI_cm2_m2"])


def test_the_report_is_of_the_result_as_it_is_now(reviewed, scene, tmp_path):
    logic, volume, segmentation, _ = reviewed
    logic.setPatient(segmentation, 1.75, 80, "M")
    summary = logic.reportSummary(volume, segmentation)
    assert summary["case_id"] == "example_ct" and summary["model"]["name"] == "adiposeseg-unet-default"
    assert summary["notes"] == json.loads(segmentation.GetAttribute("AdiposeSeg.Notes")) != []   # the run's notes
    assert summary["totals"]["SAT_volume_cm3"] > 0
    assert summary["levels"]["L3"]["SMI_cm2_m2"] == pytest.approx(summary["levels"]["L3"]["SMA_cm2"] / 1.75 ** 2)
    png, pdf = logic.reportFiles(volume, segmentation)
    page = Image.open(io.BytesIO(png))
    assert page.width == 1400 and pdf.startswith(b"%PDF")

    _erase_muscle(logic, scene, volume, segmentation, summary["levels"]["L3"]["input_slice"])
    logic.updateStatistics(segmentation, volume)
    edited = logic.reportSummary(volume, segmentation)
    assert edited["notes"][0].startswith("the segmentation was edited by hand")
    assert edited["levels"]["L3"]["SMA_cm2"] != pytest.approx(summary["levels"]["L3"]["SMA_cm2"])
    written = logic.saveReport(volume, segmentation, str(tmp_path / "case_report.png"))
    assert written == [str(tmp_path / "case_report.png"), str(tmp_path / "case_report.pdf")]
    assert Image.open(written[0]).width == 1400


def test_the_run_notes_travel_with_the_result(reviewed):
    logic, volume, segmentation, _ = reviewed
    notes = json.loads(segmentation.GetAttribute("AdiposeSeg.Notes"))
    assert any("field of view" in note for note in notes)      # the example CT's flanks touch the edge


def test_how_the_segments_show(reviewed):
    logic, volume, segmentation, _ = reviewed
    shown = logic.segmentDisplay(segmentation)
    assert shown == {"opacity": 0.4, "fill": True, "outline": True, "visible": {n: True for n in NAMES.values()}}
    now = logic.setSegmentDisplay(segmentation, opacity=0.8, fill=False, visible={"SAT": False})
    assert now["opacity"] == 0.8 and now["fill"] is False and now["outline"] is True
    assert now["visible"] == {"SAT": False, "VAT": True, "Muscle": True, "IMAT": True}
    display = segmentation.GetDisplayNode()
    assert display.GetOpacity2DFill() == pytest.approx(0.8) and not display.GetSegmentVisibility("SAT")
    with pytest.raises(AdiposeSegError, match="from 0 to 1"):
        logic.setSegmentDisplay(segmentation, opacity=80)
    with pytest.raises(AdiposeSegError, match="no segment"):
        logic.setSegmentDisplay(segmentation, visible={"Liver": True})
    # a segment recreated at its default opacity (as an editor's undo does) shows as before
    display.SetSegmentOpacity2DFill("VAT", 1.0)
    assert logic.segmentDisplay(segmentation)["opacity"] == 0.8
    logic.processVolume(volume, options=SegmentOptions(device="cpu", slices=(60, 90)), replaceEdited=True)
    assert logic.segmentDisplay(segmentation)["opacity"] == 0.8                 # a re-run keeps the reader's choice


def test_window_presets_and_false_colour(reviewed):
    logic, volume, segmentation, _ = reviewed
    display = volume.GetDisplayNode() or (volume.CreateDefaultDisplayNodes() or volume.GetDisplayNode())
    colour = display.GetColorNodeID()
    logic.setFalseColour(volume, True)
    logic.setWindowPreset(volume, "fat")
    assert (display.GetWindow(), display.GetLevel()) == (300.0, -100.0)
    assert display.GetColorNodeID() == colour and not display.GetAutoWindowLevel()   # false colour turned off
    logic.setWindowPreset(volume, "bone")
    assert display.GetWindow() - display.GetLevel() == 1200.0
    with pytest.raises(AdiposeSegError, match="soft tissue, fat, bone"):
        logic.setWindowPreset(volume, "lung")


def test_a_table_row_moves_the_views_there(reviewed, scene):
    logic, volume, segmentation, table = reviewed
    red = scene.AddNewNodeByClass("vtkMRMLSliceNode", "Red")
    red.SetLayoutName("Red")
    red.SetOrientationToAxial()
    slices, z = _column(table, "slice"), _column(table, "z_mm")
    ras = logic.jumpToSlice(volume, slices[5])
    assert ras[2] == pytest.approx(z[5]) and red.GetSliceToRAS().GetElement(2, 3) == pytest.approx(z[5])
    with pytest.raises(AdiposeSegError, match="not in"):
        logic.jumpToSlice(volume, 10)                                          # not processed: not in the table


@pytest.mark.parametrize("flip", [False, True])
def test_the_cursor_reads_the_slice_and_hu_under_it(scene, example_ct, flip):
    """The slice number is the tables' (from the feet) for a volume stored either way up."""
    import SimpleITK as sitk

    from AdiposeSegLib.reading.orientation import to_canonical

    image = read_ct(example_ct)
    if flip:
        image = sitk.Flip(image, [False, False, True])          # head first on disk, same anatomy
    logic = SceneLogic(scene, options=SegmentOptions(device="cpu"))
    volume = volume_node_from_image(scene, image, "ct")
    canonical = to_canonical(image)
    hu = sitk.GetArrayViewFromImage(canonical)
    k, row, col = 74, 60, 80
    x, y, z = canonical.TransformIndexToPhysicalPoint((col, row, k))
    info = logic.cursorInfo(volume, (-x, -y, z))                  # LPS -> RAS
    assert info["slice"] == k and info["slices"] == hu.shape[0] and info["hu"] == float(hu[k, row, col])
    assert logic.cursorInfo(volume, (-x, -y, z + 10000)) is None
    red = scene.AddNewNodeByClass("vtkMRMLSliceNode", "Red")
    red.SetOrientationToAxial()
    red.JumpSliceByCentering(-x, -y, z)
    assert logic.viewSlices(volume, [red])["Axial"] == {"slice": k, "slices": hu.shape[0]}
