"""CPU inference in ONNX Runtime (issue 13): the same labels as torch on real CT, used only when the
export belongs to the weights beside it, and a CPU run that never imports torch."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("onnxruntime", reason="onnxruntime is part of the test requirements")

from AdiposeSegLib.measuring.evaluate import compare
from AdiposeSegLib.model.model_card import default_model_dir, load_model
from AdiposeSegLib.running.pipeline import segment_image
from AdiposeSegLib.tissues import SegmentOptions


@pytest.fixture
def torch_backend(monkeypatch):
    monkeypatch.setenv("ADIPOSESEG_BACKEND", "torch")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_bundled_model_runs_in_onnx_runtime_with_torchs_labels(precision, example_ct_sm, example_tissue_labels, monkeypatch):
    """fp32: torch's labels but for float ties; int8 (the CPU default, issue 27): within 1.5% of the
    labelled voxels, and the held-out slab's Dice against TotalSegmentator within 0.002 of torch's."""
    image = sitk.ReadImage(str(example_ct_sm))
    options = SegmentOptions(device="cpu", find_levels=False)
    monkeypatch.setenv("ADIPOSESEG_PRECISION", precision)
    model = load_model()
    assert model.onnx_path.name == ("model.int8.onnx" if precision == "int8" else "model.onnx")
    assert model._network is None   # torch weights not even loaded
    onnx = segment_image(image, model, options)
    monkeypatch.setenv("ADIPOSESEG_BACKEND", "torch")
    reference = segment_image(image, load_model(), options)
    a, b = sitk.GetArrayViewFromImage(onnx.labels), sitk.GetArrayViewFromImage(reference.labels)
    if precision == "fp32":
        assert (a != b).sum() <= 10, (a != b).sum()                  # float rounding at a tie, at most
    else:
        assert 0 < (a != b).sum() <= 0.015 * ((a > 0) | (b > 0)).sum()
    truth = sitk.ReadImage(str(example_tissue_labels))
    held_out = (slice(None), slice(None), slice(0, 10))           # slices the model never trained on
    ours, theirs = compare(onnx.labels[held_out], truth[held_out]), compare(reference.labels[held_out], truth[held_out])
    for tissue in ("SAT", "Muscle"):
        assert abs(ours[tissue]["dice"] - theirs[tissue]["dice"]) <= 0.002


def test_precision_is_chosen_by_environment_and_a_stale_int8_export_is_not_used(tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    shutil.copytree(default_model_dir(), model_dir)
    assert load_model(model_dir).onnx_path.name == "model.int8.onnx"
    monkeypatch.setenv("ADIPOSESEG_PRECISION", "fp32")
    assert load_model(model_dir).onnx_path.name == "model.onnx"
    monkeypatch.setenv("ADIPOSESEG_PRECISION", "int4")
    with pytest.raises(ValueError, match="int8 or fp32"):
        load_model(model_dir)
    monkeypatch.delenv("ADIPOSESEG_PRECISION")
    int8 = model_dir / "model.int8.onnx"
    int8.write_bytes(int8.read_bytes()[:-1] + b"\0")   # damaged or replaced: its hash no longer matches the card
    assert load_model(model_dir).onnx_path.name == "model.onnx"


def test_training_quantizes_a_model_on_real_ct_and_phantoms(tiny_model_dir, dicom_j2k, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from AdiposeSegLib.model.onnx_backend import export_onnx
    from training.quantize import quantize_model

    model_dir = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model_dir)
    monkeypatch.setenv("ADIPOSESEG_PRECISION", "fp32")
    export_onnx(load_model(model_dir))
    out = quantize_model(load_model(model_dir), [str(dicom_j2k) + "@0:8"], per_volume=4, phantoms=3)
    entry = json.loads((model_dir / "model.json").read_text())["onnx_int8"]
    assert out.name == entry["file"] == "model.int8.onnx"
    assert entry["calibration"]["slices"] == 7 and entry["calibration"]["real_volumes"] == [f"{dicom_j2k.name} slices 0:8"]
    monkeypatch.delenv("ADIPOSESEG_PRECISION")
    model = load_model(model_dir)
    assert model.onnx_path == out
    x = np.random.default_rng(0).uniform(-1, 1, (2, 1, 64, 64)).astype(np.float32)
    monkeypatch.setenv("ADIPOSESEG_PRECISION", "fp32")
    fp32 = load_model(model_dir).onnx_network()(x)
    int8 = model.onnx_network()(x)
    assert int8.shape == fp32.shape and np.abs(int8 - fp32).max() < 0.1 * np.abs(fp32).max() + 1e-3


def test_a_stale_export_is_not_used(tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(default_model_dir(), model_dir)
    assert load_model(model_dir).onnx_path is not None
    weights = model_dir / "model.pt"
    weights.write_bytes(weights.read_bytes() + b"")   # same bytes: still current
    assert load_model(model_dir).onnx_path is not None
    import torch

    state = torch.load(weights, weights_only=True)
    first = next(iter(state))
    state[first] = state[first] + 1.0                 # retrained weights, old export
    torch.save(state, weights)
    model = load_model(model_dir)
    assert model.onnx_path is None and model._network is not None
    card = json.loads((model_dir / "model.json").read_text())
    assert card["onnx"]["weights_sha256"]             # the record that proved it stale


def test_a_cpu_run_never_imports_torch(example_ct_sm, tmp_path):
    code = ("import sys; from AdiposeSegLib.running.cli import main; "
            f"rc = main(['segment', {str(example_ct_sm)!r}, '-o', {str(tmp_path)!r}, '--device', 'cpu', '-q', '--slices', '0:4']); "
            "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)")
    env = {k: v for k, v in os.environ.items() if k != "ADIPOSESEG_BACKEND"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("no torch"), done.stdout
    summary = json.loads((tmp_path / "example_ct_sm_summary.json").read_text())
    assert np.isfinite(summary["totals"]["SAT_volume_cm3"]) and summary["totals"]["SAT_volume_cm3"] > 0


def test_torch_can_be_forced(torch_backend):
    model = load_model()
    assert model.onnx_path is None and model._network is not None


def test_tissue_window_skips_only_air_on_a_512_series(dicom_j2k, monkeypatch):
    """On 512x512 slices the NumPy class decision works inside the window that can hold tissue,
    read off the model grid: it must be smaller than the slice and give torch's full-slice labels."""
    from AdiposeSegLib.model.grid import GridMapping
    from AdiposeSegLib.model.grid_numpy import hu_to_grid, tissue_classes
    from AdiposeSegLib.reading.image_io import read_ct
    from AdiposeSegLib.reading.orientation import to_canonical

    monkeypatch.setenv("ADIPOSESEG_PRECISION", "fp32")   # the same network as torch's: labels equal but for ties
    image = read_ct(dicom_j2k)
    hu = sitk.GetArrayFromImage(to_canonical(image))[:4]
    model = load_model()
    spacing = image.GetSpacing()
    mapping = GridMapping.for_slice(hu.shape[1:], (spacing[1], spacing[0]), model.card.pixel_spacing_mm, model.card.grid_pixels)
    classes, (rows, cols) = tissue_classes(model.onnx_network()(hu_to_grid(hu, mapping, model.card.hu_window)), mapping)
    assert (rows.stop - rows.start) * (cols.stop - cols.start) < 0.8 * hu.shape[1] * hu.shape[2]
    options = SegmentOptions(device="cpu", find_levels=False, slices=(0, 4))
    onnx = segment_image(image, model, options).canonical_labels[:4].copy()
    monkeypatch.setenv("ADIPOSESEG_BACKEND", "torch")
    full = segment_image(image, load_model(), options).canonical_labels[:4]
    assert (onnx != full).sum() <= 10
    outside = np.ones(full.shape, bool)
    outside[:, rows, cols] = False
    assert not full[outside].any() and (full > 0).sum() > 50_000
