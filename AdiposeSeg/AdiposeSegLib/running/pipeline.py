"""The one path the data takes: HU image -> canonical -> network -> gate -> clean -> label map + statistics.

The CLI, the Slicer logic and the training package's evaluation all call `segment_image`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..model.device import resolve_device
from ..reading.anatomy_checks import anatomy_flags
from ..reading.image_io import already_validated, validate_ct
from ..reading.image_views import image_view, writable_view, zero_image_like
from ..model.model_card import LoadedModel
from ..reading.orientation import from_canonical, input_axial_index, to_canonical
from ..measuring.level_measures import auto_l3_slice, l1_l5_volumes, level_entries, slice_names
from ..measuring.postprocess import claim_visceral_fat, cleaning_margin_pixels, gate, muscle_rim, remove_islands, sat_rim
from ..measuring.trunk import arms_in_view, clear_arms
from ..measuring.vertebral_levels import detect_levels
from .progress import RunControl
from .slice_workers import SliceWorkers
from ..measuring.statistics import Statistics, compute_statistics, label_sums
from ..tissues import BACKGROUND, LABELS, MUSCLE, SAT, VAT, SegmentOptions


@dataclass
class SegmentationResult:
    labels: sitk.Image            # uint8 label map in the input's exact geometry
    canonical_labels: np.ndarray | None  # (slices, rows, cols), canonical axial order (None from a child run)
    canonical_hu: np.ndarray | None
    canonical_image: sitk.Image | None   # the CT in canonical orientation (geometry for overlays)
    statistics: Statistics
    slice_range: tuple[int, int]
    device: str
    timings: dict = field(default_factory=dict)
    model_info: dict = field(default_factory=dict)   # name and version of the model that made it
    quality: dict = field(default_factory=dict)      # flags a reader of the numbers should know about
    levels: dict = field(default_factory=dict)       # e.g. {"L3": {"slice": k, "source": "manual", SMA_cm2, ...}}


FOV_TOUCH_MM = 10.0     # tissue along the image edge longer than this: the body is cut off by the field of view
THICK_SLICE_MM = 5.0
SHORT_COVERAGE_MM = 100.0
ARMS_EVERY_MM = 10.0    # arms in view: looked for on one slice per this much of z


def quality_flags(labels: np.ndarray, spacing: tuple[float, float, float], slice_indices: np.ndarray) -> dict:
    """Flags from the labelled slices: body cut off at the field-of-view edge (SAT there is
    likely VAT or missing), thick slices, short z coverage."""
    flags: dict = {}
    edges = [(labels[:, 0, :], spacing[0]), (labels[:, -1, :], spacing[0]), (labels[:, :, 0], spacing[1]),
             (labels[:, :, -1], spacing[1])]
    touch = sum((edge > 0).sum(axis=1) * mm for edge, mm in edges)  # mm of tissue on the edge, per slice
    cut = np.flatnonzero(touch > FOV_TOUCH_MM)
    if cut.size:
        flags["fov_cutoff"] = {"slices": int(cut.size), "of": int(labels.shape[0]), "max_mm": round(float(touch.max()), 1),
                               "first_slice": int(slice_indices[cut[0]])}
    if spacing[2] > THICK_SLICE_MM:
        flags["thick_slices_mm"] = round(float(spacing[2]), 2)
    if labels.shape[0] * spacing[2] < SHORT_COVERAGE_MM:
        flags["short_coverage_mm"] = round(float(labels.shape[0] * spacing[2]), 1)
    return flags


def slice_range(n: int, requested: tuple[int, int] | None) -> tuple[int, int]:
    if requested is None:
        return 0, n
    start, stop = requested
    start, stop = max(0, int(start)), min(n, int(stop))
    if start >= stop:
        raise ValueError(f"slice range {requested} selects no slice of the {n} axial slices (valid: 0..{n - 1})")
    return start, stop


def canonical_arrays(image: sitk.Image) -> tuple[sitk.Image, np.ndarray, tuple[float, float, float], np.ndarray]:
    """Canonical image, its HU array (k, j, i), spacing (x, y, z) and each slice's z position in mm."""
    canonical = to_canonical(image)
    hu = image_view(canonical)
    z = np.array([canonical.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, float(k)))[2] for k in range(hu.shape[0])])
    return canonical, hu, canonical.GetSpacing(), z


def widened(classes: np.ndarray, window: tuple[slice, slice], shape: tuple[int, int], pad: int):
    """The batch's classes on its window grown by `pad` pixels each side (within the slice), the new
    pixels background. The window holds every pixel the network calls tissue, and the rims grow labels
    beyond it (sat_rim; postprocess.cleaning_margin_pixels): without the margin a rim at the window's
    edge was cut off, and because the window is the batch's, a slice's labels depended on which slices
    shared its batch."""
    bounds = [(w.start or 0, n if w.stop is None else w.stop) for w, n in zip(window, shape)]
    grown = [(max(0, lo - pad), min(n, hi + pad)) for (lo, hi), n in zip(bounds, shape)]
    if grown == bounds:
        return classes, window
    out = np.zeros((classes.shape[0], grown[0][1] - grown[0][0], grown[1][1] - grown[1][0]), dtype=classes.dtype)
    (r0, _), (c0, _) = grown
    out[:, bounds[0][0] - r0:bounds[0][1] - r0, bounds[1][0] - c0:bounds[1][1] - c0] = classes
    return out, (slice(*grown[0]), slice(*grown[1]))


def _label_batches(out: np.ndarray, hu: np.ndarray, spacing, model: LoadedModel, device: str, options: SegmentOptions,
                   control: RunControl, stages: dict) -> tuple[np.ndarray, np.ndarray]:
    """Network classes -> gated, cleaned labels written into `out` (zeros), batch by batch as they
    come and inside the window that can hold tissue (in-plane work: the same labels as on the whole
    volume); returns `label_sums` of them. The in-plane work is split over the cores by slices."""
    from ..model.inference import class_batches  # the model package: only when a run needs the network

    stages.setdefault("postprocess_s", 0.0)
    counts = np.zeros((out.shape[0], max(LABELS) + 1), dtype=np.int64)
    sums = np.zeros(counts.shape, dtype=np.float64)
    area = spacing[0] * spacing[1]
    pixel_mm = float(np.sqrt(area))

    def clean(classes: np.ndarray, ct: np.ndarray, into: tuple[slice, slice, slice]) -> None:
        gated = muscle_rim(gate(classes, ct, options.windows, options.include_imat), classes, ct, options.windows, pixel_mm)
        cleaned = remove_islands(gated, area, options.min_island_mm2, which=(SAT, VAT, MUSCLE))   # never IMAT (gate)
        if options.claim_visceral_fat:
            cleaned = claim_visceral_fat(cleaned, ct, options.windows, area, network_background=classes == BACKGROUND)
        cleaned = sat_rim(cleaned, classes, ct, options.windows, pixel_mm)
        if not options.include_arms:
            cleaned = clear_arms(cleaned, ct)
        out[into] = cleaned
        counts[into[0]], sums[into[0]] = label_sums(cleaned, ct)

    margin = cleaning_margin_pixels(pixel_mm)
    with SliceWorkers() as workers:
        for a, b, classes, window in class_batches(hu, (spacing[1], spacing[0]), model, device=device,
                                                   batch_size=options.batch_size, control=control,
                                                   stage_times=stages, workers=workers):
            t = time.perf_counter()
            classes, (rows, cols) = widened(classes, window, hu.shape[1:], margin)
            ct = hu[a:b, rows, cols]
            # (map returns when every part is done, so the lambda's loop variables are this batch's)
            workers.map(lambda part: clean(classes[part], ct[part], (slice(a + part.start, a + part.stop), rows, cols)), b - a)
            stages["postprocess_s"] += time.perf_counter() - t
    counts[:, 0] = out[0].size - counts[:, 1:].sum(axis=1)   # background outside the windows too
    return counts, sums


def segment_image(
    image: sitk.Image,
    model: LoadedModel,
    options: SegmentOptions | None = None,
    control: RunControl | None = None,
    l3_slice: int | None = None,
) -> SegmentationResult:
    options = options or SegmentOptions()
    control = control or RunControl()
    timings = {}
    t0 = time.perf_counter()
    control.report(0.0, "starting")
    if not already_validated(image):
        image = validate_ct(image)
    canonical, hu, spacing, z = canonical_arrays(image)
    start, stop = slice_range(hu.shape[0], options.slices)
    device = resolve_device(options.device)
    timings["prepare_s"] = time.perf_counter() - t0

    t3 = time.perf_counter()
    report = None
    if options.find_levels:   # before the labels exist: its working volume and theirs are never held together
        control.report(0.01, "finding vertebral levels")
        report = detect_levels(canonical)
    timings["levels_s"] = time.perf_counter() - t3

    t1 = time.perf_counter()
    label_image = zero_image_like(canonical)
    part = writable_view(label_image)[start:stop]   # written in place: no second copy of the labels
    stages: dict = {}
    counts, sums = _label_batches(part, hu[start:stop], spacing, model, device, options, control.sub(0.03, 0.94), stages)
    timings["segment_s"] = time.perf_counter() - t1
    timings.update(stages)

    t4 = time.perf_counter()
    control.report(0.96, "computing statistics")
    levels = level_entries(report, l3_slice, part, hu, start, stop, spacing, z, lambda k: input_axial_index(image, k))
    names = slice_names(levels, hu.shape[0])
    l3 = l3_slice if l3_slice is not None else auto_l3_slice(report)
    stats = compute_statistics(part, hu[start:stop], spacing, z[start:stop], np.arange(start, stop), l3, names[start:stop],
                               sums=(counts, sums))
    stats.notes.extend(report.notes if report else [])
    quality = quality_flags(part, spacing, np.arange(start, stop))
    flags, flag_notes = anatomy_flags(hu[start:stop], part, spacing, np.arange(start, stop))
    quality.update(flags)
    stats.notes.extend(flag_notes)
    if report is not None and report.anchors:
        quality["level_anchors"] = report.anchors   # what each anchor found: the reader can see why L3 is where it is
    if not options.include_arms:
        found, looked = arms_in_view(hu[start:stop], spacing[0] * spacing[1], every=max(1, round(ARMS_EVERY_MM / spacing[2])))
        if found:
            quality["arms_in_view"] = {"sampled_slices": looked, "with_arms": found}
            stats.notes.append(f"arms lie beside the trunk (on {found} of {looked} slices looked at, one per {ARMS_EVERY_MM:.0f} mm): "
                               "they are not measured; an arm pressed against the flank is left out by the model alone, "
                               "so check the overlay there")
    stats.volumes_l1_l5 = l1_l5_volumes(levels, stats.rows, spacing[2])
    if "fov_cutoff" in quality:
        q = quality["fov_cutoff"]
        stats.notes.append(f"the body touches the edge of the field of view on {q['slices']} of {q['of']} slices "
                           f"(up to {q['max_mm']} mm): fat outside the image is missing and SAT/VAT may be misassigned there")
    del part
    labels = image_view(label_image)   # one copy of the labels: the image's, viewed
    native = from_canonical(label_image, image)
    timings["statistics_s"] = time.perf_counter() - t4
    control.report(1.0, "done")
    return SegmentationResult(native, labels, hu, canonical, stats, (start, stop), device, timings,
                              {"name": model.card.name, "version": model.card.version,
                               "network": model.network_kind(device)}, quality, levels)


@dataclass
class CanonicalPair:
    """An (edited) label map and its CT as canonical arrays on the same grid."""
    labels: np.ndarray
    hu: np.ndarray
    spacing: tuple[float, float, float]
    z: np.ndarray

    @property
    def pixel_area_mm2(self) -> float:
        return self.spacing[0] * self.spacing[1]

    def statistics(self, l3_slice: int | None = None, levels: list[str] | None = None) -> Statistics:
        return compute_statistics(self.labels, self.hu, self.spacing, self.z, None, l3_slice, levels)


def canonical_pair(label_image: sitk.Image, ct_image: sitk.Image) -> CanonicalPair:
    _, hu, spacing, z = canonical_arrays(ct_image)
    labels = image_view(to_canonical(label_image))
    if labels.shape != hu.shape:
        raise ValueError(f"label map size {labels.shape[::-1]} differs from the CT's {hu.shape[::-1]}")
    return CanonicalPair(labels, hu, spacing, z)


def statistics_for_labels(label_image: sitk.Image, ct_image: sitk.Image, l3_slice: int | None = None,
                          levels: list[str] | None = None) -> Statistics:
    """Recompute statistics from an (edited) label map on the CT's grid: 'Update statistics'.
    `levels`: each canonical slice's vertebral level."""
    return canonical_pair(label_image, ct_image).statistics(l3_slice, levels)
