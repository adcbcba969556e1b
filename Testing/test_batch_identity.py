"""Batch rows that belong to their scan: identity, options, atomic result sets, leftovers, shards (issue 9, D E G)."""
import json
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from AdiposeSegLib.running.cli import main
from AdiposeSegLib.errors import OutputError
from batch_helpers import batch as _batch, rows as _rows, slab as _slab

NUMBERS = ["SAT_volume_cm3", "VAT_volume_cm3", "Muscle_volume_cm3", "IMAT_volume_cm3"]


def _single(path, model, tmp_path):
    out = tmp_path / f"single-{path.parent.name}"
    assert main(["segment", str(path), "-o", str(out), "--model", str(model), "--device", "cpu", "-q", "--case-id", "x"]) == 0
    return json.loads((out / "x_summary.json").read_text())["totals"]


def test_inserting_or_reordering_never_gives_a_row_another_scans_numbers(example_ct_sm, tiny_model_dir, tmp_path):
    cohort = tmp_path / "cohort"
    p1 = _slab(example_ct_sm, 0, cohort / "p1" / "ct.nii.gz")
    p3 = _slab(example_ct_sm, 20, cohort / "p3" / "ct.nii.gz")
    out = tmp_path / "out"
    assert _batch(cohort, out, tiny_model_dir) == 0
    first = _rows(out / "summary.csv")
    assert set(first) == {"p1_ct", "p3_ct"}
    p2 = _slab(example_ct_sm, 10, cohort / "p2" / "ct.nii.gz")  # a patient inserted between two finished ones
    assert _batch(cohort, out, tiny_model_dir) == 0
    second = _rows(out / "summary.csv")
    p2_alone = _single(p2, tiny_model_dir, tmp_path)
    for name in NUMBERS:
        assert float(second["p2_ct"][name]) == pytest.approx(p2_alone[name], abs=1e-3)
        assert second["p1_ct"][name] == first["p1_ct"][name] and second["p3_ct"][name] == first["p3_ct"][name]
    assert second["p2_ct"]["source"].endswith("p2/ct.nii.gz") and second["p2_ct"]["input_sha256"]
    assert float(second["p2_ct"]["SAT_volume_cm3"]) != float(second["p3_ct"]["SAT_volume_cm3"])
    # a list in another order gives the same rows
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(p) for p in (p3, p1, p2)) + "\n")
    assert _batch(listing, out, tiny_model_dir) == 0
    assert _rows(out / "summary.csv") == {k: dict(v, message=_rows(out / "summary.csv")[k]["message"],
                                                  seconds=_rows(out / "summary.csv")[k]["seconds"]) for k, v in second.items()}
    assert sorted(_rows(out / "summary.csv")) == ["p1_ct", "p2_ct", "p3_ct"]


def test_names_that_used_to_collide_get_their_own_results(example_ct_sm, tiny_model_dir, tmp_path):
    scans = tmp_path / "scans"
    a = _slab(example_ct_sm, 0, scans / "scan.nii.gz")
    b = _slab(example_ct_sm, 10, scans / "scan_2.nii.gz")
    c = _slab(example_ct_sm, 20, scans / "more" / "scan.nii.gz")
    out = tmp_path / "out"
    assert _batch(scans, out, tiny_model_dir) == 0
    rows = _rows(out / "summary.csv")
    assert sorted(rows) == ["more_scan", "scan", "scan_2"]
    for cid, path in (("scan", a), ("scan_2", b), ("more_scan", c)):
        assert rows[cid]["source"] == str(path.resolve())
        assert float(rows[cid]["SAT_volume_cm3"]) == pytest.approx(_single(path, tiny_model_dir, tmp_path / cid)["SAT_volume_cm3"], abs=1e-3)


def test_changed_options_model_or_input_are_computed_again(example_ct_sm, tiny_model_dir, tmp_path):
    scans = tmp_path / "scans"
    a = _slab(example_ct_sm, 12, scans / "a.nii.gz")
    _slab(example_ct_sm, 3, scans / "b.nii.gz")
    out = tmp_path / "out"
    assert _batch(scans, out, tiny_model_dir) == 0
    before = _rows(out / "summary.csv")
    assert _batch(scans, out, tiny_model_dir) == 0
    assert all("already done" in r["message"] for r in _rows(out / "summary.csv").values())
    assert _batch(scans, out, tiny_model_dir, "--fat-window=-150,-50", "--no-imat") == 0
    after = _rows(out / "summary.csv")
    assert all("options or labelling rules changed" in r["message"] for r in after.values())
    fat = sum(float(before["a"][f"{t}_volume_cm3"]) for t in ("SAT", "VAT", "IMAT"))
    assert 0 < sum(float(after["a"][f"{t}_volume_cm3"]) for t in ("SAT", "VAT", "IMAT")) < fat  # a narrower fat window
    summary = json.loads((out / "a" / "a_summary.json").read_text())
    assert summary["run"]["options"]["fat_window"] == [-150.0, -50.0] and summary["run"]["options"]["include_imat"] is False
    assert len(summary["run"]["model"]["weights_sha256"]) == 64
    _slab(example_ct_sm, 20, a)  # the file is replaced by another scan under the same name
    assert _batch(scans, out, tiny_model_dir, "--fat-window=-150,-50", "--no-imat") == 0
    rows = _rows(out / "summary.csv")
    assert "input changed" in rows["a"]["message"] and "already done" in rows["b"]["message"]


def test_a_result_made_under_other_labelling_rules_is_computed_again(example_ct_sm, tiny_model_dir, tmp_path):
    from AdiposeSegLib.measuring.postprocess import LABEL_RULES

    scans = tmp_path / "scans"
    _slab(example_ct_sm, 12, scans / "a.nii.gz")
    out = tmp_path / "out"
    assert _batch(scans, out, tiny_model_dir) == 0
    assert _rows(out / "summary.csv")["a"]["label_rules"] == str(LABEL_RULES)
    stored = out / "a" / "a_summary.json"
    summary = json.loads(stored.read_text())
    summary["run"]["label_rules"] = LABEL_RULES - 1          # as an earlier version of the rules wrote it
    summary["totals"]["IMAT_volume_cm3"] = 0.0
    stored.write_text(json.dumps(summary))
    assert _batch(scans, out, tiny_model_dir) == 0
    row = _rows(out / "summary.csv")["a"]
    assert "labelling rules changed" in row["message"] and row["label_rules"] == str(LABEL_RULES)
    assert json.loads(stored.read_text())["run"]["label_rules"] == LABEL_RULES


def test_a_failed_rerun_keeps_the_complete_earlier_set_and_reports_the_failure(example_ct_sm, tiny_model_dir, tmp_path):
    scans = tmp_path / "scans"
    a = _slab(example_ct_sm, 12, scans / "a.nii.gz")
    out = tmp_path / "out"
    assert _batch(scans, out, tiny_model_dir) == 0
    files = sorted(p.name for p in (out / "a").iterdir())
    a.write_bytes(a.read_bytes()[:3000])  # the scan is now broken
    assert _batch(scans, out, tiny_model_dir) == 1
    row = _rows(out / "summary.csv")["a"]
    assert row["status"] == "failed" and "truncated" in row["message"]
    assert sorted(p.name for p in (out / "a").iterdir()) == sorted(files + ["a_failed.json"])
    json.loads((out / "a" / "a_summary.json").read_text())  # still whole


def test_leftovers_of_a_killed_run_are_cleaned_and_never_taken_as_results(example_ct_sm, tiny_model_dir, tmp_path):
    scans = tmp_path / "scans"
    _slab(example_ct_sm, 12, scans / "a.nii.gz")
    out = tmp_path / "out"
    dead = f".adiposeseg-staging-{socket.gethostname()}-999999-abcd"
    (out / "a" / dead).mkdir(parents=True)
    (out / "a" / dead / "a.seg.nrrd").write_bytes(b"partial")
    (out / "a" / "a.seg.nrrd").write_bytes(b"a result without its summary: not complete")
    (out / "a" / f".a_summary.json.adiposeseg-old-{socket.gethostname()}-999999").write_text("{}")
    assert _batch(scans, out, tiny_model_dir) == 0
    assert _rows(out / "summary.csv")["a"]["status"] == "done"
    assert sorted(p.name for p in (out / "a").iterdir()) == ["a.seg.nrrd", "a_overlay.png", "a_report.pdf", "a_report.png",
                                                            "a_slices.csv", "a_summary.json"]
    assert (out / "a" / "a.seg.nrrd").read_bytes()[:4] == b"NRRD"


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "AdiposeSegLib", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_shards_in_parallel_with_one_killed_equal_a_single_run(example_ct_sm, tiny_model_dir, tmp_path):
    cohort = tmp_path / "cohort"
    paths = [_slab(example_ct_sm, 2 * k, cohort / f"p{k}" / "ct.nii.gz") for k in range(8)]
    manifest = tmp_path / "manifest.txt"
    manifest.write_text("\n".join(str(p) for p in paths) + "\n")
    common = ["--model", tiny_model_dir, "--device", "cpu", "-q"]
    single = tmp_path / "single"
    assert _batch(manifest, single, tiny_model_dir) == 0
    sharded = tmp_path / "sharded"
    procs = [_cli("batch", manifest, "-o", sharded, "--shard", f"{i}/3", *common) for i in range(3)]
    # kill shard 0 as soon as it has finished one case (mid-run), then run it again
    from AdiposeSegLib.running.batch import in_shard
    from AdiposeSegLib.running.identity import case_ids

    mine = [cid for cid in case_ids([str(p) for p in paths]) if in_shard(cid, (0, 3))]
    assert len(mine) >= 2
    deadline = time.time() + 120
    while not any((sharded / c / f"{c}_summary.json").exists() for c in mine) and time.time() < deadline:
        time.sleep(0.05)
    procs[0].send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(300)
    assert procs[1].returncode == 0 and procs[2].returncode == 0
    again = _cli("batch", manifest, "-o", sharded, "--shard", "0/3", *common)
    assert again.wait(300) == 0, again.stderr.read()
    assert main(["aggregate", str(sharded), "--manifest", str(manifest)]) == 0
    a, b = _rows(single / "summary.csv"), _rows(sharded / "summary.csv")
    assert sorted(a) == sorted(b) and len(a) == 8
    for cid in a:
        for column in ["status", "source", "input_sha256", "model_weights_sha256", "options", "slices"] + NUMBERS:
            assert a[cid][column] == b[cid][column], (cid, column)
    assert not any(p.name.startswith(".") for d in sharded.iterdir() if d.is_dir() for p in d.iterdir())


def test_aggregate_reports_missing_cases(example_ct_sm, tiny_model_dir, tmp_path, capsys):
    cohort = tmp_path / "cohort"
    paths = [_slab(example_ct_sm, 2 * k, cohort / f"p{k}.nii.gz") for k in range(3)]
    manifest = tmp_path / "manifest.txt"
    manifest.write_text("\n".join(str(p) for p in paths) + "\n")
    out = tmp_path / "out"
    assert _batch(manifest, out, tiny_model_dir, "--shard", "0/1") == 0
    extra = tmp_path / "more.txt"
    extra.write_text(manifest.read_text() + str(_slab(example_ct_sm, 9, cohort / "late.nii.gz")) + "\n")
    assert main(["aggregate", str(out), "--manifest", str(extra)]) == 1
    assert "1 missing" in capsys.readouterr().out
    assert _rows(out / "summary.csv")["late"]["status"] == "missing"


def test_full_disk_keeps_the_earlier_result_set_whole(tiny_disk, tiny_model, example_ct_sm):
    from AdiposeSegLib.reading.image_io import read_ct
    from AdiposeSegLib.running.pipeline import segment_image
    from AdiposeSegLib.reporting.results import write_results
    from AdiposeSegLib.tissues import SegmentOptions

    ct = read_ct(example_ct_sm)
    small = segment_image(ct[:, :, 10:12], tiny_model, SegmentOptions(device="cpu"))
    write_results(small, tiny_disk, "case", tiny_model)
    import os

    free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
    (tiny_disk / "ballast").write_bytes(b"x" * max(0, free - 8192))   # too little room even for the measurements
    before = {p.name: p.read_bytes() for p in tiny_disk.iterdir()}
    big = segment_image(ct, tiny_model, SegmentOptions(device="cpu"))
    with pytest.raises(OutputError, match="disk is full"):
        write_results(big, tiny_disk, "case", tiny_model, overwrite=True, labelmap_format="nrrd")
    assert {p.name: p.read_bytes() for p in tiny_disk.iterdir()} == before  # old set whole, no leftovers


@pytest.mark.parametrize("room", ["measurements", "all but the summary"])
def test_a_full_disk_costs_the_optional_outputs_not_the_measurements(small_disk, tiny_model, example_ct_sm, tmp_path, room):
    """The figures, the report and DICOM objects are written before the summary: when they filled the
    disk, they are dropped (and named) so that the segmentation, table and summary are written."""
    import SimpleITK as sitk

    from AdiposeSegLib.reading.image_io import read_ct
    from AdiposeSegLib.running.pipeline import segment_image
    from AdiposeSegLib.reporting.results import write_results
    from AdiposeSegLib.tissues import SegmentOptions

    import os

    result = segment_image(read_ct(example_ct_sm), tiny_model, SegmentOptions(device="cpu"))
    sizes = {p.name: p.stat().st_size for p in write_results(result, tmp_path / "roomy", "case", tiny_model,
                                                            labelmap_format="nrrd").summary.parent.iterdir()}
    pages = {k: -(-v // 4096) * 4096 for k, v in sizes.items()}            # tmpfs counts whole pages
    optional = sum(v for k, v in pages.items() if k.endswith((".png", ".pdf")))
    needed = sum(v for k, v in pages.items() if not k.endswith((".png", ".pdf", "_summary.json")))
    assert optional > 65536, sizes
    extra = None
    if room == "measurements":       # room for the measurements and a part of one figure
        left = needed + pages["case_summary.json"] + 8192
    else:                            # room for everything but a summary made large: it comes last
        extra = {"padding": "x" * (optional // 2)}
        left = needed + optional + optional // 4
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "ballast").write_bytes(b"x" * (free - left))
    files = write_results(result, small_disk, "case", tiny_model, labelmap_format="nrrd", extra=extra)
    summary = json.loads(files.summary.read_text())
    if room == "measurements":     # each optional output failed as it was written
        assert "patient report" in {f["output"] for f in summary["optional_outputs_failed"]}
    else:                          # all were written, then the summary did not fit: they made room for it
        assert any(n.startswith("the disk was full:") for n in summary["notes"]), summary["notes"]
        assert {f["output"] for f in summary["optional_outputs_failed"]} >= {"report", "report_pdf"}
    assert "report" not in summary["files"] and not (small_disk / "case_report.png").exists()
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(small_disk / "case_labels.nrrd")))
    assert np.array_equal(labels, sitk.GetArrayViewFromImage(result.labels))
    assert summary["totals"]["SAT_volume_cm3"] == pytest.approx(result.statistics.totals["SAT_volume_cm3"])


def test_case_ids_are_the_shortest_unique_end_of_the_path_and_old_folders_resume(example_ct_sm, tiny_model_dir,
                                                                                  tmp_path, capsys):
    """Issue 26 E: a scan's id is its name when no other input shares it, not its flattened path; a batch
    started with the earlier, longer ids resumes in those folders instead of measuring again."""
    import os
    import shutil

    from AdiposeSegLib.running.identity import case_ids, legacy_case_ids

    a = _slab(example_ct_sm, 0, tmp_path / "site" / "x" / "a.nii.gz")
    b = _slab(example_ct_sm, 10, tmp_path / "deep" / "y" / "z" / "ct.nii.gz")
    c = _slab(example_ct_sm, 20, tmp_path / "deep" / "w" / "ct.nii.gz")
    inputs = [str(a), str(b), str(c)]
    assert case_ids(inputs) == ["a", "z_ct", "w_ct"] == case_ids(inputs[::-1])[::-1]
    assert legacy_case_ids(inputs) == ["site_x_a", "deep_y_z_ct", "deep_w_ct"]

    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(inputs) + "\n")
    out = tmp_path / "out"
    assert _batch(listing, out, tiny_model_dir) == 0
    assert sorted(_rows(out / "summary.csv")) == ["a", "w_ct", "z_ct"]

    # the same results as an earlier version left them: folders and files under the long ids
    old = tmp_path / "old"
    for new_id, old_id in zip(case_ids(inputs), legacy_case_ids(inputs)):
        shutil.copytree(out / new_id, old / old_id)
        for path in sorted((old / old_id).iterdir()):
            path.rename(path.with_name(old_id + path.name[len(new_id):]))
        summary = old / old_id / f"{old_id}_summary.json"
        record = json.loads(summary.read_text())
        record["case_id"] = old_id
        summary.write_text(json.dumps(record))
    before = {p: os.stat(p).st_mtime_ns for p in old.rglob("*.seg.nrrd")}
    capsys.readouterr()
    assert _batch(listing, old, tiny_model_dir) == 0
    assert "3 skipped" in capsys.readouterr().out                  # resumed: nothing measured again
    assert sorted(_rows(old / "summary.csv")) == ["deep_w_ct", "deep_y_z_ct", "site_x_a"]
    assert {p: os.stat(p).st_mtime_ns for p in old.rglob("*.seg.nrrd")} == before
    assert main(["aggregate", str(old), "--manifest", str(listing)]) == 0   # the manifest finds them too
