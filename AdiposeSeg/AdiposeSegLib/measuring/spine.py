"""Find the vertebral column on a CT: the spine's left-right axis, the vertebral-body centre line
in the mid-sagittal slab, and the body's density profile along that line (discs are its dips).

Everything works on the canonical HU array (k inferior->superior, j anterior->posterior,
i right->left) and is anatomy by rule, not by a trained model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

BONE_HU = 180.0          # cortical bone and dense trabecular bone
COLUMN_HU = 60.0         # vertebral bodies and discs stand above muscle/CSF in the mid-sagittal slab
BODY_DEPTH_MM = (12.0, 65.0)   # antero-posterior depth of a vertebral body or disc
BODY_CENTRE_DEPTH_MM = 52.0   # the centre is taken within this depth in front of the body's posterior wall
CANAL_MM = (4.0, 30.0)   # the spinal canal lies this far behind the body's posterior wall
STEP_MM = 1.0            # sampling step along the centre line
BRIDGE_GAP_MM = 25.0     # longest_chain: gaps up to this long are bridged ...
BRIDGE_JUMP_MM = 6.0     # ... when the centre line resumes within this depth


@dataclass
class SpineColumn:
    axis_x: np.ndarray       # per slice: column (i) of the spine's left-right axis
    centre_j: np.ndarray     # per slice: row (j) of the vertebral body's centre; NaN where not found
    depth_mm: np.ndarray     # per slice: antero-posterior depth of the body there; NaN where not found
    sagittal: np.ndarray     # (k, j) mid-sagittal slab, HU
    s_mm: np.ndarray         # arc length along the centre line (inferior -> superior)
    k_of_s: np.ndarray       # the (fractional) slice at each arc-length sample
    j_of_s: np.ndarray
    profile: np.ndarray      # mean HU across the body, perpendicular to the centre line


def spine_axis_x(hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Per slice, the left-right position of the spine: the centroid of bone near the body's
    centre, refined twice and smoothed along z (the spine is nearly straight left-right)."""
    sx, _, sz = spacing
    body = hu > -400
    axis = np.full(hu.shape[0], np.nan)
    half = 30.0 / sx
    for k in range(hu.shape[0]):
        columns = np.flatnonzero(body[k].any(axis=0))
        if columns.size == 0:
            continue
        c = (columns[0] + columns[-1]) / 2.0
        bone = hu[k] > BONE_HU
        for _ in range(2):
            lo, hi = max(0, int(c - half)), min(hu.shape[2], int(c + half) + 1)
            rows, cols = np.nonzero(bone[:, lo:hi])
            if cols.size < 5:
                break
            # the back half of that bone (the arch: pedicles, laminae, spinous process) is symmetric about the
            # midline; a contrast-filled aorta in front of the body, beside the midline, is not in it
            c = lo + cols[rows >= np.median(rows)].mean()
        axis[k] = c
    good = ~np.isnan(axis)
    if not good.any():
        return axis
    axis = np.interp(np.arange(axis.size), np.flatnonzero(good), axis[good])
    window = max(3, int(round(45.0 / sz)) | 1)
    return ndimage.median_filter(axis, window, mode="nearest")


def sagittal_slab(hu: np.ndarray, axis_x: np.ndarray, spacing: tuple[float, float, float], half_mm: float = 6.0) -> np.ndarray:
    half = max(1, int(round(half_mm / spacing[0])))
    out = np.empty(hu.shape[:2], dtype=np.float32)
    for k in range(hu.shape[0]):
        c = int(round(axis_x[k]))
        block = np.sort(hu[k][:, max(0, c - half):c + half + 1], axis=1)
        drop = block.shape[1] // 4    # trimmed mean: a contrast-filled aorta beside the midline does not lift it
        out[k] = block[:, drop:block.shape[1] - drop].mean(axis=1) if drop else block.mean(axis=1)
    return out


def _candidates(row: np.ndarray, sy: float) -> list[tuple[float, float, float]]:
    """Runs in one mid-sagittal row that look like a vertebral body (or disc): dense enough, the
    right depth, with a darker canal behind. Returns (centre_j, depth_mm, score)."""
    dense = row > COLUMN_HU
    edges = np.flatnonzero(np.diff(np.concatenate(([0], dense.view(np.int8), [0]))))
    runs = list(zip(edges[::2], edges[1::2]))
    out = []
    for n, (start, stop) in enumerate(runs):
        depth = (stop - start) * sy
        if not BODY_DEPTH_MM[0] <= depth <= BODY_DEPTH_MM[1]:
            continue
        # the posterior arch: another dense run a canal's width behind (a spinous process has none)
        arch = any(CANAL_MM[0] <= (s2 - stop) * sy <= CANAL_MM[1] and (e2 - s2) * sy >= 3.0 for s2, e2 in runs[n + 1:])
        # the centre from the posterior wall, which the canal keeps sharp: a contrast-filled aorta lying on
        # the body's front merges into the run at coarse voxels and would pull a run's middle off the body
        front = max(start, stop - int(round(BODY_CENTRE_DEPTH_MM / sy)))
        score = min(float(row[front:stop].mean()), 300.0) / 100.0 + (2.0 if arch else 0.0)
        out.append(((front + stop - 1) / 2.0, depth, score))
    return out


def body_centre_line(sagittal: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The vertebral-body centre (row j) per slice, chosen by dynamic programming: each slice's
    candidate runs, favouring dense runs and penalising jumps between neighbouring slices."""
    _, sy, sz = spacing
    smooth = ndimage.uniform_filter1d(sagittal, max(1, int(round(3.0 / sy))), axis=1)
    cands = [_candidates(smooth[k], sy) for k in range(sagittal.shape[0])]
    n = len(cands)
    centre = np.full(n, np.nan)
    depth = np.full(n, np.nan)
    # state per slice: one of the candidates, or 'none' (index -1)
    max_jump = max(4.0, 8.0 * sz / 3.0)  # mm of antero-posterior shift allowed per slice
    best: list[np.ndarray] = []
    back: list[np.ndarray] = []
    skip_cost = 1.0
    for k in range(n):
        options = cands[k]
        gain = np.array([score for _, _, score in options] + [-skip_cost])
        if k == 0:
            best.append(gain)
            back.append(np.full(gain.size, -1))
            continue
        prev = cands[k - 1]
        total = np.empty(gain.size)
        arg = np.empty(gain.size, dtype=int)
        for a in range(gain.size):
            scores = best[-1].copy()
            if a < len(options):
                for b in range(len(prev)):
                    jump = abs(options[a][0] - prev[b][0]) * sy
                    scores[b] -= 0.5 * jump / max_jump * 4.0 if jump <= max_jump else 1e6
            arg[a] = int(np.argmax(scores))
            total[a] = scores[arg[a]] + gain[a]
        best.append(total)
        back.append(arg)
    state = int(np.argmax(best[-1]))
    for k in range(n - 1, -1, -1):
        if state < len(cands[k]):
            centre[k], depth[k] = cands[k][state][0], cands[k][state][1]
        state = back[k][state] if k > 0 else state
    return centre, depth


def longest_chain(centre_j: np.ndarray, spacing: tuple[float, float, float], gap_mm: float = 10.0,
                  jump_mm: float = 12.0) -> np.ndarray:
    """Slices of the longest run of the centre line without a gap or jump: the column itself, not
    a pelvic organ the line wandered to below the sacrum."""
    good = np.flatnonzero(~np.isnan(centre_j))
    if good.size == 0:
        return good
    # a lone point off the line (the line wandered to another run for one slice) is dropped, not a break
    c = centre_j[good]
    if good.size >= 3:
        off = np.zeros(good.size, dtype=bool)
        off[1:-1] = ((np.abs(c[1:-1] - c[:-2]) * spacing[1] > jump_mm) & (np.abs(c[1:-1] - c[2:]) * spacing[1] > jump_mm)
                     & (np.abs(c[2:] - c[:-2]) * spacing[1] <= BRIDGE_JUMP_MM))
        good = good[~off]
    gap = np.diff(good) * spacing[2]
    jump = np.abs(np.diff(centre_j[good])) * spacing[1]
    # a gap of up to a disc and a half (a low-density disc, a slice or two without a candidate) is bridged
    # where the line goes on at the same depth; a longer one, or one across a jump, ends the chain
    breaks = (jump > jump_mm) | ((gap > gap_mm) & ((gap > BRIDGE_GAP_MM) | (jump > BRIDGE_JUMP_MM)))
    pieces = np.split(good, np.flatnonzero(breaks) + 1)
    return max(pieces, key=len)


def straightened_profile(sagittal: np.ndarray, centre_j: np.ndarray, spacing: tuple[float, float, float],
                         half_width_mm: float = 8.0):
    """Mean HU across the body along the centre line, on lines perpendicular to it (so tilted
    discs, as at L4-L5 and L5-S1, still show as dips). Returns s, k(s), j(s), profile."""
    _, sy, sz = spacing
    good = longest_chain(centre_j, spacing)
    if good.size < 3:
        empty = np.empty(0)
        return empty, empty, empty, empty
    k = good.astype(float)
    j = ndimage.uniform_filter1d(centre_j[good], max(1, int(round(12.0 / sz))), mode="nearest")
    z_mm, y_mm = k * sz, j * sy
    seg = np.hypot(np.diff(z_mm), np.diff(y_mm))
    s = np.concatenate(([0.0], np.cumsum(seg)))
    samples = np.arange(0.0, s[-1] + 1e-9, STEP_MM)
    zs, ys = np.interp(samples, s, z_mm), np.interp(samples, s, y_mm)
    dz, dy = np.gradient(zs), np.gradient(ys)
    norm = np.hypot(dz, dy) + 1e-9
    nz, ny = -dy / norm, dz / norm      # unit normal in the sagittal plane
    offsets = np.arange(-half_width_mm, half_width_mm + 1e-9, min(sy, 1.0))
    pz = zs[:, None] + offsets[None, :] * nz[:, None]
    py = ys[:, None] + offsets[None, :] * ny[:, None]
    values = ndimage.map_coordinates(sagittal, [pz / sz, py / sy], order=1, mode="nearest")
    return samples, zs / sz, ys / sy, values.mean(axis=1)


def middle_half(column: SpineColumn, k_low: float, k_high: float) -> list[int]:
    """The slices of the middle half of the stretch k_low..k_high where the body's centre line is known
    (near its discs a vertebra mixes with its neighbours)."""
    quarter = (k_high - k_low) / 4.0
    return [k for k in range(int(np.ceil(k_low + quarter)), int(np.floor(k_high - quarter)) + 1)
            if 0 <= k < column.centre_j.size and not np.isnan(column.centre_j[k])]


def find_column(hu: np.ndarray, spacing: tuple[float, float, float]) -> SpineColumn:
    axis = spine_axis_x(hu, spacing)
    if np.isnan(axis).all():
        axis = np.full(hu.shape[0], hu.shape[2] / 2.0)
    sag = sagittal_slab(hu, axis, spacing)
    centre, depth = body_centre_line(sag, spacing)
    s, ks, js, profile = straightened_profile(sag, centre, spacing)
    return SpineColumn(axis, centre, depth, sag, s, ks, js, profile)


DISC_FLANK_MM = 9.0      # a disc's endplates lie within this distance on either side of its dip
DISC_DEPTH_HU = 25.0     # the dip must be this much below both endplate peaks
MIN_BODY_MM = 15.0       # two discs are at least a (small thoracic) vertebral body apart


def find_discs(s: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """Arc-length positions of the intervertebral discs: dips of the body profile with an endplate
    peak close on each side (a vertebral body's own marrow dip has its endplates further away)."""
    if profile.size < 5:
        return np.empty(0)
    p = ndimage.gaussian_filter1d(profile, 1.5 / STEP_MM)
    flank = int(round(DISC_FLANK_MM / STEP_MM))
    found = []
    for n in range(1, p.size - 1):
        if not (p[n] <= p[n - 1] and p[n] < p[n + 1]):
            continue
        left, right = p[max(0, n - flank - 1):n], p[n + 1:n + 2 + flank]
        if left.size < 3 or right.size < 3:
            continue
        depth = min(left.max(), right.max()) - p[n]
        if left.argmax() > 0 and right.argmax() < right.size - 1:
            if depth >= DISC_DEPTH_HU:   # an endplate peak close on each side
                found.append((depth, s[n]))
        elif _steep_narrow(p, n, flank):
            found.append((depth, s[n]))
    kept: list[float] = []
    for depth, pos in sorted(found, reverse=True):
        if all(abs(pos - other) >= MIN_BODY_MM for other in kept):
            kept.append(pos)
    return np.array(_split_tall(sorted(kept), s, p))


def _steep_narrow(p: np.ndarray, n: int, flank: int) -> bool:
    """A disc between dense bodies without bright endplates: the profile climbs at least twice the
    disc depth on both sides within the flank, and half of that within a third of it."""
    if n - flank < 0 or n + flank >= p.size:
        return False
    need = 2 * DISC_DEPTH_HU
    near = max(1, flank // 3 * 2)
    return (min(p[n - flank], p[n + flank]) - p[n] >= need
            and min(p[n - near], p[n + near]) - p[n] >= need / 2)


TALL = 1.45            # a stretch this much taller than the typical vertebra hides a faint disc


def _split_tall(discs: list[float], s: np.ndarray, p: np.ndarray) -> list[float]:
    """Find faint discs (thin T11-T12 / T12-L1 discs, blurred slices) where the strict pass left a
    stretch far taller than its neighbours: the deepest dip inside it, a body's height from its ends."""
    if len(discs) < 3:
        return discs
    typical = float(np.median(np.diff(discs)))
    bounds = [float(s[0])] + list(discs) + [float(s[-1])]
    added = []
    for low, high in zip(bounds[:-1], bounds[1:]):
        if high - low <= TALL * typical:
            continue
        inside = np.flatnonzero((s >= low + MIN_BODY_MM) & (s <= high - MIN_BODY_MM))
        minima = [n for n in inside if 0 < n < p.size - 1 and p[n] <= p[n - 1] and p[n] < p[n + 1]]
        window = int(round(12.0 / STEP_MM))
        minima = [n for n in minima
                  if min(p[max(0, n - window):n].max(), p[n + 1:n + 1 + window].max()) - p[n] >= DISC_DEPTH_HU / 2]
        if minima:
            added.append(float(s[min(minima, key=lambda n: p[n])]))
    return sorted(discs + added)
