"""Annotated CT cases, dataset folders and the slice sampler.

A case is a CT (DICOM folder, NRRD, NIfTI, MHA) plus labels: a Slicer .seg.nrrd (segments matched
to SAT / VAT / Muscle / IMAT by name), a label-map volume, or separate binary masks.
A dataset is a folder with `manifest.csv` (what the Slicer module's "Save as ground truth" writes)
or, without one, pairs `NAME.<ext>` + `NAME.seg.nrrd` / `NAME_labels.<ext>`.
Slices reach the network through the engine's own preprocessing (`AdiposeSegLib.model.preprocess`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from AdiposeSegLib.errors import InputReadError
from AdiposeSegLib.measuring.evaluate import on_reference_grid
from AdiposeSegLib.reading.image_io import read_ct
from AdiposeSegLib.reading.labels_io import labels_from_masks, read_label_map
from AdiposeSegLib.reporting.manifest import MANIFEST, MANIFEST_COLUMNS, read_manifest
from AdiposeSegLib.reading.orientation import to_canonical
from AdiposeSegLib.model.preprocess import GridMapping, hu_to_grid, labels_to_grid

IMAGE_SUFFIXES = (".nrrd", ".nii.gz", ".nii", ".mha")


@dataclass
class CaseSpec:
    case_id: str
    image: str
    labels: str | dict            # one file, or {tissue name: mask file}
    info: dict = field(default_factory=dict)


@dataclass
class Case:
    case_id: str
    hu: np.ndarray                # (slices, rows, cols) canonical axial order
    labels: np.ndarray            # same shape, AdiposeSeg label ids
    spacing_xyz: tuple
    image: sitk.Image             # canonical CT (geometry)
    label_image: sitk.Image       # canonical labels


def load_case(spec: CaseSpec) -> Case:
    image = read_ct(spec.image)
    labels = labels_from_masks(spec.labels) if isinstance(spec.labels, dict) else read_label_map(spec.labels, allow_ignore=True)
    labels = on_reference_grid(labels, image)
    image_c, labels_c = to_canonical(image), to_canonical(labels)
    hu = sitk.GetArrayFromImage(image_c)
    lab = sitk.GetArrayFromImage(labels_c).astype(np.uint8)
    return Case(spec.case_id, hu, lab, image_c.GetSpacing(), image_c, labels_c)


def _resolve(base: Path, value: str) -> str:
    return value if os.path.isabs(value) else str(base / value)


def read_dataset(folder: str | os.PathLike) -> list[CaseSpec]:
    """Case specs of a dataset folder (manifest.csv, or NAME + NAME.seg.nrrd / NAME_labels pairs)."""
    base = Path(folder)
    if not base.is_dir():
        raise InputReadError(f"{base}: no such dataset folder")
    manifest = base / MANIFEST
    if manifest.is_file():
        rows = read_manifest(manifest)
        missing = {"case_id", "image", "segmentation"} - set(rows[0].keys() if rows else MANIFEST_COLUMNS)
        if missing:
            raise InputReadError(f"{manifest}: columns {sorted(missing)} are missing")
        return [CaseSpec(r["case_id"], _resolve(base, r["image"]), _resolve(base, r["segmentation"]), r) for r in rows]
    specs = []
    for entry in sorted(base.iterdir()):
        name = entry.name
        if name.startswith(".") or name.lower().endswith(".seg.nrrd") or "_labels." in name:
            continue
        suffix = next((s for s in IMAGE_SUFFIXES if name.lower().endswith(s)), None)
        if suffix is None:
            continue
        stem = name[: -len(suffix)]
        candidates = [base / f"{stem}.seg.nrrd"] + [base / f"{stem}_labels{s}" for s in IMAGE_SUFFIXES]
        label = next((c for c in candidates if c.is_file()), None)
        if label is not None:
            specs.append(CaseSpec(stem, str(entry), str(label)))
    if not specs:
        raise InputReadError(f"{base}: no {MANIFEST} and no image + label pairs (NAME.nrrd + NAME.seg.nrrd or NAME_labels.nii.gz)")
    return specs


def split_cases(specs: list[CaseSpec], val_fraction: float, seed: int) -> tuple[list[CaseSpec], list[CaseSpec]]:
    """Train / validation split by case (never by slice), reproducible from the seed."""
    order = np.random.default_rng(seed).permutation(len(specs))
    n_val = int(round(len(specs) * val_fraction))
    if val_fraction > 0 and len(specs) > 1:
        n_val = max(1, n_val)
    n_val = min(n_val, len(specs) - 1)
    val = [specs[i] for i in sorted(order[:n_val])]
    train = [specs[i] for i in sorted(order[n_val:])]
    return train, val


@dataclass
class GridSlices:
    """Slices already on the model grid: x (n, 1, H, W) normalised, y (n, H, W) labels, weights."""

    x: list[torch.Tensor]
    y: list[torch.Tensor]
    source: list[str]
    has_tissue: np.ndarray


def to_grid_slices(hu: np.ndarray, labels: np.ndarray, spacing_rc: tuple[float, float], pixel_mm: float,
                   min_pixels: int, window: tuple[float, float], source: str) -> GridSlices:
    mapping = GridMapping.for_slice(hu.shape[1:], spacing_rc, pixel_mm, min_pixels)
    x = hu_to_grid(hu, mapping, window)
    y = labels_to_grid(labels, mapping)
    return GridSlices(list(x), list(y), [source] * len(x), (y.reshape(len(y), -1) > 0).any(dim=1).numpy())


def concat(parts: list[GridSlices]) -> GridSlices:
    return GridSlices(
        [t for p in parts for t in p.x], [t for p in parts for t in p.y], [s for p in parts for s in p.source],
        np.concatenate([p.has_tissue for p in parts]) if parts else np.zeros(0, bool),
    )


def epoch_indices(slices: GridSlices, count: int, seed: int, epoch: int, empty_fraction: float,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """Which slices an epoch trains on: a pure function of (seed, epoch), so a resumed run repeats it.

    Slices without tissue are kept with probability `empty_fraction` (class imbalance, as the
    seeds advise); `weights` oversample some slices (e.g. real over phantom).
    """
    rng = np.random.default_rng([seed, epoch])
    keep = slices.has_tissue | (rng.uniform(size=len(slices.has_tissue)) < empty_fraction)
    pool = np.flatnonzero(keep)
    if pool.size == 0:
        raise ValueError("no training slice left after dropping empty ones")
    p = None
    if weights is not None:
        p = weights[pool] / weights[pool].sum()
    return rng.choice(pool, size=count, replace=True, p=p)


def crop_or_pad(x: torch.Tensor, y: torch.Tensor, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop (or air padding) of one grid slice to size x size."""
    _, h, w = x.shape
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        x = torch.nn.functional.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=-1.0)
        y = torch.nn.functional.pad(y, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=0)
        _, h, w = x.shape
    r = int(rng.integers(0, h - size + 1))
    c = int(rng.integers(0, w - size + 1))
    return x[:, r : r + size, c : c + size], y[r : r + size, c : c + size]
