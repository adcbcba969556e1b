"""Every file of the extension loads on Slicer 5.8's Python (3.9), and the torch-free engine tests pass there.

Uses .venv39 made by scripts/setup.sh (numpy, SimpleITK, pydicom ... but no torch, slicer or Qt:
those are stubbed by Testing/py39/import_all.py). Also ruff with target-version py39.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY39 = ROOT / ".venv39" / "bin" / "python"
TORCH_FREE_TESTS = ["test_read.py", "test_writers.py", "test_postprocess.py", "test_evaluate.py", "test_slice_workers.py"]


def _py39() -> Path:
    if not PY39.is_file():
        pytest.fail(f"{PY39} is missing: run scripts/setup.sh on a machine with Python 3.9 (pyenv install 3.9)")
    return PY39


def test_every_file_imports_on_python39():
    out = subprocess.run([str(_py39()), str(ROOT / "Testing" / "py39" / "import_all.py")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Python 3.9" in out.stdout and " 0 problems" in out.stdout


def test_torch_free_engine_tests_pass_on_python39(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "AdiposeSeg"), str(ROOT)]))
    out = subprocess.run([str(_py39()), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path}",
                          *[str(ROOT / "Testing" / name) for name in TORCH_FREE_TESTS]],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout


def test_ruff_finds_nothing_for_python39():
    ruff = Path(sys.executable).parent / "ruff"
    out = subprocess.run([str(ruff), "check", "--target-version", "py39", "--select", "E9,F,FA",
                          "AdiposeSeg", "training", "Testing", "benchmarks", "scripts"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
