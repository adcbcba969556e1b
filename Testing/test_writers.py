"""Output files: Slicer .seg.nrrd read back by slicerio, label maps, CSV, overlays, no-loss writing."""
import os

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from AdiposeSegLib.errors import OutputError
from AdiposeSegLib.reading.labels_io import read_segmentation_labels
from AdiposeSegLib.reporting.overlay import false_colour
from AdiposeSegLib.reporting.safe_write import atomic_path, write_text
from AdiposeSegLib.tissues import COLORS
from AdiposeSegLib.reporting.writers import write_segmentation


def _labels():
    a = np.zeros((3, 40, 50), np.uint8)
    a[0, 2:6, 3:9] = 1
    a[1, 10:20, 10:12] = 2
    a[2, 30:35, 40:49] = 3
    a[2, 0, 0] = 4
    img = sitk.GetImageFromArray(a)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((-5.0, 7.0, 100.0))
    img.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    return img


def test_seg_nrrd_read_by_slicerio(tmp_path):
    img = _labels()
    path = write_segmentation(img, tmp_path / "case.seg.nrrd")
    seg = slicerio.read_segmentation(str(path))
    names = {s["name"]: s for s in seg["segments"]}
    assert list(names) == ["SAT", "VAT", "Muscle", "IMAT"]
    for s, label in zip(seg["segments"], (1, 2, 3, 4)):
        assert s["labelValue"] == label
        assert s["color"] == pytest.approx([c / 255 for c in COLORS[label]], abs=1e-5)
    assert names["SAT"]["extent"] == [3, 8, 2, 5, 0, 0]
    # voxels and geometry survive: slicerio gives (i, j, k) order and an IJK->LPS matrix
    assert np.array_equal(seg["voxels"].transpose(2, 1, 0), sitk.GetArrayViewFromImage(img))
    assert seg["ijkToLPS"][:3, 3] == pytest.approx([-5.0, 7.0, 100.0])
    assert np.diag(seg["ijkToLPS"])[:3] == pytest.approx([-0.7, -0.8, 2.5])


def test_seg_nrrd_round_trip_by_name(tmp_path):
    img = _labels()
    back = read_segmentation_labels(write_segmentation(img, tmp_path / "x.seg.nrrd"))
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(img))


def test_never_overwrites_when_told(tmp_path):
    write_text(tmp_path / "gt.csv", "first")
    with pytest.raises(OutputError, match="already exists"):
        write_text(tmp_path / "gt.csv", "second", overwrite=False)
    assert (tmp_path / "gt.csv").read_text() == "first"


def test_failed_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(OutputError, match="disk went away"):
        with atomic_path(tmp_path / "x.seg.nrrd") as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk went away")
    assert os.listdir(tmp_path) == []


def test_full_disk_is_a_clear_error_and_leaves_nothing(tiny_disk):
    rng = np.random.default_rng(0)
    big = sitk.GetImageFromArray(rng.integers(0, 5, size=(40, 256, 256)).astype(np.uint8))  # ~1 MB compressed
    write_text(tiny_disk / "kept.csv", "earlier result")
    with pytest.raises(OutputError, match="disk is full"):
        write_segmentation(big, tiny_disk / "case.seg.nrrd")
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["kept.csv"]
    assert (tiny_disk / "kept.csv").read_text() == "earlier result"


def test_false_colour_scheme():
    hu = np.array([[-1000, 40, -100, 1000]], float)
    lab = np.array([[0, 0, 1, 0]])
    rgb = false_colour(hu, lab)
    assert rgb[0, 0].tolist() == [0, 0, 0]                       # air black
    assert rgb[0, 1, 0] == rgb[0, 1, 1] == rgb[0, 1, 2]           # soft tissue gray
    assert rgb[0, 2, 0] > 150 and rgb[0, 2, 1] < 80               # SAT red
    assert rgb[0, 3, 2] > rgb[0, 3, 0] and rgb[0, 3, 2] > 100     # bone blue
