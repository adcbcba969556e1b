"""Helpers the batch suites share: run `adiposeseg batch` in-process, read summary.csv, cut a real slab."""
import csv

import SimpleITK as sitk

from AdiposeSegLib.running.cli import main


def rows(path):
    """summary.csv as {case_id: row}."""
    with open(path, newline="") as fh:
        return {r["case_id"]: r for r in csv.DictReader(fh)}


def batch(source, out, model, *extra):
    return main(["batch", str(source), "-o", str(out), "--model", str(model), "--device", "cpu", "-q", *extra])


def slab(example_ct_sm, start, path):
    """Three real slices of the example CT from `start`, written to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.ReadImage(str(example_ct_sm))[:, :, start:start + 3], str(path))
    return path
