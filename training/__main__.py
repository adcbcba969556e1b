"""python -m training {train, evaluate, quantize, phantoms, prepare-totalseg, wall-layer}"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from AdiposeSegLib.errors import AdiposeSegError


def _train(args) -> int:
    from .train import TrainConfig, train

    cfg = TrainConfig(
        out=args.out, data=args.data or [], arch=args.arch, base=args.base, depth=args.depth, pixel_mm=args.pixel_mm,
        grid_pixels=args.grid_pixels, crop=args.crop, epochs=args.epochs, steps_per_epoch=args.steps,
        batch_size=args.batch_size, lr=args.lr, phantoms=args.phantoms, val_phantoms=args.val_phantoms,
        val_fraction=args.val_fraction, real_weight=args.real_weight, empty_fraction=args.empty_fraction,
        fatty_muscle=args.fatty_muscle,
        patience=args.patience, seed=args.seed, init_model=args.init_model, device=args.device,
        workers_threads=args.threads, name=args.name, version=args.version, quiet=args.quiet,
        command="python -m training " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    summary = train(cfg)
    if summary.get("rank", 0) == 0:
        print(f"best validation score {summary['best_score']:.4f} after {summary['epochs_run']} epochs; model: {Path(args.out) / 'model'}")
    return 0


def _quantize(args) -> int:
    import os

    from AdiposeSegLib.model.model_card import load_model

    from .quantize import quantize_model

    os.environ["ADIPOSESEG_PRECISION"] = "fp32"   # calibrate the fp32 export, never a stale int8 one
    out = quantize_model(load_model(args.model), args.calibrate or [], args.per_volume, args.phantoms, args.seed)
    print(f"wrote {out}; check it before use: .venv/bin/python benchmarks/precision_check.py --model {args.model}")
    return 0


def _evaluate(args) -> int:
    from AdiposeSegLib.model.model_card import load_model
    from AdiposeSegLib.reporting.safe_write import write_text
    from AdiposeSegLib.tissues import SegmentOptions

    from .dataset import read_dataset
    from .evaluate import evaluate_cases, mean_row, rows_to_csv

    model = load_model(args.model)
    options = SegmentOptions(device=args.device, claim_visceral_fat=not args.no_claim_visceral_fat)
    rows = evaluate_cases(model, read_dataset(args.data), options, args.merge_vat_imat, args.gate_reference)
    rows.append(mean_row(rows))
    text = rows_to_csv(rows)
    if args.out:
        write_text(args.out, text)
        print(f"wrote {args.out}")
    print(text, end="")
    return 0


def _phantoms(args) -> int:
    import SimpleITK as sitk

    from AdiposeSegLib.reporting.writers import write_segmentation

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        ct, lab = phantom_volume_for(args.seed + i, args.size, args.slices)
        sitk.WriteImage(ct, str(out / f"phantom{args.seed + i:04d}.nrrd"), useCompression=True)
        write_segmentation(lab, out / f"phantom{args.seed + i:04d}.seg.nrrd")
    print(f"wrote {args.count} phantom cases to {out}")
    return 0


def phantom_volume_for(seed: int, size: int, slices: int):
    from .phantom import phantom_volume

    return phantom_volume(seed=seed, size=size, slices=slices, z_range=(-0.9, 0.9))


def _prepare_totalseg(args) -> int:
    from .totalseg import prepare, prepare_full

    for line in prepare(Path(args.source), Path(args.out), args.holdout, args.gap):
        print(line)
    if args.lumbar:
        for line in prepare_full(Path(args.source), Path(args.out), args.lumbar, args.label_model, args.lumbar_wall_ignore):
            print(line)
    return 0


def _wall_layer(args) -> int:
    import SimpleITK as sitk

    from AdiposeSegLib.reading.orientation import from_canonical, to_canonical

    from .definition_reference import with_wall_layer

    src, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for labels_path in sorted(src.glob("*_labels.nii.gz")):
        name = labels_path.name[: -len("_labels.nii.gz")]
        ct_image = sitk.ReadImage(str(src / f"{name}.nii.gz"))
        labels_image = sitk.ReadImage(str(labels_path))
        canon = to_canonical(ct_image)
        hu = sitk.GetArrayFromImage(canon).astype("float32")
        labels = sitk.GetArrayFromImage(to_canonical(labels_image)).astype("uint8")
        new, counts = with_wall_layer(hu, labels, (canon.GetSpacing()[1], canon.GetSpacing()[0]), planes=args.planes)
        image = sitk.GetImageFromArray(new)
        image.CopyInformation(canon)
        image = from_canonical(image, labels_image)
        sitk.WriteImage(ct_image, str(out / f"{name}.nii.gz"))
        sitk.WriteImage(sitk.Cast(image, sitk.sitkUInt8), str(out / f"{name}_labels.nii.gz"))
        print(f"{name}: {counts['muscle_added']} voxels of the wall's layers made Muscle, {counts['imat_added']} of the fat "
              f"planes between them IMAT, {counts['ignored']} ignored (planes: {args.planes})")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training", description="Train and evaluate AdiposeSeg models.")
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train or fine-tune a model (resumes from OUT/checkpoints/last.pt)")
    t.add_argument("--data", action="append", help="dataset folder (manifest.csv or image+label pairs); repeatable")
    t.add_argument("--out", required=True)
    t.add_argument("--arch", default="unet", choices=("unet", "fcn8s"))
    t.add_argument("--base", type=int, default=12, help="channels at full resolution")
    t.add_argument("--depth", type=int, default=4)
    t.add_argument("--pixel-mm", type=float, default=2.5)
    t.add_argument("--grid-pixels", type=int, default=192)
    t.add_argument("--crop", type=int, default=160)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--steps", type=int, default=100, help="batches per epoch")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--phantoms", type=int, default=600, help="phantom training slices")
    t.add_argument("--val-phantoms", type=int, default=3)
    t.add_argument("--val-fraction", type=float, default=0.2)
    t.add_argument("--real-weight", type=float, default=4.0)
    t.add_argument("--empty-fraction", type=float, default=0.1)
    t.add_argument("--fatty-muscle", type=float, default=0.0, metavar="P",
                   help="share of training slices whose muscle is made fatty (less dense, marbled with fat)")
    t.add_argument("--patience", type=int, default=8)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--init-model", help="fine-tune from this model directory")
    t.add_argument("--device", default="auto")
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--name", default="adiposeseg-unet")
    t.add_argument("--version", default="0.1.0")
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="per-case and mean Dice per tissue and volume error, to CSV")
    e.add_argument("--model", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--out", help="CSV file")
    e.add_argument("--device", default="auto")
    e.add_argument("--merge-vat-imat", action="store_true", help="score VAT+IMAT together (for TotalSegmentator's torso fat)")
    e.add_argument("--gate-reference", action="store_true",
                   help="hold the reference to the HU definitions first: Muscle only at -29..150 HU, its fat-range voxels "
                        "IMAT, SAT/VAT only at -190..-30 (for references drawn without them, e.g. TotalSegmentator's)")
    e.add_argument("--no-claim-visceral-fat", action="store_true",
                   help="score the network's labels without the visceral-fat claim (as the command line's option)")
    e.set_defaults(func=_evaluate)

    q = sub.add_parser("quantize", help="an int8 (static QDQ) ONNX export beside model.onnx, calibrated on real CT and phantoms")
    q.add_argument("--model", required=True, help="model directory with a current model.onnx")
    q.add_argument("--calibrate", action="append", metavar="CT[@START:STOP]",
                   help="a real CT (file or DICOM folder), optionally only canonical slices START..STOP-1; repeatable")
    q.add_argument("--per-volume", type=int, default=24, help="slices taken evenly from each real CT (default 24)")
    q.add_argument("--phantoms", type=int, default=48, help="phantom slices added to the calibration (default 48)")
    q.add_argument("--seed", type=int, default=7)
    q.set_defaults(func=_quantize)

    ph = sub.add_parser("phantoms", help="write phantom CT volumes with .seg.nrrd labels (a dataset folder)")
    ph.add_argument("--out", required=True)
    ph.add_argument("--count", type=int, default=4)
    ph.add_argument("--size", type=int, default=256)
    ph.add_argument("--slices", type=int, default=8)
    ph.add_argument("--seed", type=int, default=500)
    ph.set_defaults(func=_phantoms)

    ts = sub.add_parser("prepare-totalseg", help="dataset folders from the TotalSegmentator example CT, with a held-out slab")
    ts.add_argument("--source", required=True, help="…/real-ct/totalsegmentator-example")
    ts.add_argument("--out", required=True)
    ts.add_argument("--holdout", default="0:10", help="slices of example_ct_sm kept out of training (START:STOP)")
    ts.add_argument("--gap", type=int, default=2, help="slices dropped between the held-out slab and training")
    ts.add_argument("--lumbar", metavar="START:STOP",
                    help="also label these slices of the full example_ct (e.g. 40:80, L5..L2): the model's output plus "
                         "TotalSegmentator's iliopsoas and erector spinae as muscle")
    ts.add_argument("--label-model", help="model that labels the --lumbar slices (default: the bundled model)")
    ts.add_argument("--lumbar-wall-ignore", type=int, default=0, metavar="PX",
                    help="in the --lumbar labels, ignore (255) muscle-density background within PX pixels of the labelling "
                         "model's wall muscle, outside TotalSegmentator's organs: where that model may have missed the inner wall")
    ts.set_defaults(func=_prepare_totalseg)

    w = sub.add_parser("wall-layer", help="a dataset's labels with the abdominal wall's layer stack drawn by the "
                                          "definitions (training/definition_reference.py) made Muscle")
    w.add_argument("--data", required=True, help="a folder of NAME.nii.gz + NAME_labels.nii.gz pairs")
    w.add_argument("--out", required=True)
    w.add_argument("--planes", choices=("imat", "ignore"), default="imat",
                   help="the fat planes between the wall's layers: IMAT (default) or ignored (255) in training")
    w.set_defaults(func=_wall_layer)

    args = p.parse_args(argv)
    try:
        return args.func(args)
    except AdiposeSegError as exc:
        print(f"training: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
