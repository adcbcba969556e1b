"""Hostile inputs round 2, batch and cohort (issue 22, items 7-11 and the crashes): runs that mixed
two results, lost a site's cases or aggregated an incomplete cohort without a word."""
import codecs
import json
import os
import subprocess
import sys

from AdiposeSegLib.running.cli import main
from AdiposeSegLib.running.output_lock import LOCK_PREFIX
from batch_helpers import batch as _batch, rows as _rows, slab as _slab


def _sha(path):
    from AdiposeSegLib.running.identity import content_fingerprint

    return content_fingerprint(path)


def test_a_second_batch_into_a_folder_in_use_is_refused(example_ct_sm, tiny_model_dir, tmp_path, capsys):
    _slab(example_ct_sm, 5, tmp_path / "in" / "a.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / f"{LOCK_PREFIX}all").write_text(json.dumps({"pid": other.pid, "host": os.uname().nodename,
                                                            "started": "2026-12-07T10:00:00", "command": "batch"}))
        assert _batch(tmp_path / "in", out, tiny_model_dir, "--no-imat") == 2
        assert f"pid {other.pid}" in capsys.readouterr().err and not (out / "a").exists()
        assert _batch(tmp_path / "in", out, tiny_model_dir, "--shard", "0/2") == 2   # a shard is not beside a whole run
    finally:
        other.kill()
        other.wait()
    assert _batch(tmp_path / "in", out, tiny_model_dir) == 0       # its holder is gone: the lock is stale, taken over
    assert not list(out.glob(LOCK_PREFIX + "*"))                     # and released after the run


def test_shards_of_one_job_run_beside_each_other(example_ct_sm, tiny_model_dir, tmp_path):
    _slab(example_ct_sm, 5, tmp_path / "in" / "a.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / f"{LOCK_PREFIX}shard-1-of-2").write_text(json.dumps({"pid": other.pid, "host": os.uname().nodename}))
        assert _batch(tmp_path / "in", out, tiny_model_dir, "--shard", "0/2") == 0
        assert _batch(tmp_path / "in", out, tiny_model_dir, "--shard", "1/2") == 2
    finally:
        other.kill()
        other.wait()


def test_two_sites_laid_out_alike_keep_their_own_cases(example_ct_sm, tiny_model_dir, tmp_path):
    a = _slab(example_ct_sm, 5, tmp_path / "siteA" / "p0" / "ct.nii.gz")
    b = _slab(example_ct_sm, 15, tmp_path / "siteB" / "p0" / "ct.nii.gz")
    out = tmp_path / "out"
    assert _batch(tmp_path / "siteA", out, tiny_model_dir) == 0
    assert _batch(tmp_path / "siteB", out, tiny_model_dir) == 0
    assert main(["aggregate", str(out), "--manifest", str(tmp_path / "siteA")]) == 0
    (row,) = _rows(out / "summary.csv").values()
    assert row["source"] == str(a.resolve()) and row["input_sha256"] == _sha(a)
    assert main(["aggregate", str(out), "--manifest", str(tmp_path / "siteB")]) == 0
    (row,) = _rows(out / "summary.csv").values()
    assert row["source"] == str(b.resolve()) and row["input_sha256"] == _sha(b)
    assert row["case_id"].startswith("ct_") and (out / "ct").is_dir()     # siteA's folder kept, siteB's beside it
    assert _batch(tmp_path / "siteA", out, tiny_model_dir) == 0             # and found again: skipped, not redone
    assert _rows(out / "summary.csv")["ct"]["message"].startswith("already done")


def test_the_fingerprint_is_of_the_content_that_was_measured(example_ct_sm, tiny_model_dir, tmp_path):
    from AdiposeSegLib.model.model_card import load_model
    from AdiposeSegLib.running.batch import process_case
    from AdiposeSegLib.running.identity import run_key
    from AdiposeSegLib.running.progress import RunControl
    from AdiposeSegLib.tissues import SegmentOptions

    path = _slab(example_ct_sm, 5, tmp_path / "in" / "a.nii.gz")
    measured = _sha(path)
    model, options = load_model(tiny_model_dir), SegmentOptions(device="cpu")
    replaced = []

    def replace_once(fraction, message):   # the scan is replaced while the network runs
        if not replaced:
            _slab(example_ct_sm, 15, tmp_path / "new" / "a.nii.gz").replace(path)
            replaced.append(True)

    outcome = process_case(str(path), "a", tmp_path / "out", model, options, RunControl(replace_once), None,
                           run_key(model, options))
    assert replaced and outcome.status == "done"
    assert outcome.summary["input"]["fingerprint"] == measured != _sha(path)


def test_a_scan_replaced_while_it_is_read_is_refused(example_ct_sm, tmp_path):
    import pytest
    from AdiposeSegLib.errors import InputReadError
    from AdiposeSegLib.running.identity import check_unchanged, file_states, input_files

    path = _slab(example_ct_sm, 5, tmp_path / "a.nii.gz")
    before = file_states(input_files(path))
    _slab(example_ct_sm, 15, tmp_path / "b.nii.gz").replace(path)
    with pytest.raises(InputReadError, match="changed while it was being read"):
        check_unchanged(path, before)


def test_shards_of_different_counts_do_not_aggregate_without_a_manifest(example_ct_sm, tiny_model_dir, tmp_path, capsys):
    for k in range(3):
        _slab(example_ct_sm, 3 + 5 * k, tmp_path / "in" / f"c{k}.nii.gz")
    out = tmp_path / "out"
    for shard in ("0/2", "1/3", "2/3"):
        assert _batch(tmp_path / "in", out, tiny_model_dir, "--shard", shard) == 0
    assert main(["aggregate", str(out)]) == 2
    assert "different counts" in capsys.readouterr().err
    assert main(["aggregate", str(out), "--manifest", str(tmp_path / "in")]) in (0, 1)   # the manifest says what is missing
    summary = json.loads(next(out.glob("*/*_summary.json")).read_text())
    assert summary["shard"]["count"] in (2, 3)


def test_a_missing_shard_is_named(example_ct_sm, tiny_model_dir, tmp_path, capsys):
    for k in range(2):
        _slab(example_ct_sm, 3 + 5 * k, tmp_path / "in" / f"c{k}.nii.gz")
    out = tmp_path / "out"
    assert _batch(tmp_path / "in", out, tiny_model_dir, "--shard", "0/3") == 0
    assert main(["aggregate", str(out)]) == 2
    assert "1/3, 2/3 have not run" in capsys.readouterr().err


def test_the_output_folder_inside_the_input_tree_is_not_a_case(example_ct_sm, tiny_model_dir, dicom_j2k, tmp_path):
    import shutil

    _slab(example_ct_sm, 5, tmp_path / "in" / "a.nii.gz")
    shutil.copytree(dicom_j2k, tmp_path / "in" / "series")
    out = tmp_path / "in" / "results"
    assert _batch(tmp_path / "in", out, tiny_model_dir) == 0
    assert _batch(tmp_path / "in", out, tiny_model_dir, "--labelmap", "nii.gz") == 0
    assert set(_rows(out / "summary.csv")) == {"a", "series"}


def test_a_corrupt_summary_names_its_case_and_is_computed_again(example_ct_sm, tiny_model_dir, tmp_path, capsys):
    for name in ("a", "b"):
        _slab(example_ct_sm, 5 if name == "a" else 15, tmp_path / "in" / f"{name}.nii.gz")
    out = tmp_path / "out"
    assert _batch(tmp_path / "in", out, tiny_model_dir) == 0
    (out / "a" / "a_summary.json").write_text((out / "a" / "a_summary.json").read_text()[:150])
    (out / "b" / "b_summary.json").write_text("[1, 2]")
    assert main(["aggregate", str(out)]) == 1
    rows = _rows(out / "summary.csv")
    assert rows["a"]["status"] == rows["b"]["status"] == "failed"
    assert "a_summary.json: not valid JSON" in rows["a"]["message"] and "not an AdiposeSeg result" in rows["b"]["message"]
    assert _batch(tmp_path / "in", out, tiny_model_dir) == 0
    rows = _rows(out / "summary.csv")
    assert rows["a"]["status"] == rows["b"]["status"] == "done"
    assert "unreadable" in rows["a"]["message"]


def test_list_files_with_a_bom_or_in_utf16_are_read(example_ct_sm, tmp_path):
    from AdiposeSegLib.reading.discover import find_inputs

    a = _slab(example_ct_sm, 5, tmp_path / "ä" / "a.nii.gz")
    for encoding, bom in (("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE)):
        listing = tmp_path / f"list-{encoding}.txt"
        listing.write_bytes(bom + f"# cohort\r\n{a}\r\n".encode(encoding))
        assert find_inputs(str(listing)) == [str(a.resolve())]


def test_a_250_character_folder_name_gives_short_output_names(example_ct_sm, tiny_model_dir, tmp_path):
    folder = tmp_path / ("p" * 250)
    path = _slab(example_ct_sm, 5, folder / "ct.nii.gz")
    series = tmp_path / ("s" * 250)
    series.mkdir()
    out = tmp_path / "out"
    assert main(["segment", str(folder), "-o", str(out), "--model", str(tiny_model_dir), "--device", "cpu", "-q"]) == 2  # not DICOM
    assert main(["segment", str(path), "-o", str(out), "--model", str(tiny_model_dir), "--device", "cpu", "-q",
                 "--case-id", "x" * 250]) == 0
    names = [p.name for p in out.iterdir()]
    assert names and max(len(n.encode()) for n in names) < 160
    assert _batch(tmp_path / ("p" * 250), tmp_path / "b", tiny_model_dir) == 0
