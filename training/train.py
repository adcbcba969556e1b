"""The training loop: Dice + CE, augmentation, AdamW + one-cycle schedule, AMP on CUDA, DDP under torchrun,
validation on whole volumes through the engine's own pipeline, early stopping, resumable checkpoints,
and export to a model directory with its card.
"""
from __future__ import annotations

import csv
import datetime
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from AdiposeSegLib.measuring.evaluate import compare_arrays
from AdiposeSegLib.model.model_card import LoadedModel, ModelCard, load_model, save_model
from AdiposeSegLib.model.networks import build_network
from AdiposeSegLib.running.pipeline import segment_image
from AdiposeSegLib.running.progress import RunControl
from AdiposeSegLib.tissues import LABELS, NAMES, SegmentOptions

from .augment import augment, fatty_muscle
from .dataset import (Case, GridSlices, concat, crop_or_pad, epoch_indices, load_case, read_dataset, split_cases,
                      to_grid_slices)
from .losses import dice_ce_loss
from .phantom import phantom_slices, phantom_volume

SCORED = ("SAT", "VAT", "Muscle")  # early stopping watches these; IMAT is small and optional


@dataclass
class TrainConfig:
    out: str
    data: list[str] = field(default_factory=list)
    arch: str = "unet"
    base: int = 12
    depth: int = 4
    pixel_mm: float = 2.5
    grid_pixels: int = 192
    crop: int = 160
    hu_window: tuple = (-300.0, 400.0)
    epochs: int = 30
    steps_per_epoch: int = 100
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    phantoms: int = 600             # phantom training slices
    val_phantoms: int = 3           # phantom validation volumes
    val_fraction: float = 0.2       # of the data cases, by case
    real_weight: float = 4.0        # sampling weight of a real slice relative to a phantom slice
    empty_fraction: float = 0.1
    fatty_muscle: float = 0.0       # share of training slices given fatty muscle (augment.fatty_muscle)
    patience: int = 8
    seed: int = 0
    init_model: str | None = None   # fine-tune from this model directory
    device: str = "auto"
    workers_threads: int = 0        # torch threads (0 = torch default)
    name: str = "adiposeseg-unet"
    version: str = "0.1.0"
    stop_after_epochs: int | None = None  # for tests: behave as if killed after this many epochs
    quiet: bool = False
    command: str = ""               # the command line that ran this, for the model card


def _rank() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_card(cfg: TrainConfig) -> ModelCard:
    return ModelCard(
        name=cfg.name, version=cfg.version, architecture=cfg.arch,
        arch_params={"base": cfg.base, **({"depth": cfg.depth} if cfg.arch == "unet" else {})},
        pixel_spacing_mm=cfg.pixel_mm, grid_pixels=cfg.grid_pixels, hu_window=tuple(cfg.hu_window),
    )


def _spacing_rc(case: Case) -> tuple[float, float]:
    return case.spacing_xyz[1], case.spacing_xyz[0]


def build_training_set(cfg: TrainConfig, train_cases: list[Case]) -> tuple[GridSlices, np.ndarray]:
    parts, weights = [], []
    for case in train_cases:
        gs = to_grid_slices(case.hu, case.labels, _spacing_rc(case), cfg.pixel_mm, cfg.grid_pixels, cfg.hu_window, case.case_id)
        parts.append(gs)
        weights.append(np.full(len(gs.x), cfg.real_weight))
    for i, (hu, lab, spacing) in enumerate(phantom_slices(cfg.seed + 1, cfg.phantoms, cfg.grid_pixels)):
        gs = to_grid_slices(hu[None], lab[None], (spacing, spacing), cfg.pixel_mm, cfg.grid_pixels, cfg.hu_window, f"phantom{i}")
        parts.append(gs)
        weights.append(np.ones(1))
    return concat(parts), np.concatenate(weights) if weights else np.zeros(0)


def validation_cases(cfg: TrainConfig, val_cases: list[Case]) -> list[Case]:
    cases = list(val_cases)
    for i in range(cfg.val_phantoms):
        ct, lab = phantom_volume(seed=10_000 + cfg.seed * 100 + i, size=256, slices=6, z_range=(-0.9, 0.9))
        cases.append(Case(f"val_phantom{i}", sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(lab), ct.GetSpacing(), ct, lab))
    return cases


def validate(model: LoadedModel, cases: list[Case], device: str) -> dict:
    """Mean Dice per tissue over whole validation volumes, through the inference pipeline (HU gate included)."""
    options = SegmentOptions(device=device)
    model.weights_changed()
    per_case = {}
    for case in cases:
        result = segment_image(case.image, model, options, RunControl())
        per_case[case.case_id] = compare_arrays(result.canonical_labels, case.labels)
    means = {NAMES[k]: float(np.mean([d[NAMES[k]] for d in per_case.values()])) for k in LABELS}
    means["score"] = float(np.mean([means[n] for n in SCORED]))
    return {"mean": means, "cases": per_case}


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _save_checkpoint(path: Path, **state) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig) -> dict:
    """Train (or resume) into cfg.out; returns the summary that also goes into the model card."""
    from AdiposeSegLib.model.device import resolve_device

    rank, world = _rank()
    distributed = world > 1
    device = resolve_device(cfg.device)
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device == "cuda" else "gloo")
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    if cfg.workers_threads:
        torch.set_num_threads(cfg.workers_threads)
    torch.use_deterministic_algorithms(device == "cpu", warn_only=True)
    seed_everything(cfg.seed)
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    specs = [s for folder in cfg.data for s in read_dataset(folder)]
    train_specs, val_specs = split_cases(specs, cfg.val_fraction, cfg.seed)
    train_cases = [load_case(s) for s in train_specs]
    val_cases = validation_cases(cfg, [load_case(s) for s in val_specs])
    slices, weights = build_training_set(cfg, train_cases)

    card = make_card(cfg)
    network = build_network(cfg.arch, num_classes=card.num_classes, **card.arch_params)
    if cfg.init_model:
        base = load_model(cfg.init_model)
        if (base.card.architecture, base.card.arch_params) != (card.architecture, card.arch_params):
            raise ValueError(f"{cfg.init_model}: cannot fine-tune a {base.card.architecture} {base.card.arch_params} into {card.architecture} {card.arch_params}")
        network.load_state_dict(base.network.state_dict())
    network.to(device)
    model_for_training = network
    if distributed:
        model_for_training = torch.nn.parallel.DistributedDataParallel(network)
    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * cfg.steps_per_epoch,
                                                    pct_start=0.15)
    scaler = torch.amp.GradScaler("cuda", enabled=device.startswith("cuda"))
    history, start_epoch, best, stale = [], 0, -1.0, 0

    last = ckpt_dir / "last.pt"
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        history, start_epoch, best, stale = state["history"], state["epoch"] + 1, state["best"], state["stale"]
        if rank == 0 and not cfg.quiet:
            print(f"resuming after epoch {start_epoch} from {last}", file=sys.stderr)

    log_path = out / "log.csv"
    writer = _tensorboard(out) if rank == 0 else None
    wrapped = LoadedModel(card, network, out)
    per_rank_batch = max(1, cfg.batch_size // world)
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.stop_after_epochs is not None and epoch >= cfg.stop_after_epochs:
            return {"stopped_after": epoch, "history": history}
        t0 = time.perf_counter()
        network.train()
        idx = epoch_indices(slices, cfg.steps_per_epoch * cfg.batch_size, cfg.seed, epoch, cfg.empty_fraction, weights)
        idx = idx.reshape(cfg.steps_per_epoch, cfg.batch_size)[:, rank * per_rank_batch:(rank + 1) * per_rank_batch]
        crop_rng = np.random.default_rng([cfg.seed, epoch, rank, 1])
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 101 + rank)
        losses = []
        bar = _bar(cfg.steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", cfg.quiet or rank != 0)
        for step in range(cfg.steps_per_epoch):
            pairs = [crop_or_pad(slices.x[i], slices.y[i], cfg.crop, crop_rng) for i in idx[step]]
            x = torch.stack([p[0] for p in pairs])
            y = torch.stack([p[1] for p in pairs])
            x, y = fatty_muscle(x, y, gen, cfg.fatty_muscle, cfg.hu_window)
            x, y = augment(x, y, gen)
            x, y = x.to(device), y.to(device)
            with torch.autocast("cuda", dtype=torch.float16, enabled=device.startswith("cuda")):
                logits = model_for_training(x)
            loss = dice_ce_loss(logits, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        bar.close()
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "lr": scheduler.get_last_lr()[0],
                  "seconds": time.perf_counter() - t0}
        if rank == 0:
            network.eval()
            val = validate(wrapped, val_cases, device.split(":")[0])
            record.update({f"val_{k}": v for k, v in val["mean"].items()})
            improved = val["mean"]["score"] > best
            if improved:
                best, stale = val["mean"]["score"], 0
                torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, ckpt_dir / "best.pt")
                (out / "best_validation.json").write_text(json.dumps(val, indent=2))
            else:
                stale += 1
            history.append(record)
            _append_log(log_path, record)
            if writer is not None:
                for k, v in record.items():
                    if k != "epoch":
                        writer.add_scalar(k, v, epoch + 1)
            if not cfg.quiet:
                print(f"epoch {epoch + 1}: loss {record['train_loss']:.4f}  val Dice SAT {val['mean']['SAT']:.3f} "
                      f"VAT {val['mean']['VAT']:.3f} Muscle {val['mean']['Muscle']:.3f}  ({record['seconds']:.0f}s)", file=sys.stderr)
            _save_checkpoint(last, model=network.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                             scaler=scaler.state_dict(), rng=_rng_state(), history=history, epoch=epoch, best=best, stale=stale,
                             config=asdict(cfg))
        if distributed:  # every rank must take rank 0's early-stopping decision, or the others hang
            decision = torch.tensor([stale], dtype=torch.long, device=device)
            torch.distributed.broadcast(decision, 0)
            stale = int(decision.item())
        if stale >= cfg.patience:
            if rank == 0 and not cfg.quiet:
                print(f"early stop: no better validation score for {cfg.patience} epochs", file=sys.stderr)
            break
    summary = {"rank": rank, "epochs_run": len(history), "best_score": best, "history": history,
               "train_cases": [s.case_id for s in train_specs], "val_cases": [c.case_id for c in val_cases],
               "phantom_slices": cfg.phantoms, "real_slices": int(sum(len(c.hu) for c in train_cases))}
    if rank == 0:
        export(cfg, card, summary, out / "model")
    if distributed:
        torch.distributed.destroy_process_group()
    return summary


def export(cfg: TrainConfig, card: ModelCard, summary: dict, model_dir: Path) -> Path:
    """Best weights + card (with the exact command, data summary and validation metrics) into model_dir."""
    network = build_network(card.architecture, num_classes=card.num_classes, **card.arch_params)
    network.load_state_dict(torch.load(Path(cfg.out) / "checkpoints" / "best.pt", map_location="cpu", weights_only=True))
    best_val = json.loads((Path(cfg.out) / "best_validation.json").read_text())
    card.trained = True
    card.date = datetime.date.today().isoformat()
    card.command = cfg.command
    card.training_data = {
        "train_cases": summary["train_cases"], "real_slices": summary["real_slices"],
        "phantom_slices": summary["phantom_slices"], "validation_cases": summary["val_cases"],
        "epochs_run": summary["epochs_run"], "seed": cfg.seed,
    }
    card.validation = {"mean_dice": best_val["mean"], "note": "Dice on whole validation volumes after HU gating"}
    saved = save_model(network, card, model_dir)
    try:   # the CPU path without torch; the model works without it, in torch
        from AdiposeSegLib.model.onnx_backend import export_onnx

        export_onnx(LoadedModel(card, network.eval(), saved))
    except Exception as exc:  # noqa: BLE001  (an exporter problem must not lose the trained weights)
        print(f"training: no ONNX export ({exc.__class__.__name__}: {exc}); the model runs in torch", file=sys.stderr)
    return saved


def _append_log(path: Path, record: dict) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, list(record.keys()))
        if new:
            w.writeheader()
        w.writerow(record)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional; the CSV log is always written
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _bar(total: int, desc: str, disable: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=disable, leave=False, file=sys.stderr)
