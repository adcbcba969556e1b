"""Shared fixtures: real CT from ../shared/data/real-ct, a tiny untrained model, the bundled model."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "AdiposeSeg"))
sys.path.insert(0, str(ROOT))

REAL_CT = Path(os.environ.get("ADIPOSESEG_REAL_CT", ROOT.parent / "shared" / "data" / "real-ct"))
TS = REAL_CT / "totalsegmentator-example"
DICOM_J2K = TS / "example_ct_dicom"
DCMQI = REAL_CT / "dcmqi-ct3slice"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"real CT test data missing at {path}; tests read it from ../shared/data/real-ct (or $ADIPOSESEG_REAL_CT)")
    return path


@pytest.fixture(scope="session")
def real_ct_dir() -> Path:
    return _need(REAL_CT)


@pytest.fixture(scope="session")
def example_ct() -> Path:
    return _need(TS / "example_ct.nii.gz")


@pytest.fixture(scope="session")
def example_ct_sm() -> Path:
    return _need(TS / "example_ct_sm.nii.gz")


@pytest.fixture(scope="session")
def example_tissue_labels() -> Path:
    return _need(TS / "tissue_types_labelmap_on_ct_sm.nii.gz")


@pytest.fixture(scope="session")
def dicom_j2k() -> Path:
    return _need(DICOM_J2K)


@pytest.fixture(scope="session")
def dcmqi_series() -> Path:
    return _need(DCMQI)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A freshly initialised small U-Net with its card: for geometry and I/O tests, not for accuracy."""
    import torch

    from AdiposeSegLib.model.model_card import ModelCard, save_model
    from AdiposeSegLib.model.networks import build_network

    torch.manual_seed(0)
    card = ModelCard(name="tiny-untrained", version="0", architecture="unet", arch_params={"base": 4, "depth": 3},
                     pixel_spacing_mm=3.0, grid_pixels=96, trained=False, notes="untrained, for tests only")
    net = build_network("unet", num_classes=card.num_classes, **card.arch_params)
    return save_model(net, card, tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from AdiposeSegLib.model.model_card import load_model

    return load_model(tiny_model_dir)


@pytest.fixture(scope="session")
def default_model():
    from AdiposeSegLib.model.model_card import default_model_dir, load_model

    if not (default_model_dir() / "model.json").is_file():
        pytest.fail(f"the bundled default model is missing at {default_model_dir()}")
    return load_model()


def _tmpfs(mount: Path, size: str):
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode:
        if os.geteuid() == 0 or os.environ.get("CI"):  # CI runs as root: there the test must run, not skip
            pytest.fail(f"could not mount a tmpfs as root: {done.stderr.strip()}")
        pytest.skip("mounting a tmpfs needs root")
    return mount


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KiB file system (tmpfs), so that writes hit a genuinely full disk."""
    mount = _tmpfs(tmp_path / "disk", "256k")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MiB file system (tmpfs): room for a result set, to be filled up by the test."""
    mount = _tmpfs(tmp_path / "disk4m", "4m")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def scene():
    """A real, empty MRML scene (slicer-core), set as slicer.mrmlScene for slicer.util."""
    slicer = pytest.importorskip("slicer", reason="slicer-core is part of the test requirements")
    s = slicer.vtkMRMLScene()
    slicer.mrmlScene = s
    yield s
    s.Clear(1)


@pytest.fixture
def logic(scene, tiny_model_dir):
    """SceneLogic on that scene with the tiny untrained model, on the CPU."""
    from AdiposeSegLib.scene import SceneLogic
    from AdiposeSegLib.tissues import SegmentOptions

    return SceneLogic(scene, model_dir=str(tiny_model_dir), options=SegmentOptions(device="cpu"))


@pytest.fixture(scope="session")
def deidentified_dicom(dicom_j2k, tmp_path_factory):
    """make(removed) -> a copy of the shared example series as de-identification leaves it: the UIDs
    put back (SOP class and instance from the file meta, fixed study and series UIDs) and the named
    attributes deleted. Copies are cached per set of removed attributes."""
    import pydicom
    from pydicom.uid import CTImageStorage

    made: dict = {}

    def make(removed=()) -> Path:
        key = tuple(sorted(removed))
        if key not in made:
            out = tmp_path_factory.mktemp("deid")
            for index, path in enumerate(sorted(p for p in dicom_j2k.iterdir() if p.is_file())):
                ds = pydicom.dcmread(str(path))
                ds.SOPClassUID = CTImageStorage
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
                ds.StudyInstanceUID, ds.SeriesInstanceUID = "2.25.1001", "2.25.1002"
                for name in key:
                    if name in ds:
                        delattr(ds, name)
                ds.save_as(str(out / f"im{index:03d}.dcm"))
            made[key] = out
        return made[key]

    return make


@pytest.fixture(scope="session")
def plain_series(dicom_j2k, tmp_path_factory):
    """The real 20-slice JPEG 2000 series, decompressed (so that pixels can be changed), with UIDs."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = tmp_path_factory.mktemp("plain")
    series_uid = generate_uid()
    for k, path in enumerate(sorted(dicom_j2k.iterdir())):
        ds = pydicom.dcmread(path)
        ds.decompress()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    return folder
