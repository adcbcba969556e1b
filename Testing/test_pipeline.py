"""The one data path on real CT: geometry kept exactly, orientation-independent areas, statistics = voxel counts."""
import numpy as np
import pytest
import SimpleITK as sitk

from AdiposeSegLib.errors import Cancelled
from AdiposeSegLib.reading.image_io import read_ct
from AdiposeSegLib.reading.orientation import to_canonical
from AdiposeSegLib.running.pipeline import segment_image, statistics_for_labels
from AdiposeSegLib.running.progress import RunControl
from AdiposeSegLib.tissues import IMAT, LABELS, MUSCLE, NAMES, SegmentOptions


def _same_geometry(a, b):
    assert a.GetSize() == b.GetSize()
    assert a.GetSpacing() == pytest.approx(b.GetSpacing(), abs=1e-9)
    assert a.GetOrigin() == pytest.approx(b.GetOrigin(), abs=1e-9)
    assert a.GetDirection() == pytest.approx(b.GetDirection(), abs=1e-12)


def reoriented(image: sitk.Image, permutation, flips) -> sitk.Image:
    """Same anatomy, other voxel order: the direction cosines change, physical space does not."""
    out = sitk.PermuteAxes(image, permutation)
    return sitk.Flip(out, flips)


def test_label_map_has_input_geometry(example_ct, tiny_model):
    image = read_ct(example_ct)
    result = segment_image(image, tiny_model, SegmentOptions(device="cpu"))
    _same_geometry(result.labels, image)
    assert result.labels.GetPixelID() == sitk.sitkUInt8


@pytest.mark.parametrize("permutation,flips", [((0, 1, 2), (True, False, True)), ((1, 0, 2), (False, True, False)),
                                                ((2, 0, 1), (False, False, False))])
def test_reoriented_copy_gives_same_areas(example_ct_sm, tiny_model, permutation, flips):
    image = read_ct(example_ct_sm)
    moved = reoriented(image, permutation, flips)
    assert moved.GetDirection() != image.GetDirection()
    a = segment_image(image, tiny_model, SegmentOptions(device="cpu"))
    b = segment_image(moved, tiny_model, SegmentOptions(device="cpu"))
    _same_geometry(b.labels, moved)
    for k in LABELS:
        va, vb = a.statistics.totals[f"{NAMES[k]}_volume_cm3"], b.statistics.totals[f"{NAMES[k]}_volume_cm3"]
        assert vb == pytest.approx(va, rel=0.01, abs=0.05)
    # and voxel for voxel, once both are back in physical space
    back = sitk.Resample(b.labels, a.labels, sitk.Transform(), sitk.sitkNearestNeighbor)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(a.labels))


def test_statistics_are_voxel_counts_times_pixel_area(dcmqi_series, tiny_model):
    image = read_ct(dcmqi_series)
    result = segment_image(image, tiny_model, SegmentOptions(device="cpu"))
    labels = sitk.GetArrayFromImage(to_canonical(result.labels))
    hu = sitk.GetArrayFromImage(to_canonical(image))
    px = image.GetSpacing()[0] * image.GetSpacing()[1] / 100.0
    for row in result.statistics.rows:
        for k in LABELS:
            count = int((labels[row["slice"]] == k).sum())
            assert row[f"{NAMES[k]}_area_cm2"] == pytest.approx(count * px, rel=1e-12)
            if count:
                assert row[f"{NAMES[k]}_mean_HU"] == pytest.approx(hu[row["slice"]][labels[row["slice"]] == k].mean(), rel=1e-9)


def test_slice_range_processes_only_those_slices(example_ct_sm, tiny_model):
    image = read_ct(example_ct_sm)
    result = segment_image(image, tiny_model, SegmentOptions(device="cpu", slices=(5, 8)))
    assert [r["slice"] for r in result.statistics.rows] == [5, 6, 7]
    arr = sitk.GetArrayViewFromImage(result.labels)
    assert not arr[:5].any() and not arr[8:].any()


@pytest.mark.parametrize("scan", ["example_ct_sm", "dicom_j2k"])
def test_overlapped_batches_give_the_same_labels_for_any_batch_size(scan, request, default_model):
    """Each batch is gated and cleaned on its own window: labels must not depend on how the slices
    are cut into batches, and every stage is timed. On the 0.98 mm series the SAT rim reaches 3
    pixels beyond the network's tissue: before the window was widened by that reach, batches of 1
    and 8 differed in 63 voxels (the rim cut off where a slice set its batch's window edge)."""
    image = read_ct(request.getfixturevalue(scan))
    runs = [segment_image(image, default_model, SegmentOptions(device="cpu", batch_size=b, find_levels=False)) for b in (1, 7, 64)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.canonical_labels, runs[0].canonical_labels)
    assert (runs[0].canonical_labels == 3).sum() > 1000
    for stage in ("to_grid_s", "network_s", "class_decision_s", "postprocess_s", "segment_s"):
        assert runs[1].timings[stage] > 0
    assert runs[1].timings["network_s"] < runs[1].timings["segment_s"]


def test_gate_keeps_every_label_inside_its_window(example_ct_sm, tiny_model):
    image = read_ct(example_ct_sm)
    options = SegmentOptions(device="cpu")
    result = segment_image(image, tiny_model, options)
    lab, hu = result.canonical_labels, result.canonical_hu
    for k in (1, 2, 4):
        assert ((hu[lab == k] >= -190) & (hu[lab == k] <= -30)).all()
    assert ((hu[lab == 3] >= -29) & (hu[lab == 3] <= 150)).all()


def test_progress_reports_and_cancel_stops(example_ct_sm, tiny_model):
    seen = []
    image = read_ct(example_ct_sm)
    segment_image(image, tiny_model, SegmentOptions(device="cpu", batch_size=4), RunControl(lambda f, m: seen.append(f)))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)

    control = RunControl()

    def cancel_midway(fraction, message):
        if fraction > 0.3:
            control.cancel()

    control.callback = cancel_midway
    with pytest.raises(Cancelled):
        segment_image(image, tiny_model, SegmentOptions(device="cpu", batch_size=4), control)


def test_update_statistics_follows_an_edit(example_ct_sm, tiny_model):
    image = read_ct(example_ct_sm)
    result = segment_image(image, tiny_model, SegmentOptions(device="cpu"))
    edited = sitk.GetArrayFromImage(result.labels)
    edited[10, 40:50, 40:60] = 1  # paint 200 voxels of SAT on slice 10 (canonical index is the same here)
    img = sitk.GetImageFromArray(edited)
    img.CopyInformation(result.labels)
    stats = statistics_for_labels(img, image)
    px = image.GetSpacing()[0] * image.GetSpacing()[1] / 100.0
    before = result.statistics.rows[10]["SAT_area_cm2"]
    was_sat = int((sitk.GetArrayViewFromImage(result.labels)[10, 40:50, 40:60] == 1).sum())
    assert stats.rows[10]["SAT_area_cm2"] == pytest.approx(before + (200 - was_sat) * px)


def test_result_arrays_outlive_the_result(example_ct_sm, tiny_model):
    """The label and HU arrays are views of the result's images: they must keep them alive."""
    import gc

    image = read_ct(example_ct_sm)
    options = SegmentOptions(device="cpu", find_levels=False)
    labels = segment_image(image, tiny_model, options).canonical_labels
    hu = segment_image(image, tiny_model, options).canonical_hu
    gc.collect()
    junk = [np.full(labels.shape, 255, np.uint8) for _ in range(4)]   # reuse any freed memory
    assert labels.max() <= max(LABELS) and not labels.flags.writeable
    np.testing.assert_array_equal(hu, sitk.GetArrayFromImage(to_canonical(image)))
    del junk


def test_single_fat_pixels_inside_muscle_are_counted_as_imat(example_ct_sm, default_model):
    """Fat marbling of one pixel inside real muscle is IMAT in the labels and the statistics."""
    from scipy import ndimage

    image = sitk.ReadImage(str(example_ct_sm))
    options = SegmentOptions(device="cpu", slices=(14, 16), find_levels=False)
    before = segment_image(image, default_model, options)
    z = 14
    inner = ndimage.binary_erosion(before.canonical_labels[z] == MUSCLE, iterations=2)
    rows, cols = np.nonzero(inner)
    pick = np.arange(0, rows.size, max(1, rows.size // 12))[:12]
    canonical = to_canonical(image)
    hu = sitk.GetArrayFromImage(canonical)
    hu[z, rows[pick], cols[pick]] = -100
    marbled = sitk.GetImageFromArray(hu)
    marbled.CopyInformation(canonical)
    after = segment_image(marbled, default_model, options)
    assert (after.canonical_labels[z, rows[pick], cols[pick]] == IMAT).all()
    voxel_cm3 = float(np.prod(canonical.GetSpacing())) / 1000
    gained = after.statistics.totals["IMAT_volume_cm3"] - before.statistics.totals["IMAT_volume_cm3"]
    assert gained == pytest.approx(len(pick) * voxel_cm3, rel=0.35)


def test_labels_are_written_into_the_label_image_itself():
    """Issue 27 C: one copy of the label volume, not an array and then an image made from it."""
    import gc

    import SimpleITK as sitk

    from AdiposeSegLib.reading.image_views import image_view, writable_view, zero_image_like

    reference = sitk.Image([64, 48, 20], sitk.sitkInt16)
    reference.SetSpacing((0.7, 0.7, 2.5))
    image = zero_image_like(reference)
    assert image.GetSpacing() == reference.GetSpacing() and image.GetPixelID() == sitk.sitkUInt8
    labels = writable_view(image)
    assert labels.shape == (20, 48, 64) and not labels.any()
    labels[3, 10:12, 5] = 2
    assert image[5, 10, 3] == 2 and image_view(image)[3, 11, 5] == 2
    del image
    gc.collect()
    assert labels[3, 11, 5] == 2          # the view keeps its image alive
