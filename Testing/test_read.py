"""Reading real CT in every supported form, and a clear error for each kind of bad input."""
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from AdiposeSegLib.errors import ImageShapeError, InputReadError, NotCTError
from AdiposeSegLib.reading.image_io import read_ct


def test_jpeg2000_dicom_series_equals_an_independent_pydicom_decoding(dicom_j2k):
    image = read_ct(dicom_j2k)
    # pydicom + pylibjpeg, slope/intercept and ordering by position done here by hand: not the reader under test
    datasets = sorted((pydicom.dcmread(p) for p in dicom_j2k.iterdir()), key=lambda ds: float(ds.ImagePositionPatient[2]))
    expected = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in datasets])
    assert np.array_equal(sitk.GetArrayViewFromImage(image), expected)
    assert image.GetOrigin() == pytest.approx([float(v) for v in datasets[0].ImagePositionPatient])
    assert image.GetSize() == (512, 512, 20)
    assert image.GetSpacing() == pytest.approx((0.9765625, 0.9765625, 2.0))
    a = sitk.GetArrayViewFromImage(image)
    assert a.min() == -1024 and 1000 < a.max() < 3000   # HU after rescale, bone present
    # soft tissue in the middle of the abdomen
    assert -100 < np.median(a[10, 200:300, 200:300]) < 150


def test_single_dicom_file_is_one_slice(dicom_j2k):
    first = sorted(dicom_j2k.iterdir())[0]
    image = read_ct(first)
    assert image.GetSize() == (512, 512, 1)


def test_multifile_series_geometry(dcmqi_series):
    image = read_ct(dcmqi_series)
    assert image.GetSize() == (512, 512, 3)
    assert image.GetSpacing() == pytest.approx((0.810547, 0.810547, 1.0), abs=1e-5)
    assert image.GetOrigin()[2] == pytest.approx(-128.69, abs=1e-3)


def test_nifti_geometry_and_values_match_an_independent_reader(example_ct):
    nibabel = pytest.importorskip("nibabel")
    image = read_ct(example_ct)
    nii = nibabel.load(str(example_ct))
    affine = nii.affine  # RAS; the engine works in LPS
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :]
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    assert image.GetSize() == nii.shape == (122, 101, 112)
    assert image.GetSpacing() == pytest.approx(spacing, abs=1e-5)
    assert image.GetOrigin() == pytest.approx(lps[:, 3], abs=1e-3)
    assert np.array(image.GetDirection()).reshape(3, 3) == pytest.approx(lps[:, :3] / spacing, abs=1e-5)
    assert np.array_equal(sitk.GetArrayViewFromImage(image), np.asarray(nii.dataobj).transpose(2, 1, 0))


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii"])
def test_other_formats(example_ct_sm, tmp_path, suffix):
    ref = sitk.ReadImage(str(example_ct_sm))
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(ref, str(path))
    image = read_ct(path)
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(ref))
    assert image.GetOrigin() == pytest.approx(ref.GetOrigin(), abs=1e-4)


def test_single_2d_slice_is_accepted(example_ct_sm, tmp_path):
    ref = sitk.ReadImage(str(example_ct_sm))[:, :, 5]
    sitk.WriteImage(ref, str(tmp_path / "slice.nrrd"))
    assert read_ct(tmp_path / "slice.nrrd").GetSize() == (122, 101, 1)


def test_missing_path(tmp_path):
    with pytest.raises(InputReadError, match="no such file"):
        read_ct(tmp_path / "nope.nii.gz")


def test_empty_file(tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(InputReadError, match="empty"):
        read_ct(tmp_path / "empty.nii.gz")


@pytest.mark.parametrize("name", ["cut.nii.gz", "cut.nii", "cut.nrrd"])
def test_truncated_volume(example_ct_sm, tmp_path, name):
    whole = tmp_path / f"whole{name[3:]}"
    sitk.WriteImage(sitk.ReadImage(str(example_ct_sm)), str(whole), useCompression=name.endswith(".gz"))
    data = whole.read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 3])
    with pytest.raises(InputReadError, match="truncated or corrupt"):
        read_ct(tmp_path / name)


def test_corrupt_dicom_series(dcmqi_series, tmp_path):
    for f in dcmqi_series.glob("*.dcm"):
        shutil.copy(f, tmp_path / f.name)
    broken = tmp_path / "02.dcm"
    broken.write_bytes(broken.read_bytes()[:4000])  # header survives, pixel data cut off
    with pytest.raises(InputReadError) as info:
        read_ct(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_mr_dicom_is_refused(dcmqi_series, tmp_path):
    for f in dcmqi_series.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.Modality = "MR"
        ds.save_as(tmp_path / f.name)
    with pytest.raises(NotCTError, match="modality MR"):
        read_ct(tmp_path)


def test_mr_like_values_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    mr = sitk.GetImageFromArray(rng.integers(0, 1500, size=(4, 64, 64)).astype(np.int16))
    sitk.WriteImage(mr, str(tmp_path / "mr.nii.gz"))
    with pytest.raises(NotCTError, match="not CT Hounsfield units"):
        read_ct(tmp_path / "mr.nii.gz")


def test_colour_image_is_refused(tmp_path):
    rgb = sitk.GetImageFromArray(np.zeros((64, 64, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "shot.png"))
    with pytest.raises(NotCTError, match="colour"):
        read_ct(tmp_path / "shot.png")


def test_4d_image_is_refused(tmp_path):
    vol = sitk.GetImageFromArray(np.full((3, 40, 40), -1000, np.int16))
    img = sitk.JoinSeries([vol, vol])
    sitk.WriteImage(img, str(tmp_path / "t.nrrd"))
    with pytest.raises(ImageShapeError, match="4D"):
        read_ct(tmp_path / "t.nrrd")


def test_constant_image_is_refused(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.full((3, 40, 40), -1000, np.int16)), str(tmp_path / "c.nrrd"))
    with pytest.raises(ImageShapeError, match="every voxel is -1000"):
        read_ct(tmp_path / "c.nrrd")


def test_tiny_image_is_refused(tmp_path):
    a = np.full((3, 10, 10), -1000, np.int16)
    a[:, 3:6, 3:6] = 40
    sitk.WriteImage(sitk.GetImageFromArray(a), str(tmp_path / "tiny.nrrd"))
    with pytest.raises(ImageShapeError, match="at least 32x32"):
        read_ct(tmp_path / "tiny.nrrd")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputReadError, match="no DICOM series"):
        read_ct(tmp_path)


def test_folder_with_several_series(dcmqi_series, tmp_path):
    """The CT series is chosen automatically (an MR scout series beside it is ignored), or by UID."""
    files = sorted(dcmqi_series.glob("*.dcm"))
    for f in files:
        (tmp_path / f"ct_{f.name}").write_bytes(f.read_bytes())
    for i, f in enumerate(files[:2]):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = "1.2.3.4.5.6.7"
        ds.SOPInstanceUID = f"1.2.3.4.5.6.7.{i}"
        ds.Modality = "MR"
        ds.save_as(tmp_path / f"mr_{f.name}")
    assert read_ct(tmp_path).GetSize() == (512, 512, 3)
    with pytest.raises(NotCTError, match="modality is MR"):
        read_ct(tmp_path, series_uid="1.2.3.4.5.6.7")
    with pytest.raises(InputReadError, match="no series with UID 9.9"):
        read_ct(tmp_path, series_uid="9.9")


def test_the_pipeline_checks_an_image_once_but_never_trusts_a_copy(example_ct_sm, tmp_path):
    """read_ct's image carries a mark that lets segment_image skip a second validate_ct; a copy
    from an array, a filter's output, or the mark read back from a file written by it do not."""
    import SimpleITK as sitk

    from AdiposeSegLib.reading.image_io import already_validated, read_ct

    image = read_ct(str(example_ct_sm))
    assert already_validated(image)
    copy = sitk.GetImageFromArray(sitk.GetArrayFromImage(image))
    copy.CopyInformation(image)
    assert not already_validated(copy) and not already_validated(image[:, :, 0:10])
    import subprocess
    import sys

    marked = tmp_path / "marked.nrrd"   # written by another process, with its mark in the header
    subprocess.run([sys.executable, "-c", "import sys, SimpleITK as sitk; from AdiposeSegLib.reading.image_io import read_ct; "
                    "sitk.WriteImage(read_ct(sys.argv[1]), sys.argv[2])", str(example_ct_sm), str(marked)], check=True)
    from_file = sitk.ReadImage(str(marked))
    assert from_file.HasMetaDataKey("AdiposeSeg.validated") and not already_validated(from_file)
