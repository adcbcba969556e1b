"""The `adiposeseg` command on real CT: the four outputs, their geometry and numbers; one-line errors; batch."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from AdiposeSegLib.running.cli import main
from AdiposeSegLib.reading.image_io import read_ct
from AdiposeSegLib.reading.orientation import to_canonical
from AdiposeSegLib.tissues import COLORS, LABELS, NAMES


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "AdiposeSegLib", *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("source", ["dicom_j2k", "example_ct"])
def test_segment_writes_four_consistent_outputs(source, request, tiny_model_dir, tmp_path):
    path = request.getfixturevalue(source)
    assert main(["segment", str(path), "-o", str(tmp_path), "--model", str(tiny_model_dir), "--labelmap", "nii.gz",
                 "--device", "cpu", "-q", "--case-id", "case"]) == 0
    files = {p.name for p in tmp_path.iterdir()}
    assert {"case.seg.nrrd", "case_labels.nii.gz", "case_slices.csv", "case_overlay.png", "case_summary.json"} <= files
    image = read_ct(path)
    labels = sitk.ReadImage(str(tmp_path / "case_labels.nii.gz"))
    assert labels.GetSize() == image.GetSize()
    assert labels.GetSpacing() == pytest.approx(image.GetSpacing(), abs=1e-6)
    assert labels.GetOrigin() == pytest.approx(image.GetOrigin(), abs=1e-4)
    assert labels.GetDirection() == pytest.approx(image.GetDirection(), abs=1e-6)

    seg = slicerio.read_segmentation(str(tmp_path / "case.seg.nrrd"))
    assert [s["name"] for s in seg["segments"]] == ["SAT", "VAT", "Muscle", "IMAT"]
    assert [s["color"] for s in seg["segments"]] == [pytest.approx([c / 255 for c in COLORS[k]], abs=1e-5) for k in LABELS]
    assert np.array_equal(seg["voxels"].transpose(2, 1, 0), sitk.GetArrayViewFromImage(labels))

    canon = sitk.GetArrayFromImage(to_canonical(labels))
    pixel_cm2 = image.GetSpacing()[0] * image.GetSpacing()[1] / 100
    with open(tmp_path / "case_slices.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == image.GetSize()[2]
    for row in rows:
        k = int(row["slice"])
        for label in LABELS:
            assert float(row[f"{NAMES[label]}_area_cm2"]) == pytest.approx((canon[k] == label).sum() * pixel_cm2, abs=1e-4)
    summary = json.loads((tmp_path / "case_summary.json").read_text())
    voxel_cm3 = np.prod(image.GetSpacing()) / 1000
    assert summary["totals"]["SAT_volume_cm3"] == pytest.approx((canon == 1).sum() * voxel_cm3)


@pytest.mark.parametrize("args,message", [
    (["segment", "{tmp}/missing.nii.gz", "-o", "{tmp}/o"], "no such file or folder"),
    (["segment", "{tmp}/mr.nii.gz", "-o", "{tmp}/o"], "not CT Hounsfield units"),
    (["segment", "{tmp}/notes.txt", "-o", "{tmp}/o"], "not a recognised image file"),
    (["segment", "{ct}", "-o", "{tmp}/o", "--model", "{tmp}"], "not a model directory"),
    (["segment", "{ct}", "-o", "{tmp}/o", "--slices", "500:600", "--model", "{model}"], "selects no slice"),
    (["segment", "{ct}", "-o", "{tmp}/o", "--fat-window=-30,-190", "--model", "{model}"], "low < high"),
])
def test_user_mistakes_are_one_line_errors(args, message, tmp_path, example_ct_sm, tiny_model_dir):
    mr = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 1200, (3, 64, 64)).astype(np.int16))
    sitk.WriteImage(mr, str(tmp_path / "mr.nii.gz"))
    (tmp_path / "notes.txt").write_text("not an image")
    filled = [a.format(tmp=tmp_path, ct=example_ct_sm, model=tiny_model_dir) for a in args]
    proc = run_cli(*filled)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("adiposeseg: error:") and message in lines[0]
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_batch_goes_past_a_bad_scan_and_resumes(tmp_path, example_ct_sm, dcmqi_series, tiny_model_dir):
    scans = tmp_path / "scans"
    scans.mkdir()
    sitk.WriteImage(sitk.ReadImage(str(example_ct_sm)), str(scans / "a.nii.gz"))
    sitk.WriteImage(sitk.ReadImage(str(example_ct_sm))[:, :, :4], str(scans / "b.nrrd"))
    (scans / "broken.nii.gz").write_bytes(example_ct_sm.read_bytes()[:5000])
    dcm = scans / "series1"
    dcm.mkdir()
    for f in dcmqi_series.glob("*.dcm"):
        (dcm / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "out"
    proc = run_cli("batch", scans, "-o", out, "--model", tiny_model_dir, "--device", "cpu", "--workers", "2")
    assert proc.returncode == 1, proc.stderr
    assert "FAILED broken" in proc.stderr and "truncated or corrupt" in proc.stderr
    with open(out / "summary.csv") as fh:
        rows = {r["case_id"]: r for r in csv.DictReader(fh)}
    assert {k: r["status"] for k, r in rows.items()} == {"a": "done", "b": "done", "broken": "failed", "series1": "done"}
    assert "truncated" in rows["broken"]["message"]
    summary = json.loads((out / "a" / "a_summary.json").read_text())
    assert float(rows["a"]["SAT_volume_cm3"]) == pytest.approx(summary["totals"]["SAT_volume_cm3"], abs=1e-4)
    assert rows["a"]["source"] == str((scans / "a.nii.gz").resolve()) == summary["input"]["path"]
    assert (out / "series1" / "series1.seg.nrrd").is_file()
    first = (out / "a" / "a_summary.json").stat().st_mtime_ns
    again = run_cli("batch", scans, "-o", out, "--model", tiny_model_dir, "--device", "cpu")
    assert "3 skipped" in again.stdout
    assert (out / "a" / "a_summary.json").stat().st_mtime_ns == first
    other = run_cli("batch", scans, "-o", out, "--model", tiny_model_dir, "--device", "cpu", "--min-island-mm2", "50")
    assert "0 skipped" in other.stdout and "3 done" in other.stdout  # other options: never the old numbers


def test_claiming_visceral_fat_only_turns_unlabelled_fat_into_vat(example_ct_sm, default_model, tmp_path):
    """The default run claims unlabelled fat next to VAT; --no-claim-visceral-fat leaves it: the two label
    maps differ only where the first has VAT and the second nothing, on fat-range voxels; the option
    survives the trip to the module's child process (options_to_dict)."""
    from AdiposeSegLib.tissues import SegmentOptions, options_from_dict, options_to_dict

    model = str(default_model.directory)
    for name, extra in (("on", []), ("off", ["--no-claim-visceral-fat"])):
        assert main(["segment", str(example_ct_sm), "-o", str(tmp_path / name), "--model", model, "--device", "cpu",
                     "-q", "--case-id", "case", "--labelmap", "nii.gz", "--no-levels", *extra]) == 0
    on, off = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / n / "case_labels.nii.gz"))) for n in ("on", "off"))
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(example_ct_sm)))
    changed = on != off
    assert changed.sum() > 100
    assert (on[changed] == 2).all() and (off[changed] == 0).all()
    assert ((hu[changed] >= -190) & (hu[changed] <= -30)).all()
    with open(tmp_path / "on" / "case_slices.csv") as a, open(tmp_path / "off" / "case_slices.csv") as b:
        vat_on, vat_off = (sum(float(r["VAT_area_cm2"]) for r in csv.DictReader(f)) for f in (a, b))
    assert vat_on > vat_off
    assert options_from_dict(options_to_dict(SegmentOptions(claim_visceral_fat=False))).claim_visceral_fat is False
    assert options_from_dict(options_to_dict(SegmentOptions())).claim_visceral_fat is True


def test_console_lines_are_clean_and_timings_agree_with_the_summary(example_ct_sm, tiny_model_dir, tmp_path):
    """Issue 26: in a log (no terminal) no progress bar is glued to the result line, and the printed
    segment time is the summary's stages, not their sum with their own parts."""
    import re

    done = subprocess.run([sys.executable, "-m", "AdiposeSegLib", "segment", str(example_ct_sm), "-o", str(tmp_path / "o"),
                           "--model", str(tiny_model_dir), "--device", "cpu", "--case-id", "c"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr + done.stdout and "|" not in done.stderr
    first = done.stdout.splitlines()[0]
    match = re.match(r"c: \d+ slices on cpu, read [\d.]+s, segment ([\d.]+)s, write [\d.]+s$", first)
    assert match, first
    timings = json.loads((tmp_path / "o" / "c_summary.json").read_text())["timings_s"]
    stages = sum(timings[k] for k in ("prepare_s", "segment_s", "levels_s", "statistics_s"))
    assert abs(float(match.group(1)) - stages) <= 0.06
