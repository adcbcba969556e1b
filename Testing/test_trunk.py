"""Body composition on the trunk: arms lying apart beside it are not measured; the rest is untouched."""
import numpy as np
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


def test_arms_in_view_are_parts_of_arm_size_beside_the_trunk(example_ct_sm):
    import SimpleITK as sitk

    from AdiposeSegLib.measuring.trunk import arms_in_view

    _, hu = _slice([((60, 100), 45), ((60, 20), 14), ((65, 180), 13)])
    assert arms_in_view(hu, pixel_area_mm2=4.0) == (1, 1)          # 14 px radius at 2 mm: 24 cm²
    assert arms_in_view(hu, pixel_area_mm2=1.0) == (0, 1)          # at 1 mm: 6 cm², a cable or a fold
    real = sitk.GetArrayFromImage(sitk.ReadImage(str(example_ct_sm)))
    assert arms_in_view(real, 9.0, every=3) == (0, 10)            # arms up: none beside the trunk


def test_an_arm_touching_the_trunk_is_not_told_apart():
    labels, hu = _slice([((60, 100), 45), ((60, 45), 14)])         # the arm's disc overlaps the trunk's
    assert clear_arms(labels, hu) is labels


def test_an_arm_lying_on_the_flank_through_the_skins_partial_volume_is_told_apart():
    """Two skins touching meet at -500..-400 HU: one part at the body's -500, two at SPLIT_HU (rules 5)."""
    labels, hu = _slice([((60, 100), 45), ((60, 39), 14)])         # a 1 px gap between the arm's disc and the trunk's
    assert (hu[0, 55:66, 54] < -900).all()
    hu[0, 55:66, 54] = -450.0                                      # skin on skin over 11 rows
    assert ndimage.label(hu[0] > -500)[1] == 1
    out = clear_arms(labels, hu)
    trunk = _disc(hu.shape[1:], (60, 100), 45)
    assert np.array_equal(out[0][trunk], labels[0][trunk])
    assert not out[0][_disc(hu.shape[1:], (60, 39), 14)].any() and labels[0][_disc(hu.shape[1:], (60, 39), 14)].any()


def _trunk(hu_slice):
    from AdiposeSegLib.measuring.trunk import SPLIT_HU

    parts, _ = ndimage.label(hu_slice > SPLIT_HU)
    return parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1


def test_the_rule_on_the_real_arms_down_series(dicom_j2k):
    """The 512x512 series was taken with the arms down: labelled by HU alone, the arms that lie apart
    hold 20-60 cm² of muscle-range tissue per slice; the rule clears them and not one trunk label."""
    import SimpleITK as sitk

    from AdiposeSegLib.reading.image_io import read_ct
    from AdiposeSegLib.reading.orientation import to_canonical
    from AdiposeSegLib.tissues import HUWindows

    image = to_canonical(read_ct(dicom_j2k))
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    windows = HUWindows()
    labels = np.where(windows.is_fat(hu), SAT, np.where(windows.is_muscle(hu), MUSCLE, 0)).astype(np.uint8)
    out = clear_arms(labels, hu)
    pixel_cm2 = image.GetSpacing()[0] * image.GetSpacing()[1] / 100
    for k in range(hu.shape[0]):
        trunk = _trunk(hu[k])
        assert np.array_equal(out[k][trunk], labels[k][trunk])
        columns = np.flatnonzero(trunk.any(axis=0))
        parts, count = ndimage.label(hu[k] > -400)
        arms = np.zeros_like(trunk)                   # parts whose middle lies left or right of the trunk (not the table)
        for part in range(1, count + 1):
            cols = np.flatnonzero((parts == part).any(axis=0))
            if not columns[0] <= (cols[0] + cols[-1]) / 2 <= columns[-1]:
                arms |= parts == part
        arm_muscle = ((labels[k] == MUSCLE) & arms).sum() * pixel_cm2
        assert 20 < arm_muscle < 90                   # one or both arms lie apart on every slice
        assert not out[k][arms].any()


def test_the_default_model_leaves_the_arms_unlabelled(dicom_j2k, default_model):
    """The network itself (arms taught as background by the phantoms) leaves the arms unlabelled,
    the one pressed against the flank included; the pipeline clears what it would still draw in
    the arms lying apart."""
    from AdiposeSegLib.reading.image_io import read_ct
    from AdiposeSegLib.running.pipeline import segment_image
    from AdiposeSegLib.tissues import SegmentOptions

    image = read_ct(dicom_j2k)
    network = segment_image(image, default_model, SegmentOptions(device="cpu", find_levels=False, include_arms=True))
    default = segment_image(image, default_model, SegmentOptions(device="cpu", find_levels=False))
    pixel_cm2 = image.GetSpacing()[0] * image.GetSpacing()[1] / 100
    arm_muscle = []
    for k in range(network.canonical_labels.shape[0]):
        trunk = _trunk(network.canonical_hu[k])
        arm_muscle.append(((network.canonical_labels[k] == MUSCLE) & ~trunk).sum() * pixel_cm2)
        assert not default.canonical_labels[k][~trunk].any()
        assert np.array_equal(default.canonical_labels[k][trunk], network.canonical_labels[k][trunk])
    assert np.mean(arm_muscle) < 3.0                  # 0.2.0 drew 31 cm² per slice there
    assert default.quality["arms_in_view"] == {"sampled_slices": 4, "with_arms": 4}   # 40 mm: one slice per 10 mm
    assert "arms_in_view" not in network.quality and any("arms lie beside" in n for n in default.statistics.notes)
    # the trunk's muscle without the arm pressed against it: 0.2.0 drew about 105 cm² per slice, 0.3.0
    # 94.5 (fp32) and 95.2 (int8, the CPU default: +0.75% muscle on this series)
    assert default.statistics.totals["Muscle_volume_cm3"] / (network.canonical_labels.shape[0] * 0.2) < 96
