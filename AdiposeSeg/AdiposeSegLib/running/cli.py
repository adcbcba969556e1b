"""The `adiposeseg` command: segment, batch, evaluate, demo."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .. import __version__
from ..errors import AdiposeSegError, Cancelled
from ..tissues import HUWindows, SegmentOptions, NAMES, LABELS


def _window(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a window as LOW,HIGH in HU, e.g. -190,-30") from None
    return lo, hi


def _slices(text: str) -> tuple[int, int] | None:
    if text == "all":
        return None
    try:
        if ":" in text:
            a, b = text.split(":")
            return int(a), int(b)
        return int(text), int(text) + 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give all, one slice index N, or a range START:STOP") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1")
    return value


# Exit codes: 0 all written; 1 batch with failed scans; 2 an error, nothing written; 3 the measurements are
# written but an optional output (figure, DICOM SEG/SR) is not (named in the notes); 130 cancelled.
OPTIONAL_OUTPUT_FAILED = 3


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model directory or .zip (default: the bundled model)")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    p.add_argument("--batch-size", type=_positive_int, default=8, help="slices per network batch (default 8)")
    p.add_argument("--fat-window", type=_window, default=(-190.0, -30.0), metavar="LO,HI", help="fat HU window, written --fat-window=-190,-30 (the default)")
    p.add_argument("--muscle-window", type=_window, default=(-29.0, 150.0), metavar="LO,HI", help="muscle HU window, written --muscle-window=-29,150 (the default)")
    p.add_argument("--min-island-mm2", type=float, default=10.0, help="remove in-slice islands of SAT, VAT and muscle smaller than this (default 10; IMAT is never removed)")
    p.add_argument("--no-imat", action="store_true", help="do not label intermuscular fat separately")
    p.add_argument("--no-claim-visceral-fat", action="store_true",
                   help="leave fat-range pixels the network did not label unlabelled (by default, patches of them up to 2 cm2 "
                        "next to VAT, clear of gas and air and not touching SAT, are VAT)")
    p.add_argument("--include-arms", action="store_true",
                   help="measure arms too (by default an arm lying apart beside the trunk, with air between, is not "
                        "measured: the clinical muscle and fat areas are the trunk's)")
    p.add_argument("--labelmap", choices=("nrrd", "nii.gz", "nii", "mha"), help="also write a plain label map in this format")
    p.add_argument("--dicom-seg", action=argparse.BooleanOptionalAction, default=None,
                   help="write a DICOM SEG + SR referencing the source CT (default: on for DICOM input)")
    p.add_argument("--uid-root", help="UID root for the new SEG/SR UIDs, e.g. your site's 1.2.840.99999. (default: "
                                      "$ADIPOSESEG_UID_ROOT, else UUID-derived 2.25. UIDs)")
    p.add_argument("--content-creator", default="", metavar="NAME",
                   help="the SEG's Content Creator's Name, DICOM person name Family^Given (default: empty, an unreviewed "
                        "automatic result)")
    p.add_argument("--no-levels", action="store_true",
                   help="do not look for the vertebral levels (T12..L5); L3 is then only what --l3 N or the patients file gives")


def _options(args) -> SegmentOptions:
    return SegmentOptions(
        windows=HUWindows(fat=args.fat_window, muscle=args.muscle_window),
        min_island_mm2=args.min_island_mm2, include_imat=not args.no_imat,
        slices=getattr(args, "slices", None), batch_size=args.batch_size, device=args.device,
        find_levels=not args.no_levels, claim_visceral_fat=not args.no_claim_visceral_fat,
        include_arms=args.include_arms,
    )


def _l3(text: str):
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a slice number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a slice number is 0 or more, got {value}")
    return value


def _progress_bar(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    # a bar only on a terminal: in a log file its carriage returns glue it to the result lines
    return tqdm(total=total, desc=desc, unit="%", disable=quiet or not sys.stderr.isatty(), leave=False,
                file=sys.stderr, delay=0.5, bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")


PIPELINE_STAGES = ("prepare_s", "segment_s", "levels_s", "statistics_s")   # the others are parts of these


def cmd_segment(args) -> int:
    from .identity import bounded_id, check_unchanged, file_states, input_files, input_identity, run_key
    from ..reading.image_io import read_ct
    from ..model.model_card import load_model
    from .pipeline import segment_image
    from .progress import RunControl
    from ..reading.dicom import seg_sources
    from ..reading.patients import merged
    from ..reporting.results import case_id_for, summary_extra, write_results

    options = _options(args)
    case_id = bounded_id(args.case_id) if args.case_id else case_id_for(args.input)
    given = _given_patient(args, case_id)
    if args.l3 == "auto":   # the patients file's L3, else the level found on the bone
        args.l3 = given.get("l3_slice") if given else None
    t0 = time.perf_counter()
    info: dict = {}
    states = file_states(input_files(args.input)) if os.path.exists(args.input) else {}
    image = read_ct(args.input, args.series_uid, info=info)
    check_unchanged(args.input, states)
    identity = input_identity(args.input, (info.get("series") or {}).get("uid", ""), info.get("files"))
    read_s = time.perf_counter() - t0
    model = load_model(args.model)
    if args.l3 is not None:
        from ..reading.orientation import to_canonical

        count = to_canonical(image).GetSize()[2]
        if not 0 <= args.l3 < count:
            raise AdiposeSegError(f"--l3 {args.l3}: the CT has {count} axial slices (0..{count - 1})")
    bar = _progress_bar(100, "segment", args.quiet)

    def on_progress(fraction, message):
        bar.n = int(fraction * 100)
        bar.postfix = message        # set directly: set_postfix_str would prefix ", "
        bar.refresh()

    try:
        result = segment_image(image, model, options, RunControl(on_progress), l3_slice=args.l3)
    finally:
        bar.close()
    result.timings["read_s"] = read_s
    extra = summary_extra(identity, run_key(model, options), info)
    t1 = time.perf_counter()
    files = write_results(result, args.output, case_id, model, source=str(args.input), labelmap_format=args.labelmap,
                          overlay_slices=args.overlay_slices, overwrite=args.overwrite, extra=extra,
                          patient=merged(info.get("patient"), given), dicom_sources=seg_sources(info, args.dicom_seg),
                          dicom_options=_dicom_options(args))
    write_s = time.perf_counter() - t1
    totals = result.statistics.totals
    print(f"{case_id}: {result.slice_range[1] - result.slice_range[0]} slices on {result.device}, "
          f"read {read_s:.1f}s, segment {sum(result.timings.get(k, 0.0) for k in PIPELINE_STAGES):.1f}s, "
          f"write {write_s:.1f}s")
    print("  " + ", ".join(f"{NAMES[k]} {totals[f'{NAMES[k]}_volume_cm3']:.1f} cm3" for k in LABELS))
    summary = json.loads(files.summary.read_text())
    def num(value) -> str:  # NaN is stored as null: no muscle, no density
        return "n/a" if value is None else f"{value:.1f}"

    for name, level in sorted(summary.get("levels", {}).items(), key=lambda item: -item[1]["slice"]):
        where = f"{name} (slice {level['slice']}, {level['source']}"
        where += f", {level['confidence']} confidence from the {level['anchor']})" if level["source"] == "auto" else ")"
        if "SMA_cm2" not in level:
            print(f"  {where}: {level.get('not_measured', 'not measured')}")
            continue
        smi = f", SMI {num(level['SMI_cm2_m2'])} cm2/m2" if "SMI_cm2_m2" in level else ""
        flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in level.get("flags", {}).items())
        print(f"  {where}: SMA {num(level['SMA_cm2'])} cm2, SMD {num(level['SMD_HU'])} HU, "
              f"SAT {num(level['SAT_cm2'])}, VAT {num(level['VAT_cm2'])}, IMAT {num(level['IMAT_cm2'])} cm2{smi}"
              + (f"; {flags}" if flags else ""))
    for note in info.get("notes", []) + [n for n in summary["notes"] if n not in info.get("notes", [])]:
        print(f"  note: {note}")
    for name, path in files.as_dict().items():
        print(f"  {name}: {path}")
    failed = _missed(summary, args.dicom_seg)
    if failed:
        print(f"adiposeseg: the measurements are written, but not: {', '.join(f['output'] for f in failed)} "
              "(see the notes)", file=sys.stderr)
        return OPTIONAL_OUTPUT_FAILED
    return 0


def _missed(summary: dict, dicom_asked: bool | None) -> list[dict]:
    """Optional outputs that broke, and the DICOM SEG/SR that could not be made when asked for by name
    (by default, on DICOM input, an anonymised series without UIDs simply has none: a note, exit 0)."""
    return [f for f in summary.get("optional_outputs_failed") or []
            if f.get("kind") != "cannot" or dicom_asked]


def _dicom_options(args) -> dict:
    options = {"content_creator": args.content_creator}
    if args.uid_root:
        options["uid_root"] = args.uid_root
    return options


def cmd_web(args) -> int:
    try:
        from AdiposeSegWeb.server import run_web
    except ImportError as exc:
        raise AdiposeSegError(f"the web app needs trame-slicer: pip install 'trame-slicer[standalone]' ({exc})") from None
    return run_web(args.paths, args.data_root, args.host, args.port, args.demo, args.dataset, args.model, args.device,
                   args.encoder, args.upload_limit_mb)


def _given_patient(args, case_id: str) -> dict | None:
    """Patient data from --patients (this case's row) and --height-m / --weight-kg / --sex (which win)."""
    from ..reading.patients import patient_for, read_patients

    given = dict(patient_for(read_patients(args.patients), case_id, args.input) or {}) if args.patients else {}
    for key, value in (("height_m", args.height_m), ("weight_kg", args.weight_kg), ("sex", args.sex)):
        if value is not None:
            given[key] = value
            given["source"] = "command line"
    if given.get("height_m") is not None and not 0.4 <= given["height_m"] <= 2.5:
        raise AdiposeSegError(f"--height-m {given['height_m']:g}: give the height in metres (0.4..2.5)")
    return given or None


def cmd_batch(args) -> int:
    from tqdm import tqdm

    from .batch import find_inputs, outside_folder, parse_shard, run_batch
    from ..model.model_card import load_model

    shard = parse_shard(args.shard) if args.shard else None
    inputs = outside_folder(find_inputs(args.input), args.output)
    if not inputs:
        raise AdiposeSegError(f"{args.input}: no scans found (looked for .nrrd/.nii/.nii.gz/.mha files and DICOM folders, at any depth)")
    model = load_model(args.model)
    bar = tqdm(total=len(inputs), desc="batch", unit="scan", disable=args.quiet or not sys.stderr.isatty(), file=sys.stderr)

    def on_case(outcome):
        bar.update(1)
        if outcome.status == "failed":
            tqdm.write(f"FAILED {outcome.case_id}: {outcome.message}", file=sys.stderr)

    from ..reading.patients import read_patients

    patients = read_patients(args.patients) if args.patients else None
    outcomes, summary = run_batch(inputs, args.output, model, _options(args), workers=args.workers,
                                  labelmap_format=args.labelmap, on_case=on_case, shard=shard, patients=patients,
                                  dicom_seg=args.dicom_seg, dicom_options=_dicom_options(args))
    bar.close()
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    part = f" (shard {shard[0]}/{shard[1]}: {len(outcomes)} of {len(inputs)} scans)" if shard else ""
    print(f"{counts['done']} done, {counts['skipped']} skipped (already done), {counts['failed']} failed{part}; summary: {summary}")
    if counts["failed"]:
        return 1
    partial = [o.case_id for o in outcomes if o.status == "done" and _missed(o.summary or {}, args.dicom_seg)]
    if partial:
        print(f"{len(partial)} case(s) measured without all optional outputs (see their notes): {', '.join(partial[:10])}",
              file=sys.stderr)
        return OPTIONAL_OUTPUT_FAILED
    return 0


def cmd_aggregate(args) -> int:
    from ..reporting.aggregate import aggregate
    from .batch import find_inputs
    from .identity import case_ids, legacy_case_ids

    manifest = None
    if args.manifest:
        inputs = find_inputs(args.manifest)
        manifest = list(zip(case_ids(inputs), inputs, legacy_case_ids(inputs)))
    path, report = aggregate(args.output, manifest)
    print(f"{len(report['done'])} done, {len(report['failed'])} failed, {len(report['missing'])} missing; cohort table: {path}")
    for status in ("failed", "missing"):
        if report[status]:
            print(f"  {status}: " + ", ".join(report[status][:20]) + (" ..." if len(report[status]) > 20 else ""))
    return 1 if report["failed"] or report["missing"] else 0


def cmd_evaluate(args) -> int:
    import math

    from ..measuring.evaluate import compare
    from ..reading.labels_io import read_label_map

    result = compare(read_label_map(args.pred, refuse_binary=True), read_label_map(args.ref, refuse_binary=True),
                     allow_resample=args.resample)
    if args.json:
        clean = {name: {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                 for name, r in result.items()}
        print(json.dumps(clean, indent=2, allow_nan=False))
        return 0
    print(f"{'tissue':8s} {'Dice':>7s} {'ref cm3':>10s} {'pred cm3':>10s} {'diff %':>8s}")
    for name, r in result.items():
        diff = "" if math.isnan(r["volume_diff_pct"]) else f"{r['volume_diff_pct']:+.1f}"
        dice = "    n/a" if math.isnan(r["dice"]) else f"{r['dice']:7.4f}"
        print(f"{name:8s} {dice} {r['ref_cm3']:10.2f} {r['pred_cm3']:10.2f} {diff:>8s}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(Path(args.output), device=args.device, model_dir=args.model, quiet=args.quiet)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line and exit code 2, like every other error (`-h` shows the usage)."""

    def error(self, message):
        self.exit(2, f"adiposeseg: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="adiposeseg", description="Subcutaneous / visceral fat and skeletal muscle on CT.")
    parser.add_argument("--version", action="version", version=f"adiposeseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("segment", help="segment one CT (DICOM folder or file, NRRD, NIfTI, MHA)")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--slices", type=_slices, default=None, help="all (default), N, or START:STOP in axial order")
    p.add_argument("--series-uid", help="DICOM series to use when the folder holds several")
    p.add_argument("--case-id", help="name for the output files (default: from the input name)")
    p.add_argument("--l3", type=_l3, default="auto", help="'auto' (default: the middle of the L3 vertebral body found on "
                   "the bone, see 'levels' in the summary) or the L3 slice as a number: the 'slice' column of the "
                   "_slices.csv, i.e. axial slices counted from the inferior end (canonical LPS order); recorded as manual")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier result of the same case id in the output folder")
    p.add_argument("--height-m", type=float, help="patient height in metres (for SMI, SATI, VATI; else from DICOM PatientSize)")
    p.add_argument("--weight-kg", type=float, help="patient weight in kg (for BMI-specific cut-offs)")
    p.add_argument("--sex", choices=("M", "F"), help="patient sex (for the sarcopenia cut-off)")
    p.add_argument("--patients", help="CSV with id or path, height_m, weight_kg, sex, l3_slice (this case's row is used)")
    p.add_argument("--overlay-slices", type=lambda s: [int(v) for v in s.split(",")], help="slices for the PNG montage, e.g. 10,20,30")
    p.add_argument("-q", "--quiet", action="store_true")
    _add_run_options(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("batch", help="segment every scan in a folder or list; one summary CSV")
    p.add_argument("input", help="folder of scans (files or DICOM folders) or a .txt list of paths")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--workers", type=_positive_int, default=1, help="scans read/written in parallel (default 1)")
    p.add_argument("--shard", metavar="I/N", help="process only shard I of N (0-based), for a job array; then run aggregate")
    p.add_argument("--patients", help="CSV with id (case id) or path, height_m, weight_kg, sex, l3_slice per case")
    p.add_argument("-q", "--quiet", action="store_true")
    _add_run_options(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("web", help="the workflow in a browser page (trame-slicer): open, segment, review, edit, save")
    p.add_argument("paths", nargs="*", help="CT files or folders to offer (their folders become data roots)")
    p.add_argument("--data-root", action="append", default=[], help="a folder whose CTs the page may open (repeatable); "
                   "the page can name no file outside these")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--demo", action="store_true", help="offer (and open) the generated phantom CT")
    p.add_argument("--dataset", help="ground-truth dataset folder (default ~/AdiposeSegGroundTruth)")
    p.add_argument("--model", help="model directory (default: the bundled model)")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    p.add_argument("--encoder", default="png", choices=("png", "jpeg", "turbo-jpeg", "webp"),
                   help="how views are streamed (png: exact colours)")
    p.add_argument("--upload-limit-mb", type=float, default=512.0, help="largest upload accepted (default 512 MB)")
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("aggregate", help="merge the per-case results of a (sharded) batch into OUT/summary.csv")
    p.add_argument("output", help="the batch output folder")
    p.add_argument("--manifest", help="the batch's input (list or folder): report cases with no result as missing")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("evaluate", help="Dice and volume difference per tissue between two label maps or .seg.nrrd files")
    p.add_argument("pred")
    p.add_argument("ref")
    p.add_argument("--json", action="store_true")
    p.add_argument("--resample", action="store_true", help="allow different grids (nearest neighbour onto the reference)")
    p.set_defaults(func=cmd_evaluate)

    from ..node.commands import add_parsers as add_node_parsers

    add_node_parsers(sub)

    p = sub.add_parser("demo", help="run the whole path on a generated CT phantom (no data needed)")
    p.add_argument("-o", "--output", default="adiposeseg-demo")
    p.add_argument("--model")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's own warning lines would precede our one-line errors
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Cancelled:
        print("adiposeseg: cancelled; nothing was written", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("adiposeseg: interrupted", file=sys.stderr)
        return 130
    except (AdiposeSegError, ValueError) as exc:
        if args.debug:
            raise
        print(f"adiposeseg: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError, MemoryError) as exc:  # promised: one line and exit 2, never a traceback
        if args.debug:
            raise
        print(f"adiposeseg: error: {exc.__class__.__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
