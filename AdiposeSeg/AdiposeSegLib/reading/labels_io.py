"""Reading tissue labels: Slicer .seg.nrrd (segments matched by name), label maps, binary masks.

Used by `adiposeseg evaluate` and by the training package's dataset reader alike.
"""
from __future__ import annotations

import os
import re

import numpy as np
import SimpleITK as sitk

from ..errors import InputReadError
from ..tissues import LABELS, NAMES, label_for_name


def _read(path: str) -> sitk.Image:
    if not os.path.exists(path):
        raise InputReadError(f"{path}: no such file")
    try:
        return sitk.ReadImage(path)
    except RuntimeError as exc:
        raise InputReadError(f"{path}: could not be read as a label image ({str(exc).strip().splitlines()[-1]})") from None


def is_segmentation_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith((".seg.nrrd", ".seg.nhdr"))


def _segments(image: sitk.Image) -> list[dict]:
    fields: dict[int, dict] = {}
    for key in image.GetMetaDataKeys():
        m = re.match(r"^Segment(\d+)_(\w+)$", key)
        if m:
            fields.setdefault(int(m.group(1)), {})[m.group(2)] = image.GetMetaData(key)
    return [fields[i] for i in sorted(fields)]


def read_segmentation_labels(path: str | os.PathLike, name_map: dict[str, int] | None = None) -> sitk.Image:
    """A .seg.nrrd as a uint8 label map with AdiposeSeg ids (0 bg, 1 SAT, 2 VAT, 3 Muscle, 4 IMAT).

    Segment names are matched case-insensitively (with common aliases, plus `name_map`); any other
    name is an error that lists the names found.
    """
    path = str(path)
    image = _read(path)
    segments = _segments(image)
    if not segments:
        raise InputReadError(f"{path}: no segments in this file (not a Slicer segmentation?)")
    extra = {k.lower(): v for k, v in (name_map or {}).items()}
    unknown, plan = [], []
    for seg in segments:
        name = seg.get("Name", seg.get("ID", "?"))
        label = extra.get(name.strip().lower(), label_for_name(name))
        if label is None:
            unknown.append(name)
        else:
            plan.append((label, int(seg.get("Layer", 0)), int(seg.get("LabelValue", 1))))
    if unknown:
        raise InputReadError(
            f"{path}: unknown segment names {', '.join(repr(n) for n in unknown)}; "
            f"name segments {', '.join(NAMES[k] for k in LABELS)} (case-insensitive) or pass a name map"
        )
    if image.GetNumberOfComponentsPerPixel() > 1:
        layers = [sitk.VectorIndexSelectionCast(image, i) for i in range(image.GetNumberOfComponentsPerPixel())]
    elif image.GetDimension() == 4:
        layers = [image[:, :, :, i] for i in range(image.GetSize()[3])]
    else:
        layers = [image]
    reference = layers[0]
    arrays = [sitk.GetArrayViewFromImage(l) for l in layers]
    out = np.zeros(arrays[0].shape, dtype=np.uint8)
    for label, layer, value in plan:
        out[arrays[layer] == value] = label
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(reference)
    return result


IGNORE_LABEL = 255   # in a training label map: "not sure", teaches nothing (training/losses.py)


def read_label_map(path: str | os.PathLike, refuse_binary: bool = False, allow_ignore: bool = False) -> sitk.Image:
    """A label map with AdiposeSeg ids; any value outside 0..4 is an error (`allow_ignore`: 255 too,
    for training labels). With `refuse_binary`, a map of only 0 and 1 is refused too: a binary mask
    of some tissue would otherwise count as SAT."""
    path = str(path)
    if is_segmentation_file(path):
        return read_segmentation_labels(path)
    image = _read(path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputReadError(f"{path}: a label map has one value per voxel, this has {image.GetNumberOfComponentsPerPixel()}")
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    if image.GetDimension() != 3:
        raise InputReadError(f"{path}: a {image.GetDimension()}D image of size {image.GetSize()}; a label map is 3D (or one 2D slice)")
    array = sitk.GetArrayViewFromImage(image)
    values = np.unique(array)
    bad = [v for v in values if v not in (0, *LABELS) and not (allow_ignore and v == IGNORE_LABEL)]
    if bad:
        raise InputReadError(f"{path}: label values {bad[:8]} are not AdiposeSeg labels (0 bg, 1 SAT, 2 VAT, 3 Muscle, 4 IMAT)")
    if refuse_binary and set(int(v) for v in values) <= {0, 1}:
        raise InputReadError(f"{path}: holds only 0 and 1, a binary mask rather than an AdiposeSeg label map (1 would count "
                             "as SAT); give a .seg.nrrd with named segments or a label map with ids 1 SAT, 2 VAT, 3 Muscle, 4 IMAT")
    return sitk.Cast(image, sitk.sitkUInt8)


def labels_from_masks(masks: dict[str, str | os.PathLike]) -> sitk.Image:
    """Separate binary masks {tissue name: file} merged into one label map (later names win overlaps)."""
    out, reference = None, None
    for name, path in masks.items():
        label = label_for_name(name)
        if label is None:
            raise InputReadError(f"{path}: mask name {name!r} is not SAT, VAT, Muscle or IMAT")
        image = _read(str(path))
        if reference is None:
            reference = image
            out = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=np.uint8)
        elif image.GetSize() != reference.GetSize():
            raise InputReadError(f"{path}: mask size {image.GetSize()} differs from {reference.GetSize()}")
        out[sitk.GetArrayViewFromImage(image) > 0] = label
    if reference is None:
        raise InputReadError("no masks given")
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(reference)
    return result
