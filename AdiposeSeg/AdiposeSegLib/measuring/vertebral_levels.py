"""Vertebral levels (T12..L5) from the CT alone, by counting vertebral bodies from an anatomical
anchor: the lowest rib-bearing vertebra is T12, the vertebra on the sacrum is L5.

Method (rules on the bone, no trained model):
1. The column: the vertebral-body centre line in the mid-sagittal slab and the density profile
   along it; intervertebral discs are the profile's dips between two close endplate peaks
   (`spine.py`). A vertebra is the stretch between two discs.
2. Last rib: bone outside the column that starts beside it (<= 35 mm from the midline, at or
   behind the body centre) and runs out beyond 65 mm: a rib, not a transverse process (L3's,
   the longest, end near 55 mm). The lowest such rib head marks T12.
3. Sacrum: below L5-S1 the bone through the column spreads into the sacral alae and joins the
   ilia (>= 60 mm to each side); above it (L5 and its transverse processes) it does not.
Both anchors in view and agreeing: confidence high. One: medium. They disagree (11 or 13 rib
pairs, a lumbosacral transitional vertebra, a missed disc): the sacrum wins and confidence is low.
Checks and weak anchors (`transverse_processes.py`, the iliac crests): a count whose L3 does not have
the longest transverse processes, or whose crests are not at L4/L5, is low; with neither sacrum nor
last rib the crests, else the transverse processes, name the levels with low confidence.

Positions here are canonical slices (k counted from the inferior end: the `slice` column of the
per-slice table); `level_measures` adds the input file's own index and the indices at each level.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..reading.image_views import writable_view
from . import transverse_processes
from .spine import SpineColumn, find_column, find_discs, middle_half

ORDER = ("S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10")  # bottom -> top
WORK_SPACING_MM = 3.0           # the grid the rules were tuned on (TotalSegmentator example: 3 mm)
RIB_HU = 110.0                  # ribs are thin: at 2-3 mm voxels their rim's HU is diluted to this ...
RIB_CORE_HU = 170.0             # ... around a core above what enhanced parenchyma reaches (liver ~130 HU)
RIB_START_MM = 35.0             # a rib head lies beside the vertebra
RIB_REACH_MM = 65.0             # ... and the rib runs out beyond any lumbar transverse process
RIB_MAX_CM3 = 30.0              # a whole 11th rib is well below this; an ilium is far above
COLUMN_ZONE_MM = 25.0           # the vertebral body itself (ribs are looked for outside it)
SACRAL_BONE_HU = 100.0          # sacral alae are mostly trabecular bone
SACRAL_SPREAD_MM = 60.0         # sacral alae + ilia reach at least this far to both sides
MIN_PARTIAL_MM = 10.0           # a vertebra cut by the field of view counts when this much is in view
MAX_SLICE_MM = 4.5              # thicker slices blur thoracic and even lumbar discs away
MIN_COVERAGE_MM = 60.0          # less than about two vertebrae: nothing to count
OPEN_END_MM = 8.0               # a rib head this close to where the traced column ends is not an anchor
HEIGHT_RANGE = (0.6, 1.5)       # a vertebra (body + disc) this far from the median height: a disc missed or false
CREST_LATERAL_MM = 45.0         # the ilium: bone this far from the midline ...
ILIUM_MIN_CM3 = 40.0            # ... this large (a rib is far smaller) ...
ILIUM_MIN_HEIGHT_MM = 40.0      # ... and running down this far, to the bottom of the scan


@dataclass
class Vertebra:
    name: str
    k_range: tuple[float, float]    # canonical (working-grid) slice positions of its lower and upper disc
    complete: bool                  # both discs in view


@dataclass
class LevelReport:
    levels: dict = field(default_factory=dict)   # name -> {"slice", "range", "z_mm", "confidence", "anchor", ...}
    anchor: str = "none"
    confidence: str = "none"
    notes: list = field(default_factory=list)
    discs_mm: list = field(default_factory=list)  # z (mm) of each disc found, inferior -> superior
    anchors: dict = field(default_factory=dict)   # what each anchor found, for summary.json


def _working_image(canonical: sitk.Image) -> sitk.Image:
    """The CT block-averaged to about WORK_SPACING_MM (whole factors per axis: fast, no aliasing)."""
    spacing = canonical.GetSpacing()
    factors = [max(1, int(WORK_SPACING_MM / s + 0.25)) for s in spacing]  # (x, y, z)
    hu = sitk.GetArrayViewFromImage(canonical)
    fz, fy, fx = factors[2], factors[1], factors[0]
    nz, ny, nx = (n // f for n, f in zip(hu.shape, (fz, fy, fx)))
    if min(nz, ny, nx) < 1:
        fz, fy, fx, (nz, ny, nx) = 1, 1, 1, hu.shape
    work = sitk.Image([nx, ny, nz], sitk.sitkFloat32)
    block = writable_view(work)          # filled in place: no second copy of the working volume
    total = np.empty((ny, nx), dtype=np.float32)
    for k in range(nz):   # a block of slices at a time: never a float copy of the whole CT
        # strided sums, not a mean over a 5-D reshape (5x faster); integer HU sums are exact in float32
        total.fill(0.0)
        for dz in range(fz):
            for dy in range(fy):
                for dx in range(fx):
                    total += hu[k * fz + dz, dy:ny * fy:fy, dx:nx * fx:fx]
        np.divide(total, fz * fy * fx, out=block[k])
    work.SetSpacing([s * f for s, f in zip(spacing, (fx, fy, fz))])
    work.SetDirection(canonical.GetDirection())
    # the first block's centre, in the canonical image's continuous index space
    work.SetOrigin(canonical.TransformContinuousIndexToPhysicalPoint([(f - 1) / 2.0 for f in (fx, fy, fz)]))
    return work


def _bone(hu: np.ndarray, core_hu: float, edge_hu: float) -> np.ndarray:
    """Bone as dense cores grown by one voxel into the diluted edge around them: a rib at 3 mm voxels
    sinks to about 120 HU at its rim, the level of a contrast-enhanced liver, spleen or kidney that
    it touches; a plain threshold at the rim's HU makes the rib and the organ one object."""
    core = hu > core_hu
    return ndimage.binary_closing(core | (ndimage.binary_dilation(core) & (hu > edge_hu)), iterations=1)


def _beside_column(bone: np.ndarray, column: SpineColumn, spacing, min_lateral_mm: float):
    """The (k, i) distance of every voxel from the spine's axis in mm, and the 26-connected pieces of
    `bone` at least `min_lateral_mm` from it, each as its voxels' (k, j, i) index arrays."""
    lateral = np.abs(np.arange(bone.shape[2])[None, :] - column.axis_x[:, None]) * spacing[0]
    labels, _ = ndimage.label(bone & (lateral >= min_lateral_mm)[:, None, :], ndimage.generate_binary_structure(3, 3))
    pieces = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None:
            k, j, i = np.nonzero(labels[box] == index)
            pieces.append((k + box[0].start, j + box[1].start, i + box[2].start))
    return lateral, pieces


def rib_heads(hu: np.ndarray, bone: np.ndarray, column: SpineColumn, spacing, below: float = -1.0) -> list[float]:
    """Slice positions (k) of the medial ends of ribs seen beside the column, in `bone` (`_bone` with the
    ribs' thresholds); bone reaching down to slice `below` (the top of the sacrum when it was found) is
    not a rib."""
    sy = spacing[1]
    lateral, pieces = _beside_column(bone, column, spacing, COLUMN_ZONE_MM)
    heads = []
    centre = column.centre_j
    voxel_cm3 = float(np.prod(spacing)) / 1000.0
    for k, j, i in pieces:
        if k.size < 10:
            continue
        dense = hu[k, j, i] > RIB_CORE_HU   # the rib itself, not the organ rim grown onto it, is measured
        if dense.sum() < 5:
            continue
        k, j, i = k[dense], j[dense], i[dense]
        dist = lateral[k, i]
        if dist.min() > RIB_START_MM or dist.max() < RIB_REACH_MM or (k.max() - k.min()) * spacing[2] > 100.0:
            continue
        if k.min() <= 1 or k.min() <= below or k.size * voxel_cm3 > RIB_MAX_CM3:
            continue  # cut by the bottom of the image, reaching the sacrum or bulky: an ilium, not a rib
        medial = dist <= dist.min() + 6.0
        km = k[medial]
        if k[dist >= dist.max() - 10.0].mean() > km.mean():
            continue  # rises as it runs out: an iliac crest (ribs fall from their heads)
        body = centre[np.clip(np.round(km).astype(int), 0, centre.size - 1)]
        if np.isnan(body).all() or (j[medial].mean() - np.nanmean(body)) * sy < 0.0:
            continue  # its medial end is in front of the vertebral body: costal cartilage, not a rib head
        heads.append(float(km.mean()))
    return heads


def sacral_spread(hu: np.ndarray, column: SpineColumn, spacing, k: int) -> bool:
    """Does the bone through the column at slice k spread to >= 60 mm on both sides (sacrum + ilia)?"""
    sx, sy, _ = spacing
    if np.isnan(column.centre_j[k]):
        return False
    bone = ndimage.binary_closing(hu[k] > SACRAL_BONE_HU, iterations=1)
    labels, _ = ndimage.label(bone)
    cj, ci = column.centre_j[k], column.axis_x[k]
    rj, ri = max(1, int(15.0 / sy)), max(1, int(15.0 / sx))
    seed = labels[max(0, int(cj) - rj):int(cj) + rj + 1, max(0, int(ci) - ri):int(ci) + ri + 1]
    ids = np.unique(seed[seed > 0])
    if ids.size == 0:
        return False
    cols = np.flatnonzero(np.isin(labels, ids).any(axis=0))
    return (ci - cols.min()) * sx >= SACRAL_SPREAD_MM and (cols.max() - ci) * sx >= SACRAL_SPREAD_MM


def _segments(column: SpineColumn, discs_s: np.ndarray, sz: float) -> list[tuple[float, float, bool]]:
    """Vertebral stretches as (k_low, k_high, complete), inferior -> superior, from the discs."""
    k_of = lambda s: float(np.interp(s, column.s_mm, column.k_of_s))
    edges = [k_of(s) for s in discs_s]
    bottom, top = float(column.k_of_s[0]), float(column.k_of_s[-1])
    out = []
    if edges and (edges[0] - bottom) * sz >= MIN_PARTIAL_MM:
        out.append((bottom, edges[0], False))
    out += [(a, b, True) for a, b in zip(edges[:-1], edges[1:])]
    if edges and (top - edges[-1]) * sz >= MIN_PARTIAL_MM:
        out.append((edges[-1], top, False))
    return out


def _is_sacral(hu, column, spacing, k_low: float, k_high: float) -> bool:
    """Most slices of the stretch's middle half spread into the pelvis (near the discs a tilted
    L5-S1 junction mixes both)."""
    ks = middle_half(column, k_low, k_high)
    if not ks:
        return False
    return 2 * sum(sacral_spread(hu, column, spacing, k) for k in ks) >= len(ks)


def iliac_crest_top(hu: np.ndarray, column: SpineColumn, spacing) -> float | None:
    """Slice (k) of the iliac crests' top: the highest point of the large lateral bone that runs down into
    the pelvis (each ilium), averaged over the sides found. In most adults it lies at the L4 body or the
    L4-L5 disc: a check on the count, and a weak anchor of its own."""
    _, pieces = _beside_column(_bone(hu, RIB_CORE_HU, SACRAL_BONE_HU), column, spacing, CREST_LATERAL_MM)
    voxel_cm3 = float(np.prod(spacing)) / 1000.0
    tops = {}
    for k, _j, i in pieces:
        height = (k.max() - k.min()) * spacing[2]
        if k.size * voxel_cm3 < ILIUM_MIN_CM3 or height < ILIUM_MIN_HEIGHT_MM or k.min() > 2:
            continue   # not an ilium: too small, too short, or not reaching down to the bottom of the scan
        where = int(np.sign(np.mean(np.sign(i - column.axis_x[k]))))   # which side of the spine
        tops[where] = max(tops.get(where, -1.0), float(k.max()))
    return float(np.mean(list(tops.values()))) if tops else None


def _name_segments(segments, l5_index: int | None, t12_index: int | None, notes: list) -> tuple[dict, str, str]:
    """Names for the stretches, the anchor used and the confidence."""
    if l5_index is None and t12_index is None:
        notes.append("neither the sacrum nor a last rib is in view: vertebral levels are not named")
        return {}, "none", "none"
    if l5_index is not None and t12_index is not None:
        lumbar = t12_index - l5_index - 1
        if lumbar == 4:
            base, anchor, confidence = l5_index - 1, "sacrum and last rib", "high"
        else:
            base, anchor, confidence = l5_index - 1, "sacrum", "low"
            notes.append(f"counting from the sacrum and from the last rib disagree ({lumbar + 1} lumbar-type "
                         f"vertebrae between them instead of 5): a transitional vertebra, 11 or 13 rib pairs, or a "
                         f"missed disc; levels are counted from the sacrum, check them")
    elif l5_index is not None:
        base, anchor, confidence = l5_index - 1, "sacrum", "medium"
    else:
        base, anchor, confidence = t12_index - 6, "last rib", "medium"
    names = {}
    for index in range(len(segments)):
        position = index - base          # 0 = S1, 1 = L5, ...
        if 0 <= position < len(ORDER):
            names[index] = ORDER[position]
    return names, anchor, confidence


def _name_from_crest(segments, crest_index: int, crest: float, notes: list) -> tuple[dict, str, str]:
    """Only the iliac crests in view: the vertebra at their top is taken as L4 (the commonest level), shown
    with low confidence (never measured) so that a reader can confirm L3 with one look."""
    low, high, _ = segments[crest_index]
    base = crest_index - 2 if (crest - low) >= (high - low) / 3.0 else crest_index - 1   # crest at the L4-L5 disc: L5
    notes[:] = [n for n in notes if not n.endswith("vertebral levels are not named")]
    notes.append("neither the sacrum nor a last rib is in view: levels are named from the iliac crests (their top at "
                 "L4 in most adults, but at L5 or L3 in some), with low confidence; confirm L3 and set it by hand")
    names = {index: ORDER[index - base] for index in range(len(segments)) if 0 <= index - base < len(ORDER)}
    return names, "iliac crest", "low"


def _check_crest(names: dict, segments, crest_index: int, crest: float, report: LevelReport) -> None:
    """The count must put the crests' top between L3-L4 and L5-S1; else one of the anchors is wrong."""
    name = names.get(crest_index)
    if name in ("L4", "L5") or (name == "L3" and crest - segments[crest_index][0] < 0.25 * (segments[crest_index][1]
                                                                                         - segments[crest_index][0])):
        return
    report.confidence = "low"
    report.notes.append(f"the iliac crests' top lies at {name or 'an unnamed vertebra'}, not at L4 or L5 as the count "
                        "says they should: an anchor may be wrong; check the levels (and give L3 by hand)")


def _name_from_processes(segments, reaches: dict, notes: list) -> tuple[dict, str, str]:
    """No sacrum, last rib or crest in view: the vertebra with the longest transverse processes, with a
    complete vertebra above and below it, is taken as L3; low confidence (shown, never measured)."""
    index = transverse_processes.longest(reaches)
    if index is None or reaches.get(index - 1) is None or reaches.get(index + 1) is None:
        return {}, "none", "none"
    base = index - 3
    notes[:] = [n for n in notes if not n.endswith("vertebral levels are not named")]
    notes.append("neither the sacrum, a last rib nor the iliac crests are in view: levels are named from the "
                 "transverse processes (L3's are the longest in most adults, L2's or L4's in some), with low "
                 "confidence; confirm L3 and set it by hand")
    names = {i: ORDER[i - base] for i in range(len(segments)) if 0 <= i - base < len(ORDER)}
    return names, "transverse processes", "low"


def _check_processes(names: dict, reaches: dict, report: LevelReport) -> int | None:
    """Where one vertebra of L1..L4 has clearly the longest transverse processes and it is not the one named
    L3, a count from one anchor may be one off: its confidence falls to low. Returns that vertebra's index."""
    lumbar = {index: r for index, r in reaches.items() if names.get(index) in ("L1", "L2", "L3", "L4")} \
        if names else reaches
    index = transverse_processes.longest(lumbar)
    if index is not None and names.get(index) == "L3" and report.anchor == "iliac crest":
        # two weak anchors agreeing: still not measured without a look (either is off in some adults)
        report.notes.append("the transverse processes are longest at the vertebra the crests name L3: they agree")
    if index is None or not names or names.get(index) == "L3":
        return index
    if report.confidence == "medium":
        report.confidence = "low"
        report.notes.append(f"the transverse processes are longest at {names[index]}, not at L3 as they are in most "
                            f"adults: the count from the {report.anchor} may be one off; check the levels (and give L3 "
                            "by hand)")
    return index


def _check_heights(segments, names: dict, typical: float | None, report: LevelReport) -> None:
    """Counting is only as good as the discs: a vertebra between the anchor and L3 much taller or shorter
    than the others means a missed or a false disc, so every name above or below it may be one off."""
    if report.confidence not in ("high", "medium") or sum(complete for _, _, complete in segments) < 3:
        return
    anchor_index = {"last rib": "T12", "sacrum": "L5", "sacrum and last rib": "L5"}.get(report.anchor)
    index_of = {name: index for index, name in names.items()}
    if anchor_index not in index_of or "L3" not in index_of:
        return
    lo, hi = sorted((index_of[anchor_index], index_of["L3"]))
    odd = [names[i] for i in range(lo, hi + 1) if segments[i][2]
           and not HEIGHT_RANGE[0] <= (segments[i][1] - segments[i][0]) / typical <= HEIGHT_RANGE[1]]
    if odd:
        report.confidence = "low"
        report.notes.append(f"{', '.join(odd)} is {'are ' if len(odd) > 1 else ''}much taller or shorter than the other "
                            "vertebrae: a disc was missed or a false one found between the anchor and L3, so the count "
                            "may be one off; check the levels (and give L3 by hand)")


def detect_levels(canonical: sitk.Image) -> LevelReport:
    """Vertebral levels on a canonical (LPS) CT. Slice positions in the report are canonical k of
    `canonical` (fractional on the working grid mapped back)."""
    report = LevelReport()
    coverage = canonical.GetSize()[2] * canonical.GetSpacing()[2]
    if coverage < MIN_COVERAGE_MM:
        report.notes.append(f"the CT covers {coverage:.0f} mm along the body: too short to count vertebrae "
                            f"(needs {MIN_COVERAGE_MM:.0f} mm)")
        return report
    if canonical.GetSpacing()[2] > MAX_SLICE_MM:
        report.notes.append(f"slices {canonical.GetSpacing()[2]:.1f} mm apart: intervertebral discs cannot be told "
                            f"apart reliably above {MAX_SLICE_MM} mm, vertebral levels are not looked for; give L3 by hand")
        return report
    work = _working_image(canonical)
    hu = sitk.GetArrayViewFromImage(work)
    spacing = work.GetSpacing()
    column = find_column(hu, spacing)
    if column.s_mm.size == 0 or column.s_mm[-1] < MIN_PARTIAL_MM:
        report.notes.append("no vertebral column found")
        return report
    discs = find_discs(column.s_mm, column.profile)
    segments = _segments(column, discs, spacing[2])
    if not segments:
        report.notes.append("no intervertebral disc found along the column")
        return report
    # sacrum: the lowest disc with a sacral stretch below and a free vertebra above is L5-S1
    l5_index = None
    for index in range(1, len(segments)):
        low, high = segments[index - 1], segments[index]
        if _is_sacral(hu, column, spacing, low[0], low[1]) and not _is_sacral(hu, column, spacing, high[0], high[1]):
            l5_index = index
            break
    rib_bone = _bone(hu, RIB_CORE_HU, RIB_HU)     # the ribs' mask, also the transverse processes'
    heads = rib_heads(hu, rib_bone, column, spacing, segments[l5_index - 1][1] if l5_index is not None else -1.0)
    t12_index = None
    if heads:
        lowest = min(heads)
        for index, (low, high, _) in enumerate(segments):
            if low <= lowest <= high:
                t12_index = index
                break
        if t12_index is not None and not segments[t12_index][2] and t12_index == len(segments) - 1 \
                and (segments[t12_index][1] - lowest) * spacing[2] < OPEN_END_MM:
            # the column's centre line ends at the rib head: the vertebra there may be T12 or the one below
            report.notes.append("the last rib's head lies where the traced column ends: which vertebra carries it "
                                "cannot be told, so the last rib is not used as an anchor")
            t12_index = None
    crest = iliac_crest_top(hu, column, spacing)
    crest_index = next((index for index, (low, high, _) in enumerate(segments) if low <= crest <= high), None) \
        if crest is not None else None
    names, report.anchor, report.confidence = _name_segments(segments, l5_index, t12_index, report.notes)
    if not names and crest_index is not None:
        names, report.anchor, report.confidence = _name_from_crest(segments, crest_index, crest, report.notes)
    elif names and crest_index is not None:
        _check_crest(names, segments, crest_index, crest, report)
    s1_index = l5_index - 1 if l5_index is not None else None    # the sacrum's alae are no transverse processes
    reaches = {index: transverse_processes.reach_mm(rib_bone, column, spacing, low, high)
               for index, (low, high, complete) in enumerate(segments) if complete and index != s1_index}
    if not names:
        names, report.anchor, report.confidence = _name_from_processes(segments, reaches, report.notes)
    tp_index = _check_processes(names, reaches, report)
    heights = [high - low for low, high, complete in segments if complete]
    typical = float(np.median(heights)) if heights else None
    _check_heights(segments, names, typical, report)
    to_k = _working_to_canonical(work, canonical)
    report.anchors = {
        "sacrum": {"found": l5_index is not None} | ({"L5_S1_disc_slice": round(to_k(segments[l5_index][0]), 1)}
                                                     if l5_index is not None else {}),
        "last_rib": {"found": t12_index is not None, "rib_heads_slices": sorted(round(to_k(h), 1) for h in heads)},
        "iliac_crest": {"found": crest is not None} | ({"top_slice": round(to_k(crest), 1)} if crest is not None else {}),
        "transverse_processes": {"found": tp_index is not None,
                                 "reach_mm": {names.get(index, f"slices {to_k(segments[index][0]):.0f}-"
                                                                 f"{to_k(segments[index][1]):.0f}"): round(r, 1)
                                              for index, r in reaches.items() if r is not None}}
        | ({"longest_at": names.get(tp_index, f"slice {to_k(sum(segments[tp_index][:2]) / 2):.0f}")}
           if tp_index is not None else {}),
        "used": report.anchor, "confidence": report.confidence}
    report.discs_mm = [round(float(_z_mm(work, np.interp(s, column.s_mm, column.k_of_s))), 2) for s in discs]
    for index, name in names.items():
        low, high, complete = segments[index]
        a, b = to_k(low), to_k(high)
        mid = (low + high) / 2.0
        if not complete and typical and high - low < typical and name.startswith("L"):
            # a lumbar body cut by the field of view: its middle is half a typical (lumbar) vertebra
            # from the disc in view (T12 is smaller, S1 is part of the tilted sacrum: visible middle)
            mid = max(low, high - typical / 2.0) if index == 0 else min(high, low + typical / 2.0)
        row = int(np.clip(round(mid), 0, hu.shape[0] - 1))
        centre_j = column.centre_j[row] if not np.isnan(column.centre_j[row]) else np.nanmedian(column.centre_j)
        centre = work.TransformContinuousIndexToPhysicalPoint((float(column.axis_x[row]), float(centre_j), mid))
        report.levels[name] = {"range_k": (a, b), "mid_k": to_k(mid), "complete": complete,
                               "confidence": report.confidence if complete else "low", "anchor": report.anchor,
                               "centre_lps_mm": [round(float(v), 2) for v in centre]}
        if not complete:
            report.levels[name]["note"] = "cut by the field of view: its middle is uncertain"
    return report


def _z_mm(image: sitk.Image, k: float) -> float:
    return image.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, float(k)))[2]


def _working_to_canonical(work: sitk.Image, canonical: sitk.Image):
    z0 = canonical.GetOrigin()[2]
    dz = canonical.GetSpacing()[2] * canonical.GetDirection()[8]

    def convert(k: float) -> float:
        return (_z_mm(work, k) - z0) / dz

    return convert
