"""Dice and volume differences checked against hand-computed values."""
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from AdiposeSegLib.measuring.evaluate import compare, compare_arrays, dice
from AdiposeSegLib.reporting.writers import write_labelmap, write_segmentation


def test_dice_by_hand():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :3] = True          # 3 voxels
    b[0, 1:] = True          # 3 voxels, 2 shared
    assert dice(a, b) == pytest.approx(2 * 2 / (3 + 3))
    assert dice(a, np.zeros_like(a)) == 0.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0


def _pair():
    ref = np.zeros((2, 6, 6), np.uint8)
    pred = np.zeros_like(ref)
    ref[0, :2, :2] = 1       # SAT: 4 voxels
    pred[0, :2, :3] = 1      # 6 voxels, 4 shared -> 8/10
    ref[1, 3:, 3:] = 3       # Muscle: 9 voxels
    pred[1, 3:, 4:] = 3      # 6 voxels, 6 shared -> 12/15
    pred[1, 0, 0] = 2        # VAT only in pred -> 0
    return pred, ref


def test_compare_arrays_by_hand():
    pred, ref = _pair()
    d = compare_arrays(pred, ref)
    assert d == {"SAT": pytest.approx(0.8), "VAT": 0.0, "Muscle": pytest.approx(0.8), "IMAT": 1.0}


def _image(a, spacing=(2.0, 2.0, 5.0)):
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(spacing)
    img.SetOrigin((10.0, -20.0, 30.0))
    return img


def test_compare_handles_other_orientation_and_volumes():
    pred, ref = _pair()
    ref_img = _image(ref)
    flipped = sitk.Flip(_image(pred), (True, True, False))   # same physical labels, other voxel order
    assert flipped.GetDirection() != ref_img.GetDirection()
    r = compare(flipped, ref_img)
    assert r["SAT"]["dice"] == pytest.approx(0.8)
    assert r["Muscle"]["dice"] == pytest.approx(0.8)
    assert r["SAT"]["ref_cm3"] == pytest.approx(4 * 20 / 1000)
    assert r["SAT"]["volume_diff_pct"] == pytest.approx(50.0)
    assert r["Muscle"]["volume_diff_pct"] == pytest.approx(-100 / 3)


def test_cli_evaluate_on_seg_nrrd_and_labelmap(tmp_path):
    pred, ref = _pair()
    write_segmentation(_image(pred), tmp_path / "pred.seg.nrrd")
    write_labelmap(_image(ref), tmp_path / "ref.nii.gz")
    out = subprocess.run([sys.executable, "-m", "AdiposeSegLib", "evaluate", str(tmp_path / "pred.seg.nrrd"),
                          str(tmp_path / "ref.nii.gz"), "--json"], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    assert r["SAT"]["dice"] == pytest.approx(0.8) and r["VAT"]["dice"] == 0.0


def test_reference_held_to_the_hu_definitions():
    """A reference drawn without HU windows (TotalSegmentator's) is held to the project's definitions
    before scoring: muscle outside -29..150 HU is not muscle (fat-range: IMAT), fat labels only on fat."""
    from AdiposeSegLib.measuring.evaluate import gate_labels
    from AdiposeSegLib.tissues import HUWindows

    labels = np.array([[[1, 1, 2, 2, 3, 3, 3, 3, 4, 4]]], np.uint8)
    hu = np.array([[[-100, 20, -50, 300, 40, -60, 200, -500, -80, 10]]], np.float32)
    assert gate_labels(labels, hu, HUWindows()).tolist() == [[[1, 0, 2, 0, 3, 4, 0, 0, 4, 3]]]
