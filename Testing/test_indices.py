"""Clinical indices at L3: areas, muscle density, LAMA/NAMA, SMI/SATI/VATI and the cut-off flags (issue 10 B)."""
import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from AdiposeSegLib.errors import InputReadError
from AdiposeSegLib.measuring.indices import level_measures, level_report
from AdiposeSegLib.reading.orientation import to_canonical
from AdiposeSegLib.reading.patients import read_patients
from AdiposeSegLib.running.cli import main


def test_measures_by_hand():
    labels = np.zeros((10, 10), np.uint8)
    hu = np.zeros((10, 10), np.int16)
    labels[0, :4] = 1                      # SAT: 4 px
    labels[1, :3] = 2                      # VAT: 3 px
    labels[2, :5] = 3                      # muscle: 5 px at -20, 0, 20, 40, 60 HU
    hu[2, :5] = [-20, 0, 20, 40, 60]
    labels[3, :2] = 4                      # IMAT: 2 px
    m = level_measures(labels, hu, pixel_area_mm2=4.0)   # 0.04 cm2 per pixel
    assert m["SMA_cm2"] == pytest.approx(0.20) and m["SAT_cm2"] == pytest.approx(0.16)
    assert m["VAT_cm2"] == pytest.approx(0.12) and m["IMAT_cm2"] == pytest.approx(0.08)
    assert m["TAT_cm2"] == pytest.approx(0.36) and m["VAT_SAT_ratio"] == pytest.approx(0.75)
    assert m["SMD_HU"] == pytest.approx(20.0) and m["SMD_SD_HU"] == pytest.approx(np.std([-20, 0, 20, 40, 60]))
    assert m["LAMA_cm2"] == pytest.approx(0.12) and m["NAMA_cm2"] == pytest.approx(0.08)
    assert m["LAMA_pct_of_SMA"] == pytest.approx(60.0) and m["NAMA_pct_of_SMA"] == pytest.approx(40.0)


def _measures(sma, smd, vat=50.0, sat=100.0):
    return {"SMA_cm2": sma, "SMD_HU": smd, "SAT_cm2": sat, "VAT_cm2": vat, "IMAT_cm2": 5.0}


@pytest.mark.parametrize("sex,height,weight,sma,smd,sarcopenia,myosteatosis", [
    ("M", 1.80, 77.0, 42.9 * 3.24, 42.0, True, False),    # BMI 23.8: SMI < 43, SMD >= 41
    ("M", 1.80, 77.0, 43.1 * 3.24, 40.0, False, True),
    ("M", 1.80, 90.0, 52.0 * 3.24, 34.0, True, False),    # BMI 27.8: SMI < 53, SMD >= 33
    ("F", 1.60, 70.0, 41.5 * 2.56, 32.0, False, True),    # women: SMI < 41 at any BMI
    ("F", 1.60, 50.0, 40.5 * 2.56, 45.0, True, False),
])
def test_cut_offs_martin_2013(sex, height, weight, sma, smd, sarcopenia, myosteatosis):
    report = level_report(_measures(sma, smd), {"height_m": height, "weight_kg": weight, "sex": sex})
    assert report["SMI_cm2_m2"] == pytest.approx(sma / height ** 2)
    assert report["flags"]["sarcopenia"] is sarcopenia and report["flags"]["myosteatosis"] is myosteatosis
    assert "Martin" in report["flag_sources"]["sarcopenia"]


def test_undecidable_flags_are_left_out_not_guessed():
    report = level_report(_measures(150.0, 40.0, vat=120.0), None)
    assert "SMI_cm2_m2" not in report and set(report["flags"]) == {"visceral_obesity"}
    assert report["flags"]["visceral_obesity"] is True
    report = level_report(_measures(150.0, 40.0), {"height_m": 1.7})  # no weight, no sex: no BMI cut-offs
    assert report["SMI_cm2_m2"] == pytest.approx(150 / 1.7 ** 2) and set(report["flags"]) == {"visceral_obesity"}


def test_patients_file_refuses_a_height_in_cm(tmp_path):
    path = tmp_path / "patients.csv"
    path.write_text("id,height_m,weight_kg,sex\np1_ct,175,80,M\n")
    with pytest.raises(InputReadError, match="in cm"):
        read_patients(path)


def test_segment_reports_l3_indices_that_match_the_label_map(example_ct, tiny_model_dir, tmp_path):
    ct = sitk.ReadImage(str(example_ct))[:, :, 60:66]
    sitk.WriteImage(ct, str(tmp_path / "ct.nrrd"))
    assert main(["segment", str(tmp_path / "ct.nrrd"), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir),
                 "--device", "cpu", "-q", "--l3", "2", "--height-m", "1.70", "--weight-kg", "80", "--sex", "M",
                 "--labelmap", "nrrd"]) == 0
    summary = json.loads((tmp_path / "out" / "ct_summary.json").read_text())
    l3 = summary["levels"]["L3"]
    labels = sitk.GetArrayFromImage(to_canonical(sitk.ReadImage(str(tmp_path / "out" / "ct_labels.nrrd"))))[2]
    hu = sitk.GetArrayFromImage(to_canonical(sitk.ReadImage(str(tmp_path / "ct.nrrd"))))[2]
    px = np.prod(ct.GetSpacing()[:2]) / 100
    assert l3["slice"] == 2 and l3["source"] == "manual"
    assert l3["SMA_cm2"] == pytest.approx((labels == 3).sum() * px)
    assert l3["SAT_cm2"] == pytest.approx((labels == 1).sum() * px)
    if (labels == 3).any():
        assert l3["SMD_HU"] == pytest.approx(hu[labels == 3].mean())
    assert l3["SMI_cm2_m2"] == pytest.approx(l3["SMA_cm2"] / 1.7 ** 2)
    assert summary["patient"]["sex"] == "M" and summary["patient"]["sources"]["height_m"] == "command line"


def test_batch_takes_l3_and_patient_data_per_case_and_recomputes_when_they_change(example_ct_sm, tiny_model_dir, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    sitk.WriteImage(sitk.ReadImage(str(example_ct_sm))[:, :, 10:14], str(scans / "a.nrrd"))
    patients = tmp_path / "patients.csv"
    patients.write_text("id,height_m,weight_kg,sex,l3_slice\na,1.80,90,M,1\n")
    args = ["batch", str(scans), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir), "--device", "cpu", "-q",
            "--patients", str(patients)]
    assert main(args) == 0
    with open(tmp_path / "out" / "summary.csv") as fh:
        row = next(csv.DictReader(fh))
    summary = json.loads((tmp_path / "out" / "a" / "a_summary.json").read_text())
    assert row["L3_slice"] == "1" and float(row["L3_SMA_cm2"]) == pytest.approx(summary["levels"]["L3"]["SMA_cm2"], abs=1e-4)
    assert row["L3_SMI_cm2_m2"] and row["visceral_obesity"] in ("yes", "no")
    patients.write_text("id,height_m,weight_kg,sex,l3_slice\na,1.60,90,M,1\n")  # a corrected height
    assert main(args) == 0
    with open(tmp_path / "out" / "summary.csv") as fh:
        row = next(csv.DictReader(fh))
    assert "patient data or L3 changed" in row["message"]
    assert float(row["L3_SMI_cm2_m2"]) == pytest.approx(summary["levels"]["L3"]["SMA_cm2"] / 1.6 ** 2, abs=1e-3)


def test_segment_finds_l3_itself_and_reports_every_level(example_ct, tiny_model_dir, tmp_path):
    """`--l3 auto` (the default): the levels found on the bone, indices at each, the L3 row, the
    per-slice level column and the L1-L5 volumes; `--l3 N` overrides and keeps the found slice."""
    out = tmp_path / "out"
    assert main(["segment", str(example_ct), "-o", str(out), "--model", str(tiny_model_dir), "--device", "cpu", "-q",
                 "--height-m", "1.70", "--weight-kg", "80", "--sex", "M"]) == 0
    summary = json.loads((out / "example_ct_summary.json").read_text())
    levels = summary["levels"]
    assert set(levels) == {"S1", "L5", "L4", "L3", "L2", "L1", "T12"}
    l3 = levels["L3"]
    assert (l3["source"], l3["anchor"], l3["confidence"]) == ("auto", "sacrum and last rib", "high")
    assert abs(l3["slice"] - 73.8) <= 1.5 and l3["input_slice"] == l3["slice"]   # this file runs feet to head
    assert summary["l3"]["slice"] == l3["slice"] and l3["SMI_cm2_m2"] == pytest.approx(l3["SMA_cm2"] / 1.7 ** 2)
    assert {"sarcopenia", "visceral_obesity"} <= set(l3["flags"])   # myosteatosis needs muscle (the tiny model finds none)
    assert "flags" not in levels["L1"] and "SMA_cm2" in levels["L1"]           # cut-offs are defined at L3 only
    assert "SMA_cm2" not in levels["T12"] and "low confidence" in levels["T12"]["not_measured"]  # cut by the image top
    with open(out / "example_ct_slices.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_slice = {int(r["slice"]): r for r in rows}
    low, high = l3["range"]
    assert {by_slice[k]["level"] for k in range(low, high + 1)} == {"L3"}
    assert by_slice[low - 1]["level"] == "L4" and by_slice[high + 1]["level"] == "L2"
    volumes = summary["volumes_L1_L5"]
    first, last = volumes["slices"]
    assert by_slice[first]["level"] == "L5" and by_slice[last]["level"] == "L1"
    assert volumes["SAT_cm3"] == pytest.approx(sum(float(by_slice[k]["SAT_area_cm2"]) for k in range(first, last + 1)) * 0.3,
                                               rel=1e-4)

    assert main(["segment", str(example_ct), "-o", str(tmp_path / "manual"), "--model", str(tiny_model_dir),
                 "--device", "cpu", "-q", "--l3", "70", "--slices", "60:90"]) == 0
    summary = json.loads((tmp_path / "manual" / "example_ct_summary.json").read_text())
    manual = summary["levels"]["L3"]
    assert (manual["slice"], manual["source"], manual["auto_slice"]) == (70, "manual", l3["slice"])
    assert "not_measured" in summary["levels"]["L5"] and summary["volumes_L1_L5"] is None   # slices 60..89 only


def test_levels_can_be_turned_off(example_ct_sm, tiny_model_dir, tmp_path):
    assert main(["segment", str(example_ct_sm), "-o", str(tmp_path), "--model", str(tiny_model_dir), "--device", "cpu",
                 "-q", "--no-levels", "--slices", "0:4"]) == 0
    summary = json.loads((tmp_path / "example_ct_sm_summary.json").read_text())
    assert summary["levels"] == {} and summary["l3"] is None and summary["run"]["options"]["find_levels"] is False
