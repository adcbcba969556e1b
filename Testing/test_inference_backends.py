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


def test_bundled_model_runs_in_onnx_runtime_with_torchs_labels(example_ct_sm, example_tissue_labels, monkeypatch):
    image = sitk.ReadImage(str(example_ct_sm))
    options = SegmentOptions(device="cpu", find_levels=False)
    model = load_model()
    assert model.onnx_path is not None and model._network is None   # torch weights not even loaded
    onnx = segment_image(image, model, options)
    monkeypatch.setenv("ADIPOSESEG_BACKEND", "torch")
    reference = segment_image(image, load_model(), options)
    a, b = sitk.GetArrayViewFromImage(onnx.labels), sitk.GetArrayViewFromImage(reference.labels)
    assert (a != b).sum() <= 10, (a != b).sum()                  # float rounding at a tie, at most
    truth = sitk.ReadImage(str(example_tissue_labels))
    held_out = (slice(None), slice(None), slice(0, 10))           # slices the model never trained on
    ours, theirs = compare(onnx.labels[held_out], truth[held_out]), compare(reference.labels[held_out], truth[held_out])
    for tissue in ("SAT", "Muscle"):
        assert abs(ours[tissue]["dice"] - theirs[tissue]["dice"]) <= 0.002


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
