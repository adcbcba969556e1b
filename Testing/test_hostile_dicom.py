"""Hostile but real DICOM exports, built from the real CT series in ../shared/data/real-ct (issue 9, A B 7).

Each case reproduces an input that gave wrong numbers silently before: now it is read correctly
(with a note) or refused with the cause.
"""
import math
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from AdiposeSegLib.reading.discover import find_inputs
from AdiposeSegLib.errors import InputReadError
from AdiposeSegLib.reading.image_io import read_ct


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _positions(folder):
    return sorted(float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in folder.iterdir())


def test_the_plain_copy_reads_like_the_original(plain_series, dicom_j2k):
    a, b = read_ct(plain_series), read_ct(dicom_j2k)
    assert a.GetSpacing() == pytest.approx(b.GetSpacing()) and a.GetOrigin() == pytest.approx(b.GetOrigin())
    assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))


def test_exact_duplicate_slice_is_kept_once(plain_series, tmp_path):
    folder = _copy(plain_series, tmp_path / "s")
    ds = pydicom.dcmread(folder / "007.dcm")
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(folder / "007_copy.dcm", enforce_file_format=True)
    info = {}
    image = read_ct(folder, info=info)
    assert image.GetSize()[2] == 20 and image.GetSpacing()[2] == pytest.approx(2.0)
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(read_ct(plain_series)))
    assert info["quality"]["duplicates_removed"] == 1 and any("kept once" in n for n in info["notes"])


def test_different_image_at_the_same_position_is_refused(plain_series, tmp_path):
    folder = _copy(plain_series, tmp_path / "s")
    ds = pydicom.dcmread(folder / "007.dcm")
    ds.SOPInstanceUID = generate_uid()
    pixels = ds.pixel_array.copy()
    pixels[100:120, 100:120] += 50
    ds.PixelData = pixels.tobytes()
    ds.save_as(folder / "007_other.dcm", enforce_file_format=True)
    with pytest.raises(InputReadError, match="two different images at the same position"):
        read_ct(folder)


def test_localizer_in_the_series_is_set_aside(plain_series, tmp_path):
    folder = _copy(plain_series, tmp_path / "s")
    ds = pydicom.dcmread(folder / "000.dcm")
    ds.SOPInstanceUID = generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.ImagePositionPatient = [-250, 0, -780]
    ds.save_as(folder / "scout.dcm", enforce_file_format=True)
    info = {}
    image = read_ct(folder, info=info)
    reference = read_ct(plain_series)
    assert image.GetSpacing() == pytest.approx(reference.GetSpacing())  # was 24 mm spacing with the scout in the stack
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(reference))
    assert info["quality"]["set_aside_files"] == 1 and any("scout.dcm" in n for n in info["notes"])


def test_missing_slice_is_refused_not_made_up(plain_series, tmp_path):
    folder = _copy(plain_series, tmp_path / "s")
    (folder / "010.dcm").unlink()
    with pytest.raises(InputReadError, match="not evenly spaced: 4.00 mm"):
        read_ct(folder)


def test_mixed_spacing_is_refused(plain_series, tmp_path):
    folder = _copy(plain_series, tmp_path / "s")
    for k in range(10, 20):
        ds = pydicom.dcmread(folder / f"{k:03d}.dcm")
        ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + (k - 9) * 1.0  # 3 mm steps from slice 10 on
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    with pytest.raises(InputReadError, match="uneven step"):
        read_ct(folder)


def test_gantry_tilt_is_resampled_onto_a_true_grid(plain_series, tmp_path):
    folder = _copy(plain_series, tmp_path / "s")
    tilt = math.radians(20)
    for k in range(20):
        ds = pydicom.dcmread(folder / f"{k:03d}.dcm")
        ds.ImagePositionPatient[1] = float(ds.ImagePositionPatient[1]) + k * 2.0 * math.tan(tilt)
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    info = {}
    image = read_ct(folder, info=info)
    assert image.GetSpacing()[2] == pytest.approx(2.0)  # the distance between the planes, not the 2.13 mm stack step
    assert info["quality"]["gantry_tilt_deg"] == pytest.approx(20.0, abs=0.05) and info["quality"]["resampled"]
    original = sitk.GetArrayFromImage(read_ct(plain_series)).astype(np.float32)
    resampled = sitk.GetArrayFromImage(image)
    from scipy import ndimage

    # each slice's anatomy lies where its own ImagePositionPatient says: on the common grid (the first
    # slice's rows) slice k moves by its y offset from the first slice, in rows
    headers = sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in folder.iterdir()),
                     key=lambda ds: float(ds.ImagePositionPatient[2]))
    y = [float(ds.ImagePositionPatient[1]) for ds in headers]
    for k in (5, 19):
        expected = ndimage.shift(original[k], ((y[k] - y[0]) / image.GetSpacing()[1], 0), order=1, cval=-1024)
        assert abs(y[k] - y[0]) > 3.0
        assert np.abs(resampled[k] - expected)[40:-40].mean() < 1.0


def test_truncated_jpeg2000_slice_is_refused_not_dropped(dicom_j2k, tmp_path):
    folder = _copy(dicom_j2k, tmp_path / "s")
    victim = sorted(folder.iterdir())[4]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputReadError, match=f"{victim.name[:20]}.*(truncated|does not decode)"):
        read_ct(folder)


def test_axial_series_chosen_over_a_larger_coronal_reformat(plain_series, tmp_path):
    folder = _copy(plain_series, tmp_path / "study")
    coronal_uid = generate_uid()
    base = pydicom.dcmread(folder / "000.dcm")
    for k in range(40):  # a reformat with more files than the axial series
        ds = base.copy()
        ds.SeriesInstanceUID, ds.SOPInstanceUID = coronal_uid, generate_uid()
        ds.SeriesDescription = "COR MPR"
        ds.ImageType = ["DERIVED", "SECONDARY", "REFORMATTED"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.ImagePositionPatient = [-250, -400 + 5 * k, -760]
        ds.save_as(folder / f"cor{k:03d}.dcm", enforce_file_format=True)
    info = {}
    image = read_ct(folder, info=info)
    assert image.GetSize()[2] == 20 and info["series"]["plane"] == "axial"
    assert info["other_series"][0]["description"] == "COR MPR" and info["other_series"][0]["files"] == 40


def test_nested_layouts_no_preamble_and_macos_files_are_found(plain_series, tmp_path):
    root = tmp_path / "cohort"
    _copy(plain_series, root / "patient1" / "study" / "series")
    _copy(plain_series, root / "DICOM" / "ST000" / "SE000")
    bare = root / "patient3" / "CT"
    bare.mkdir(parents=True)
    for path in sorted(plain_series.iterdir()):
        ds = pydicom.dcmread(path)
        ds.preamble = None
        ds.save_as(bare / path.stem, enforce_file_format=False)  # no preamble, no .dcm name
        (bare / f"._{path.stem}").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    assert not (bare / "000").read_bytes()[128:132] == b"DICM"
    found = find_inputs(root)
    assert [p.split("cohort/")[1] for p in found] == ["DICOM/ST000/SE000", "patient1/study/series", "patient3/CT"]
    image = read_ct(bare)
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(read_ct(plain_series)))


def test_orientation_jitter_does_not_split_a_series(plain_series, tmp_path):
    folder = _copy(plain_series, tmp_path / "s")
    for k in range(0, 20, 2):  # cosines written as 0.0004999 / 0.0005001 by alternate slices
        ds = pydicom.dcmread(folder / f"{k:03d}.dcm")
        ds.ImageOrientationPatient = [1, 0.0005001, 0, 0, 1, 0]
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    for k in range(1, 20, 2):
        ds = pydicom.dcmread(folder / f"{k:03d}.dcm")
        ds.ImageOrientationPatient = [1, 0.0004999, 0, 0, 1, 0]
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    info = {}
    assert read_ct(folder, info=info).GetSize()[2] == 20
    assert "set_aside_files" not in info["quality"]
