"""Volumes that are not what they claim: NaN, HU offsets, a wrong spacing unit, a cut-off field of view (issue 9, C F).

Built from the real CT in ../shared/data/real-ct; each one gave a wrong number with exit 0 before.
"""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from AdiposeSegLib.running.cli import main
from AdiposeSegLib.errors import NotCTError
from AdiposeSegLib.reading.image_io import read_ct


@pytest.fixture(scope="module")
def slab(example_ct_sm):
    """Five real slices (float32 copy for NaN cases)."""
    return sitk.ReadImage(str(example_ct_sm))[:, :, 12:17]


def _save(image, path):
    sitk.WriteImage(image, str(path))
    return path


def _with(slab, fn, pixel=sitk.sitkFloat32):
    array = sitk.GetArrayFromImage(sitk.Cast(slab, pixel))
    array = fn(array)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(slab)
    return out


def test_one_nan_voxel_inside_is_refused(slab, tmp_path):
    def poke(a):
        a[2, 5, 60] = np.nan  # in the air in front of the body, not at the border
        return a
    path = _save(_with(slab, poke), tmp_path / "nan.nrrd")
    with pytest.raises(NotCTError, match="1 voxel.*NaN or infinite inside the image.*voxel 60,5,2"):
        read_ct(path)


def test_nan_padding_at_the_border_becomes_air_with_a_note(slab, tmp_path):
    def pad(a):
        a[:, :, :6] = np.nan  # outside the reconstruction circle, touching the image border
        return a
    info = {}
    image = read_ct(_save(_with(slab, pad), tmp_path / "pad.nii.gz"), info=info)
    values = sitk.GetArrayViewFromImage(image)
    assert np.isfinite(values).all() and (values[:, :, :6] == -1024).all()
    assert info["quality"]["nan_padding_voxels"] == 5 * 101 * 6
    assert any("set to air" in n for n in info["notes"])


def test_mr_like_values_with_a_nan_are_refused(tmp_path):
    mr = np.random.default_rng(0).uniform(0, 1500, (4, 96, 96)).astype(np.float32)
    mr[0, 0, 0] = np.nan
    with pytest.raises(NotCTError, match="not CT Hounsfield units"):
        read_ct(_save(sitk.GetImageFromArray(mr), tmp_path / "mr.nrrd"))


def test_intercept_applied_twice_is_refused_naming_the_offset(slab, tmp_path):
    path = _save(_with(slab, lambda a: (a - 1024).astype(np.int16), sitk.sitkInt16), tmp_path / "twice.nrrd")
    with pytest.raises(NotCTError, match=r"offset by about -10[0-9][0-9] HU.*applied twice"):
        read_ct(path)


def test_offset_plus_1024_with_padding_is_refused_naming_the_offset(slab, tmp_path):
    def shift(a):
        a = a + 1024
        a[:, :, :8] = -2000  # padding
        return a.astype(np.int16)
    path = _save(_with(slab, shift, sitk.sitkInt16), tmp_path / "plus.nrrd")
    with pytest.raises(NotCTError, match=r"no air near -1000 HU.*offset by about \+"):
        read_ct(path)


def test_pixel_spacing_in_cm_is_refused(slab, tmp_path):
    wrong = sitk.Image(slab)
    wrong.SetSpacing([s / 10 for s in slab.GetSpacing()])
    with pytest.raises(NotCTError, match="only [0-9]+ mm across.*in cm instead of mm"):
        read_ct(_save(wrong, tmp_path / "cm.nrrd"))


def test_real_ct_passes_every_check(example_ct, dicom_j2k, example_ct_sm):
    for path in (example_ct, dicom_j2k, example_ct_sm):
        read_ct(path)


def test_body_cut_off_by_the_field_of_view_is_flagged(example_ct, tiny_model_dir, tmp_path):
    ct = read_ct(example_ct)
    size = ct.GetSize()
    slab = ct[:, :, size[2] // 2 - 3: size[2] // 2 + 3]
    body = sitk.GetArrayViewFromImage(slab)[3] > -500
    cols = np.flatnonzero(body.any(axis=0))
    cropped = slab[int(cols[0]) + 15: int(cols[-1]) - 15, :, :]  # 15 pixels of body cut away on each side
    _save(cropped, tmp_path / "cut.nrrd")
    _save(slab, tmp_path / "whole.nrrd")
    for name in ("cut", "whole"):
        assert main(["segment", str(tmp_path / f"{name}.nrrd"), "-o", str(tmp_path / name), "--model", str(tiny_model_dir),
                     "--device", "cpu", "-q"]) == 0
    cut = json.loads((tmp_path / "cut" / "cut_summary.json").read_text())
    whole = json.loads((tmp_path / "whole" / "whole_summary.json").read_text())
    assert "fov_cutoff" in cut["quality"] and cut["quality"]["fov_cutoff"]["slices"] == 6
    assert any("field of view" in n for n in cut["notes"])
    assert "fov_cutoff" not in whole["quality"]
