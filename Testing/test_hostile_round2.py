"""Hostile inputs round 2 (issue 22): inputs built from the shared real CT that gave silently wrong
numbers or crashed; each is now refused with its cause (or read with a flag and a note)."""
import shutil
import struct

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from AdiposeSegLib.errors import AdiposeSegError, ImageShapeError, InputReadError, NotCTError
from AdiposeSegLib.reading.image_io import read_ct, validate_ct


@pytest.fixture(scope="module")
def small_ct(example_ct_sm):
    return read_ct(example_ct_sm)


def _like(array, reference):
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def _series(plain_series, tmp_path, edit=None, name="s"):
    """A copy of the plain real series; edit(k, ds) changes file k before it is written."""
    folder = tmp_path / name
    folder.mkdir()
    for k, path in enumerate(sorted(plain_series.iterdir())):
        ds = pydicom.dcmread(path)
        if edit:
            edit(k, ds)
        ds.save_as(folder / path.name, enforce_file_format=True)
    return folder


# -- orientation: the anatomy decides which way is up
def test_an_anterior_posterior_pixel_flip_is_refused(small_ct):
    array = sitk.GetArrayFromImage(small_ct)   # the example is stored LPS-like: array rows run anterior-posterior
    flipped = _like(np.flip(array, axis=1).copy(), small_ct)
    with pytest.raises(NotCTError, match="spine lies in front"):
        validate_ct(flipped, "flipped")


def test_a_header_only_flip_is_refused(example_ct_sm, tmp_path):
    image = sitk.ReadImage(str(example_ct_sm))
    direction = np.array(image.GetDirection()).reshape(3, 3)
    direction[:, 1] *= -1          # the header now says the rows run the other way
    image.SetDirection(tuple(direction.ravel()))
    sitk.WriteImage(image, str(tmp_path / "flipped.nii.gz"))
    with pytest.raises(NotCTError, match="flipped front to back"):
        read_ct(tmp_path / "flipped.nii.gz")


def test_a_prone_scan_stored_with_a_supine_header_is_refused(plain_series, tmp_path):
    def flip(k, ds):
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[::-1, :]).tobytes()
    with pytest.raises(NotCTError, match="spine lies in front"):
        read_ct(_series(plain_series, tmp_path, flip))


def test_a_90_degree_rotation_is_refused(small_ct):
    array = sitk.GetArrayFromImage(small_ct)
    rotated = sitk.GetImageFromArray(np.rot90(array, 1, axes=(1, 2)).copy())
    rotated.SetSpacing(small_ct.GetSpacing())
    rotated.SetDirection(small_ct.GetDirection())
    with pytest.raises(NotCTError, match="rotated by 90 degrees"):
        validate_ct(rotated, "rotated")


def test_the_real_scans_pass_the_anatomy_checks(example_ct, dicom_j2k, dcmqi_series):
    for path in (example_ct, dicom_j2k, dcmqi_series):
        read_ct(path)


# -- not a patient
def _cylinder(fill, ring=None, size=384, spacing=0.9, slices=12, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2) * spacing
    plane = np.full((size, size), -1000.0)
    plane[r < 150] = fill
    if ring is not None:
        plane[(r >= 120) & (r < 150)] = ring
    array = np.stack([plane + rng.normal(0, 12, plane.shape) for _ in range(slices)])
    from scipy import ndimage
    array = ndimage.gaussian_filter(array, (0, 1, 1))   # a reconstruction kernel's texture
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((spacing, spacing, 5.0))
    return image


@pytest.mark.parametrize("image, why", [
    (_cylinder(0.0), "water cylinder"),
    (_cylinder(0.0, ring=-100.0), "QA fat-ring phantom"),
])
def test_phantoms_without_a_spine_are_refused(image, why):
    with pytest.raises(NotCTError, match="no bone"):
        validate_ct(image, why)


def test_uniform_noise_is_refused():
    rng = np.random.default_rng(1)
    image = sitk.GetImageFromArray(rng.uniform(-1024, 3000, (10, 256, 256)).astype(np.float32))
    image.SetSpacing((1.2, 1.2, 5.0))
    with pytest.raises(NotCTError, match="noise"):
        validate_ct(image, "noise")


# -- a lost or broken slice
def test_a_blank_slice_in_the_middle_is_refused(small_ct):
    array = sitk.GetArrayFromImage(small_ct)
    k = array.shape[0] // 2
    array[k] = -1024
    with pytest.raises(ImageShapeError, match=f"slice {k} .*single value"):
        validate_ct(_like(array, small_ct), "blank")


def test_one_slice_without_its_rescale_intercept_is_refused(plain_series, tmp_path):
    def lose(k, ds):
        if k == 10:
            del ds.RescaleIntercept
    with pytest.raises(InputReadError, match="RescaleIntercept"):
        read_ct(_series(plain_series, tmp_path, lose))


def test_one_slice_offset_by_1024_is_refused_on_its_values(small_ct):
    array = sitk.GetArrayFromImage(small_ct).astype(np.float32)
    array[7] += 1024
    with pytest.raises(NotCTError, match="slice 7 .*no air"):
        validate_ct(_like(array, small_ct), "offset")


@pytest.mark.parametrize("damage", ["empty", "header cut"])
@pytest.mark.parametrize("which", [0, 19])
def test_a_lost_first_or_last_file_is_an_error_not_another_series(plain_series, tmp_path, damage, which):
    folder = tmp_path / "s"
    shutil.copytree(plain_series, folder)
    path = sorted(folder.iterdir())[which]
    data = path.read_bytes()
    path.write_bytes(b"" if damage == "empty" else data[:400])
    with pytest.raises(InputReadError, match=path.name):
        read_ct(folder)


# -- geometry
def test_one_slice_with_another_pixel_spacing_is_refused(plain_series, tmp_path):
    def spacing(k, ds):
        if k == 5:
            ds.PixelSpacing = [float(v) * 1.1 for v in ds.PixelSpacing]
    with pytest.raises(InputReadError, match="differ in PixelSpacing"):
        read_ct(_series(plain_series, tmp_path, spacing))


def test_a_slowly_drifting_orientation_is_refused(plain_series, tmp_path):
    def drift(k, ds):
        a = np.radians(0.05 * k)
        ds.ImageOrientationPatient = [1, 0, 0, 0, float(np.cos(a)), float(np.sin(a))]
    with pytest.raises(InputReadError, match="orientation drifts"):
        read_ct(_series(plain_series, tmp_path, drift))


def test_two_frames_of_reference_in_one_series_are_refused(plain_series, tmp_path):
    other = generate_uid()
    def frames(k, ds):
        if k % 2:
            ds.FrameOfReferenceUID = other
    with pytest.raises(InputReadError, match="FrameOfReferenceUID"):
        read_ct(_series(plain_series, tmp_path, frames))


def test_two_contrast_phases_in_one_series_are_refused(plain_series, tmp_path):
    def phases(k, ds):
        late = k >= 10
        ds.AcquisitionNumber = 2 if late else 1
        ds.AcquisitionTime = "101500" if late else "101000"
    with pytest.raises(InputReadError, match="acquisitions 300 s apart"):
        read_ct(_series(plain_series, tmp_path, phases))


def test_one_contrast_agent_header_unlike_the_rest_is_refused(plain_series, tmp_path):
    def agent(k, ds):
        ds.ContrastBolusAgent = "IOHEXOL" if k >= 10 else "NONE"
    with pytest.raises(InputReadError, match="ContrastBolusAgent"):
        read_ct(_series(plain_series, tmp_path, agent))


@pytest.mark.parametrize("degrees", [30, 50])
def test_oblique_slices_are_refused(small_ct, degrees):
    image = sitk.Image(small_ct)
    a = np.radians(degrees)
    rotation = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    image.SetDirection(tuple((rotation @ np.array(small_ct.GetDirection()).reshape(3, 3)).ravel()))
    with pytest.raises(ImageShapeError, match=r"oblique, \d+\.0 degrees from axial"):
        validate_ct(image, "oblique")


def test_a_sheared_grid_is_refused(plain_series, tmp_path):
    def shear(k, ds):
        ds.ImageOrientationPatient = [1, 0, 0, 0.2, float(np.sqrt(1 - 0.04)), 0]
    with pytest.raises(ImageShapeError, match="not perpendicular"):
        read_ct(_series(plain_series, tmp_path, shear))


@pytest.mark.parametrize("spacing, match", [(None, "no PixelSpacing"), ("imager", "only ImagerPixelSpacing"),
                                            ([-0.8, -0.8], "must be positive")])
def test_missing_or_negative_pixel_spacing_is_a_clear_refusal(plain_series, tmp_path, spacing, match):
    def edit(k, ds):
        if spacing == "imager":
            ds.ImagerPixelSpacing = ds.PixelSpacing
        if spacing is None or spacing == "imager":
            del ds.PixelSpacing
        else:
            ds.PixelSpacing = spacing
    with pytest.raises(InputReadError, match=match):
        read_ct(_series(plain_series, tmp_path, edit))


def test_enhanced_multiframe_ct_is_named_as_such(plain_series, tmp_path):
    ds = pydicom.dcmread(sorted(plain_series.iterdir())[0])
    ds.NumberOfFrames = 3
    ds.PixelData = ds.PixelData * 3
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)
    with pytest.raises(InputReadError, match="multi-frame"):
        read_ct(tmp_path / "enhanced.dcm")


def _nifti_with(source, tmp_path, edit):
    """Rewrite a NIfTI's header fields in place: edit(header bytearray)."""
    image = sitk.ReadImage(str(source))
    path = tmp_path / "t.nii"
    sitk.WriteImage(image, str(path))
    data = bytearray(path.read_bytes())
    edit(data)
    path.write_bytes(bytes(data))
    return path


def test_nifti_whose_qform_and_sform_disagree_is_refused(example_ct_sm, tmp_path):
    def move(h):
        x = struct.unpack("<f", h[292:296])[0]              # srow_x offset
        h[292:296] = struct.pack("<f", x + 40.0)
        h[252:256] = struct.pack("<hh", 1, 1)
    with pytest.raises(InputReadError, match="two transforms disagree"):
        read_ct(_nifti_with(example_ct_sm, tmp_path, move))


def test_nifti_geometry_source_is_recorded(example_ct_sm, tmp_path):
    info = {}
    read_ct(_nifti_with(example_ct_sm, tmp_path, lambda h: h.__setitem__(slice(252, 256), struct.pack("<hh", 0, 1))),
            info=info)
    assert info["geometry_from"] == "NIfTI sform (no qform)" and any("sform" in n for n in info["notes"])
    info = {}
    read_ct(_nifti_with(example_ct_sm, tmp_path, lambda h: h.__setitem__(slice(252, 256), struct.pack("<hh", 1, 1))),
            info=info)
    assert info["geometry_from"] == "NIfTI sform and qform (they agree)"


def test_every_refusal_here_is_an_adiposeseg_error():
    assert issubclass(NotCTError, AdiposeSegError) and issubclass(InputReadError, AdiposeSegError)


# -- flags: numbers kept, the reader told
def test_a_metal_rod_with_streaks_is_flagged_on_its_slices(small_ct, default_model):
    from AdiposeSegLib.running.pipeline import segment_image
    from AdiposeSegLib.tissues import SegmentOptions

    array = sitk.GetArrayFromImage(small_ct).astype(np.float32)
    k0, k1 = 3, 6
    rows, cols = array.shape[1:]
    cy, cx = int(rows * 0.45), int(cols * 0.6)
    yy, xx = np.mgrid[:rows, :cols]
    rod = np.hypot(yy - cy, xx - cx) < 4
    angle = np.arctan2(yy - cy, xx - cx)
    streaks = 150 * np.cos(8 * angle) * np.exp(-np.hypot(yy - cy, xx - cx) / 60)
    for k in range(k0, k1):
        array[k] += streaks
        array[k][rod] = 3071
    result = segment_image(_like(array, small_ct), default_model, SegmentOptions(device="cpu", slices=(0, 10)))
    flag = result.quality["metal_artifact"]
    assert (flag["slices"], flag["first_slice"], flag["last_slice"]) == (3, 3, 5)
    assert any("metal" in n for n in result.statistics.notes)


def test_a_body_narrower_than_the_validated_adults_is_flagged(small_ct, default_model):
    from AdiposeSegLib.running.pipeline import segment_image
    from AdiposeSegLib.tissues import SegmentOptions

    child = sitk.Image(small_ct)
    child.SetSpacing(tuple(s * 0.65 for s in small_ct.GetSpacing()[:2]) + (small_ct.GetSpacing()[2],))
    adult = segment_image(small_ct, default_model, SegmentOptions(device="cpu", slices=(0, 4)))
    small = segment_image(child, default_model, SegmentOptions(device="cpu", slices=(0, 4)))
    assert "small_body_mm" not in adult.quality
    assert 180 < small.quality["small_body_mm"] < 260
    assert any("validated" in n for n in small.statistics.notes)


def test_no_level_of_the_real_scan_is_refused_on_its_own(example_ct):
    """Every 5-slice z-crop of the real CT, from the hips (a prosthesis, the pubic symphysis in front)
    to the chest: the anatomy checks must not mistake a level for a flip or a phantom."""
    image = read_ct(example_ct)
    for start in range(0, image.GetSize()[2] - 5, 5):
        validate_ct(image[:, :, start:start + 5], f"slices {start}..{start + 4}")


def test_the_real_hip_prosthesis_is_flagged_as_metal(example_ct):
    from AdiposeSegLib.reading.anatomy_checks import anatomy_flags
    from AdiposeSegLib.reading.orientation import to_canonical

    canonical = to_canonical(read_ct(example_ct))
    hu = sitk.GetArrayFromImage(canonical)
    flags, notes = anatomy_flags(hu, np.zeros(hu.shape, np.uint8), canonical.GetSpacing(), np.arange(hu.shape[0]))
    metal = flags["metal_artifact"]
    assert metal["first_slice"] <= 3 and 3 <= metal["slices"] <= 25 and metal["last_slice"] < 30   # the left hip only
    assert "small_body_mm" not in flags and notes
