"""Vertebral levels on variants of the real example CT (issue 23): z-crops with and without the sacrum
and the last rib, fine pixels and thin slices, HU clipped at 1023, fields of view cutting the flanks or
the back, and a portal-venous-like contrast
(an aorta in front of the column, liver and spleen enhanced to ~130 HU: what hid the ribs and moved the
column before). The promise checked on each: a level named with medium or high confidence is the right
one; where the method cannot tell, it says low (never measured) or names nothing."""
import numpy as np
import pytest
import SimpleITK as sitk

from AdiposeSegLib.measuring.spine import find_column
from AdiposeSegLib.measuring.vertebral_levels import detect_levels
from AdiposeSegLib.reading.orientation import to_canonical

# TotalSegmentator's vertebral body middles on example_ct (canonical k, 3 mm), as in test_vertebral_levels
L3_MIDDLE = 73.8
TOLERANCE = 1.5   # slices of 3 mm


@pytest.fixture(scope="module")
def ct(example_ct):
    return to_canonical(sitk.ReadImage(str(example_ct)))


def _fine(image, pixel=0.7, slice_mm=1.6):
    sp = image.GetSpacing()
    size = [int(image.GetSize()[0] * sp[0] / pixel), int(image.GetSize()[1] * sp[1] / pixel), int(image.GetSize()[2] * sp[2] / slice_mm)]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), (pixel, pixel, slice_mm),
                         image.GetDirection(), -1000, sitk.sitkInt16)


def _clipped(image):
    out = sitk.GetImageFromArray(np.minimum(sitk.GetArrayFromImage(image), 1023).astype(np.int16))
    out.CopyInformation(image)
    return out


def _contrast(image, liver_from_k, aorta_front_mm=30.0):
    """An aorta of 200 HU (radius 11 mm) aorta_front_mm in front of and 15 mm left of the vertebral body centre
    (at 30 mm, 2 mm of fat between; at 27 it lies on the body), and soft tissue more than 40 mm to the side of
    the column enhanced by 80 HU above liver_from_k."""
    a = sitk.GetArrayFromImage(image).astype(np.int16)
    sp = image.GetSpacing()
    column = find_column(a.astype(np.float32), sp)
    known = ~np.isnan(column.centre_j)
    cj = np.interp(np.arange(a.shape[0]), np.flatnonzero(known), column.centre_j[known])
    yy, xx = np.mgrid[:a.shape[1], :a.shape[2]]
    for k in range(a.shape[0]):
        vy, vx = cj[k], column.axis_x[k]
        a[k][np.hypot((yy - vy) * sp[1] + aorta_front_mm, (xx - vx) * sp[0] - 15) < 11] = 200
        if k >= liver_from_k:
            soft = (a[k] > 20) & (a[k] < 80)
            far = (np.hypot((yy - vy) * sp[1], (xx - vx) * sp[0]) > 45) & (np.abs(xx - vx) * sp[0] > 40)
            a[k][soft & far] += 80
    out = sitk.GetImageFromArray(a)
    out.CopyInformation(image)
    return out


def _field_of_view(image, diameter_mm, forward_mm=0.0):
    """A reconstruction circle of diameter_mm centred forward_mm in front of the spine: what lies outside it
    (the flanks, or the back) is -1024 HU, as a scanner pads it."""
    a = sitk.GetArrayFromImage(image)
    sp = image.GetSpacing()
    column = find_column(a.astype(np.float32), sp)
    yy, xx = np.mgrid[:a.shape[1], :a.shape[2]]
    outside = np.hypot((yy - np.nanmedian(column.centre_j)) * sp[1] + forward_mm,
                       (xx - np.nanmedian(column.axis_x)) * sp[0]) > diameter_mm / 2
    a[:, outside] = -1024
    out = sitk.GetImageFromArray(a)
    out.CopyInformation(image)
    return out


VARIANTS = {
    "3 mm": lambda image, first: image,
    "0.7 mm pixels, 1.6 mm slices": lambda image, first: _fine(image),
    "fine and clipped at 1023 HU": lambda image, first: _clipped(_fine(image)),
    "portal-venous contrast": lambda image, first: _contrast(image, 80 - first),
    "contrast, fine": lambda image, first: _fine(_contrast(image, 80 - first)),
    "aorta on the body, fine": lambda image, first: _fine(_contrast(image, 80 - first, aorta_front_mm=27.0)),
    "field of view 250 mm (flanks cut), fine": lambda image, first: _fine(_field_of_view(image, 250.0)),
    "field of view 300 mm, 80 mm forward (back cut)": lambda image, first: _field_of_view(image, 300.0, 80.0),
}
CROPS = [(0, 112), (30, 105), (44, 112), (50, 112), (55, 112), (60, 112), (44, 100)]


@pytest.mark.parametrize("first, last", CROPS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_trusted_l3_is_the_right_one(ct, first, last, variant):
    image = VARIANTS[variant](ct[:, :, first:last], first)
    report = detect_levels(image)
    l3 = report.levels.get("L3")
    if l3 is None or l3["confidence"] not in ("high", "medium"):
        assert report.confidence in ("low", "none") or l3 is None, report.notes
        return
    k = l3["mid_k"] * image.GetSpacing()[2] / 3.0 + first
    assert abs(k - L3_MIDDLE) <= TOLERANCE, (report.anchor, report.confidence, k, report.notes)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_l3_is_found_with_the_sacrum_out_of_view(ct, variant):
    """The common liver/abdomen protocol: the last rib down to L5, no sacrum. With contrast at fine pixels the
    aorta on the body's front once merged with it into one run and pulled the traced column off the body."""
    image = VARIANTS[variant](ct[:, :, 55:112], 55)
    report = detect_levels(image)
    assert report.anchor == "last rib" and report.levels["L3"]["confidence"] == "medium", report.notes
    assert report.anchors["last_rib"]["found"] and not report.anchors["sacrum"]["found"]


def test_the_iliac_crests_name_l3_when_neither_sacrum_nor_last_rib_is_in_view(ct):
    report = detect_levels(ct[:, :, 44:100])
    assert report.anchor == "iliac crest" and report.confidence == "low"     # shown, never measured
    assert abs(report.levels["L3"]["mid_k"] + 44 - L3_MIDDLE) <= TOLERANCE
    assert report.anchors["iliac_crest"]["found"] and "iliac crests" in report.notes[0]
    assert report.anchors["transverse_processes"]["longest_at"] == "L3" and "they agree" in report.notes[-1]


def test_each_anchor_is_reported(ct):
    report = detect_levels(ct)
    anchors = report.anchors
    assert anchors["sacrum"]["found"] and anchors["last_rib"]["found"] and anchors["iliac_crest"]["found"]
    assert anchors["used"] == "sacrum and last rib" and anchors["confidence"] == "high"
    processes = anchors["transverse_processes"]       # L3's reach furthest (49.5 mm; L2 37.5, L4 42.0)
    assert processes["longest_at"] == "L3" and processes["reach_mm"]["L3"] - processes["reach_mm"]["L4"] >= 5
    assert 50 <= anchors["iliac_crest"]["top_slice"] <= 68            # at L4/L5 in this patient


def test_the_levels_picture_shows_sagittal_coronal_and_axial(ct):
    from AdiposeSegLib.reporting.levels_figure import HEIGHT, levels_figure

    report = detect_levels(ct)
    levels = {name: {"slice": int(round(v["mid_k"])), "centre_lps_mm": v["centre_lps_mm"], "confidence": v["confidence"],
                     "source": "auto"} for name, v in report.levels.items()}
    hu = sitk.GetArrayFromImage(ct)
    sheet = np.asarray(levels_figure(ct, hu, np.zeros(hu.shape, np.uint8), levels))
    sx, sy, sz = ct.GetSpacing()
    sagittal = int(round(HEIGHT * hu.shape[1] * sy / (hu.shape[0] * sz)))
    coronal = int(round(HEIGHT * hu.shape[2] * sx / (hu.shape[0] * sz)))
    assert sheet.shape[0] == HEIGHT and sheet.shape[1] > sagittal + coronal
    panel = sheet[:, sagittal:sagittal + coronal]
    grey = panel[..., 0].astype(int)
    assert (grey > 200).mean() > 0.01          # bone (vertebrae, ilia) bright in the bone window
    yellow = (panel[..., 0] > 200) & (panel[..., 1] > 180) & (panel[..., 2] < 80)
    assert yellow.sum() > 50                   # the high-confidence level marks are drawn on it
