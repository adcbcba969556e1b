"""The one-page patient report (issue 26 E): written by `segment` beside the measurements, with the
levels picture, the L3 values and indices in their units, the flags, and never at the measurements' cost."""
import json

import numpy as np
import pytest
from PIL import Image

from AdiposeSegLib.reporting import patient_report
from AdiposeSegLib.running.cli import main


@pytest.fixture(scope="module")
def segmented(example_ct, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")     # the default model: real muscle, so real SMD and flags
    assert main(["segment", str(example_ct), "-o", str(out), "--device", "cpu", "-q",
                 "--case-id", "case", "--height-m", "1.75", "--weight-kg", "80", "--sex", "M"]) == 0
    return out, json.loads((out / "case_summary.json").read_text())


def test_segment_writes_the_report_as_png_and_pdf(segmented):
    out, summary = segmented
    assert summary["files"]["report"] == str(out / "case_report.png")
    assert summary["files"]["report_pdf"] == str(out / "case_report.pdf")
    assert (out / "case_report.pdf").read_bytes().startswith(b"%PDF")
    page = Image.open(out / "case_report.png")
    assert page.width == patient_report.WIDTH and 600 < page.height < 2000
    assert summary["optional_outputs_failed"] == []


def test_the_report_shows_the_levels_picture_and_the_l3_values_in_their_units(segmented):
    out, summary = segmented
    levels_png = Image.open(out / "case_levels.png").convert("RGB")
    page = patient_report.report_image(summary, levels_png)
    x, y, w, h = page.info["levels_box"]
    shown = np.asarray(page.convert("RGB"))[y:y + h, x:x + w].astype(int)
    expected = np.asarray(levels_png.resize((w, h), Image.BILINEAR)).astype(int)
    assert np.abs(shown - expected).mean() < 1.0           # the levels picture itself, not a blank box
    l3 = summary["levels"]["L3"]
    head, rows = patient_report._l3_lines(summary["levels"])
    assert head.startswith(f"L3: slice {l3['slice']} ") and "high confidence" in head
    values = dict(rows)
    assert values["Skeletal muscle area (SMA) (cm2)"] == f"{l3['SMA_cm2']:.1f}"
    assert values["Skeletal muscle density (SMD) (HU)"] == f"{l3['SMD_HU']:.1f}"
    assert values["Skeletal muscle index (SMI) (cm2/m2)"] == f"{l3['SMA_cm2'] / 1.75 ** 2:.1f}"
    assert values["BMI (kg/m2)"] == f"{80 / 1.75 ** 2:.1f}"
    flags = patient_report._flag_lines(summary["levels"], summary["patient"])
    assert {line.split(":")[0] for line in flags} == {"sarcopenia", "myosteatosis", "visceral obesity"}


def test_without_a_trusted_l3_the_report_says_so_and_shows_no_numbers():
    levels = {"L3": {"slice": 40, "z_mm": 120.0, "source": "auto", "confidence": "low", "anchor": "sacrum",
                     "not_measured": "found with low confidence: check the level (and give L3 by hand)"}}
    head, rows = patient_report._l3_lines(levels)
    assert rows == [] and "low confidence" in head and "Not measured" in head
    head, rows = patient_report._l3_lines({})
    assert rows == [] and "not found" in head
    page = patient_report.report_image({"case_id": "x", "levels": levels, "notes": ["a note"]})
    assert page.width == patient_report.WIDTH and "levels_box" not in page.info


def test_a_report_that_fails_costs_no_measurement(example_ct_sm, tiny_model_dir, tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(patient_report, "report_image", broken)   # a failure injected, the rest runs for real
    assert main(["segment", str(example_ct_sm), "-o", str(tmp_path), "--model", str(tiny_model_dir), "--device", "cpu",
                 "-q", "--case-id", "c", "--no-levels"]) == 3      # 3: measured, an optional output missing
    summary = json.loads((tmp_path / "c_summary.json").read_text())
    assert [f["output"] for f in summary["optional_outputs_failed"]] == ["patient report"]
    assert any(n.startswith("no patient report written: OSError") for n in summary["notes"])
    assert "report" not in summary["files"] and not list(tmp_path.glob("c_report.*"))
    assert (tmp_path / "c.seg.nrrd").is_file() and summary["totals"]["SAT_volume_cm3"] > 0
