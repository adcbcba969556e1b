"""Body composition on the trunk: arms lying apart beside it are not measured; the rest is untouched."""
import numpy as np
import pytest
from scipy import ndimage

from AdiposeSegLib.measuring.trunk import clear_arms
from AdiposeSegLib.tissues import IMAT, MUSCLE, SAT, VAT


def _disc(shape, centre, radius):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def _slice(parts):
    """One slice: air, with each (centre, radius) a body part of SAT around muscle."""
    hu = np.full((1, 120, 200), -1000.0)
    labels = np.zeros(hu.shape, np.uint8)
    for centre, radius in parts:
        body = _disc(hu.shape[1:], centre, radius)
        hu[0][body] = -100.0
        labels[0][body] = SAT
        inner = _disc(hu.shape[1:], centre, radius * 0.6)
        hu[0][inner] = 40.0
        labels[0][inner] = MUSCLE
    return labels, hu


def test_arms_beside_the_trunk_lose_their_labels_and_the_trunk_keeps_every_one():
    labels, hu = _slice([((60, 100), 45), ((60, 20), 14), ((65, 180), 13)])   # trunk, right arm, left arm
    labels[0, 50:54, 90:94] = VAT
    labels[0, 70, 100] = IMAT
    out = clear_arms(labels, hu)
    trunk = _disc(hu.shape[1:], (60, 100), 45)
    assert np.array_equal(out[0][trunk], labels[0][trunk])
    assert not out[0][~trunk].any() and labels[0][~trunk].sum() > 0
    assert labels[0][trunk].sum() > 0 and out is not labels


def test_a_pannus_in_front_and_the_other_thigh_keep_their_labels():
    labels, hu = _slice([((62, 100), 45), ((8, 100), 7)])           # a fold of the belly in front (row 0 is anterior)
    assert clear_arms(labels, hu) is labels and labels[0, 8, 100] == MUSCLE
    labels, hu = _slice([((60, 55), 40), ((60, 145), 36)])          # two thighs, the smaller 81% of the other
    assert clear_arms(labels, hu) is labels


def test_an_arm_touching_the_trunk_is_not_told_apart():
    labels, hu = _slice([((60, 100), 45), ((60, 45), 14)])         # the arm's disc overlaps the trunk's
    assert clear_arms(labels, hu) is labels


def test_arms_down_on_the_real_dicom_series(dicom_j2k, default_model):
    """The 512x512 series was taken with the arms down: the arms that lie apart lose their 25-55 cm²
    of muscle and fat per slice; inside the trunk not one label changes."""
    from AdiposeSegLib.reading.image_io import read_ct
    from AdiposeSegLib.running.pipeline import segment_image
    from AdiposeSegLib.tissues import SegmentOptions

    image = read_ct(dicom_j2k)
    options = dict(device="cpu", find_levels=False)
    with_arms = segment_image(image, default_model, SegmentOptions(include_arms=True, **options))
    trunk_only = segment_image(image, default_model, SegmentOptions(**options))
    a, b, hu = with_arms.canonical_labels, trunk_only.canonical_labels, with_arms.canonical_hu
    pixel_cm2 = image.GetSpacing()[0] * image.GetSpacing()[1] / 100
    cleared_slices = 0
    for k in range(a.shape[0]):
        parts, _ = ndimage.label(hu[k] > -500)
        trunk = parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1
        assert np.array_equal(a[k][trunk], b[k][trunk])
        assert not b[k][~trunk].any()
        arm_muscle = ((a[k] == MUSCLE) & ~trunk).sum() * pixel_cm2
        if arm_muscle > 0:
            cleared_slices += 1
            assert 20 < arm_muscle < 60
    assert cleared_slices == a.shape[0]          # every slice has at least one arm lying apart
    muscle = [t.statistics.totals["Muscle_volume_cm3"] for t in (with_arms, trunk_only)]
    assert muscle[1] < 0.85 * muscle[0]
    assert trunk_only.statistics.totals["VAT_volume_cm3"] == pytest.approx(with_arms.statistics.totals["VAT_volume_cm3"])
