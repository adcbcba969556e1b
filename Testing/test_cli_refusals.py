"""Every promised one-line error (exit 2, no traceback, no ITK warning lines), and the smaller refusals of issue 9."""
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from AdiposeSegLib.running.cli import main
from AdiposeSegLib.reporting.writers import write_labelmap


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "AdiposeSegLib", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def _one_line(proc, message):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("adiposeseg: error:") and message in lines[0], lines[0]


@pytest.fixture
def slab(example_ct_sm, tmp_path):
    path = tmp_path / "slab.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(example_ct_sm))[:, :, 10:13], str(path))
    return path


def test_segment_never_overwrites_an_earlier_case_unless_told(slab, tiny_model_dir, tmp_path):
    args = ["segment", str(slab), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir), "--device", "cpu", "-q"]
    assert main(args + ["--labelmap", "nrrd"]) == 0
    first = (tmp_path / "out" / "slab_summary.json").read_text()
    proc = run_cli(*args)
    _one_line(proc, "already exists")
    assert (tmp_path / "out" / "slab_summary.json").read_text() == first
    assert main(args + ["--overwrite"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["slab.seg.nrrd", "slab_overlay.png", "slab_report.pdf", "slab_report.png", "slab_slices.csv",
                     "slab_summary.json"]  # the old label map went with its set


def test_dot_as_input_names_the_case_after_the_folder(dcmqi_series, tiny_model_dir, tmp_path):
    proc = run_cli("segment", ".", "-o", tmp_path / "out", "--model", tiny_model_dir, "--device", "cpu", "-q", cwd=dcmqi_series)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / f"{dcmqi_series.name}.seg.nrrd").is_file()
    assert not any(p.name.startswith(".") for p in (tmp_path / "out").iterdir())


@pytest.mark.parametrize("extra,message", [
    (["--batch-size", "-1"], "at least 1"),
    (["--l3", "999"], "--l3 999: the CT has 3 axial slices"),
    (["--model", "{tmp}/broken.zip"], "not a readable model archive"),
])
def test_bad_options_are_refused(extra, message, slab, tiny_model_dir, tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    extra = [e.format(tmp=tmp_path) for e in extra]
    model = [] if "--model" in extra else ["--model", str(tiny_model_dir)]
    _one_line(run_cli("segment", slab, "-o", tmp_path / "out", "--device", "cpu", *model, *extra), message)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_refused_dicom_series_is_one_line(dicom_j2k, tmp_path):
    import shutil

    folder = tmp_path / "series"
    shutil.copytree(dicom_j2k, folder)
    sorted(folder.iterdir())[7].unlink()
    _one_line(run_cli("segment", folder, "-o", tmp_path / "out"), "not evenly spaced")


def _labels(array, spacing=(1.0, 1.0, 1.0)):
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.uint8))
    image.SetSpacing(spacing)
    return image


def test_evaluate_refuses_what_it_used_to_score(tmp_path):
    a = np.zeros((2, 40, 40), np.uint8)
    a[:, 5:20, 5:20] = 1
    a[:, 22:30, 22:30] = 3
    write_labelmap(_labels(a), tmp_path / "a.nrrd")
    write_labelmap(_labels(a, (1.0, 1.0, 2.0)), tmp_path / "other_grid.nrrd")
    _one_line(run_cli("evaluate", tmp_path / "a.nrrd", tmp_path / "other_grid.nrrd"), "pass --resample")
    binary = (a == 1).astype(np.uint8)
    write_labelmap(_labels(binary), tmp_path / "mask.nrrd")
    _one_line(run_cli("evaluate", tmp_path / "mask.nrrd", tmp_path / "a.nrrd"), "binary mask")
    sitk.WriteImage(sitk.JoinSeries([_labels(a), _labels(a)]), str(tmp_path / "four_d.nrrd"))
    _one_line(run_cli("evaluate", tmp_path / "four_d.nrrd", tmp_path / "a.nrrd"), "4D image")
    proc = run_cli("evaluate", tmp_path / "a.nrrd", tmp_path / "a.nrrd", "--json")
    result = json.loads(proc.stdout)  # strict JSON: no NaN
    assert result["SAT"]["dice"] == 1.0 and result["VAT"]["dice"] is None and result["VAT"]["volume_diff_pct"] is None
    assert "NaN" not in proc.stdout
