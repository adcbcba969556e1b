"""Tissue references drawn by the definitions, without any model's output (issue 24).

A reference a model made shares that model's blind spots: TotalSegmentator's tissue masks and the
first AdiposeSeg model both leave out the innermost layer of the abdominal wall, so a model that
draws it scores lower against them. This module draws the reference from HU windows and anatomy:

1. Body: the slice's largest part above -500 HU (`hu_checks.largest_body`; arms lying apart are not
   the trunk; an arm lying on the flank is parted at -400 HU, as `measuring/trunk.py` does), holes filled.
2. Rays from the body's centre, walked inward from the skin (`_walk`): the skin (at most skin_mm of
   non-fat), the SAT (fat; fibrous septa stay in it), then the wall's outer fascia: the first run of
   muscle-range (-29..150 HU) or bone at least layer_mm thick with mostly muscle or bone behind it
   (probe_mm, probe_share). From there
   the layer stack: muscle-range runs with fat planes of at most `gap_mm` between them (the fat
   between external oblique, internal oblique and transversus), ended by a wider fat plane
   (extraperitoneal or visceral fat), by gas, or by bone at least bone_stop_mm thick (the spine; a
   rib in the chest wall).
3. Where the stack runs on without a fat plane into an organ lying on it (liver, spleen, bowel,
   kidney: a muscle-range run longer than max_run_mm that does not end at bone, or a stack deeper
   than max_depth_mm), the ray is cut at the depth the neighbouring rays reach with a clear plane,
   and a band of unsure_mm on either side of the cut is ignored (255): there the boundary is not
   known from the image.
4. The muscles on the spine: grown in the muscle range from the vertebra, beside its body (psoas,
   crura; not from its front, where the aorta lies) and behind it (the back muscles, quadratus
   lumborum), thin bridges of partial volume to organs cut first.
5. SAT: fat between the skin and the outer fascia (the body's outermost voxel ignored: fat-range
   there is partial volume with the air). Muscle: muscle-range voxels of the stack and of
   the psoas. IMAT: fat-range voxels within the stack or enclosed by muscle. VAT: fat inside the
   stack's inner line, except in the spine's own zone (epidural and paraspinal fat: ignored).
6. At rib levels (`_rib_cage`): inside the ribs' inner line muscle-range tissue is liver or spleen, an
   8 mm band inside the ribs (the diaphragm lying on them) and the crura are ignored, the intercostal
   spaces are muscle, and fat inside the wall line but outside the ribs is ignored (chest wall fat).
7. Corrections by eye, stored as data (`corrections` JSON: polygons per slice range, in the
   canonical LPS array's (column, row) pixels): `muscle` (muscle-range voxels in the polygon become
   Muscle, fat-range IMAT), `not_muscle` (Muscle and IMAT in it become background; fat in it VAT
   or SAT when `fat_is` says so), `ignore` (255).

Every threshold is a named field of `Rules`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from AdiposeSegLib.measuring.trunk import SPLIT_HU
from AdiposeSegLib.reading.hu_checks import largest_body
from AdiposeSegLib.reading.labels_io import IGNORE_LABEL as IGNORE
from AdiposeSegLib.tissues import BACKGROUND, IMAT, MUSCLE, SAT, VAT, HUWindows

ARM_FRACTION = 0.05      # a part this large beside the trunk (of its size) is a limb lying on it
BONE_HU = 150.0          # above the muscle window: bone, calcium, contrast


@dataclass(frozen=True)
class Rules:
    skin_mm: float = 4.0          # non-fat at the surface before the SAT starts
    layer_mm: float = 2.0         # a muscle-range run this thick after the SAT may be the wall's outer fascia,
    probe_mm: float = 8.0         # when at least PROBE_SHARE of the next probe_mm is muscle-range or bone
    probe_share: float = 0.6      # (a fibrous septum in the SAT is a thin line with fat behind it)
    max_run_mm: float = 25.0      # a muscle-range run this long not ending at bone is an organ on the wall
    gap_mm: float = 3.0           # a fat plane at most this wide lies between two wall layers
    bone_stop_mm: float = 5.0     # bone this thick ends the stack (spine, rib)
    max_depth_mm: float = 110.0   # no stack runs deeper (the back muscles are the deepest)
    neighbour_deg: float = 30.0   # the neighbours a ray is compared with (each side; an organ may lie along 60 degrees of wall)
    out_of_line_mm: float = 5.0   # a ray ending in a plane this much deeper than its neighbours ran into an organ
    typical_percentile: float = 30.0   # the neighbours' typical depth (organs on the wall push the median up)
    unsure_mm: float = 3.0        # ignored either side of a cut
    default_wall_mm: float = 12.0  # the wall's depth where no ray of the slice finds a plane
    psoas_reach_mm: float = 30.0  # psoas/crura grown no farther than this from the vertebra
    back_reach_mm: float = 90.0   # the back muscles and quadratus lumborum no farther than this
    psoas_neck_mm: float = 2.0    # bridges thinner than twice this between those muscles and an organ are cut
    spine_near_mm: float = 12.0   # a stack ending this close to the vertebra is the back muscles': never cut
    sat_window_deg: float = 15.0  # the SAT depth a ray is compared with (each side)
    sat_jump_mm: float = 5.0      # deeper than that by this much (or half of it) took a muscle for a septum
    rib_piece_mm2: float = 15.0   # a bone piece this large away from the spine is a rib (or costal cartilage)
    rib_spine_gap_mm: float = 1.5  # bone this close to the vertebra is its own (a rib's head joins it)
    rib_depth_mm: float = 30.0    # a rib lies at most this far inside the wall's outer fascia (in front of the spine)
    rib_max_mm2: float = 300.0    # larger bone-dense pieces are not a rib's cross-section (an enhancing kidney)
    rib_front: float = 0.3        # a rib cage has ribs this far into the body's depth from its front, both sides
    ring_ribs: int = 6            # at least this many rib pieces (some in the front third, both sides) make a rib cage
    crus_mm: float = 15.0         # inside the ribs, muscle-range this close to the vertebra may be a crus (ignored)
    rib_band_mm: float = 8.0      # the intercostal spaces' thickness (a rib's)
    intercostal_deg: float = 40.0  # neighbouring ribs at most this far apart around the body bound a space
    diaphragm_mm: float = 8.0     # inside the rib cage: the diaphragm on the liver and spleen, not told apart (ignored)
    rays: int = 720
    smooth_rays: int = 9          # running median over this many rays (4.5 degrees)


def _body(hu: np.ndarray) -> np.ndarray:
    """The trunk: the largest part above -500 HU, holes filled; an arm lying on the flank (joined to it
    only through the skins' partial volume, -500..-400 HU) is parted at trunk.SPLIT_HU and left out."""
    body = largest_body(hu)
    if body is None:
        return np.zeros(hu.shape, bool)
    parts, count = ndimage.label(body & (hu > SPLIT_HU))
    sizes = np.bincount(parts.ravel())[1:]
    if count > 1 and np.sort(sizes)[-2] >= ARM_FRACTION * sizes.max():     # an arm, not a strand of skin
        trunk = parts == int(np.argmax(sizes)) + 1
        # the trunk's own skin rim (-500..-400 HU) kept; the arm's beyond two pixels is not
        body &= ndimage.binary_dilation(trunk, iterations=2)
        labels, _ = ndimage.label(body)
        body = labels == labels[trunk].max()
    return ndimage.binary_fill_holes(body)


# sample classes along a ray
OUT, FAT, MUS, BONE, GAS = 0, 1, 2, 3, 4


def _classes(hu: np.ndarray, body: np.ndarray, windows: HUWindows) -> np.ndarray:
    c = np.full(hu.shape, GAS, np.uint8)
    c[windows.is_fat(hu)] = FAT
    c[windows.is_muscle(hu)] = MUS
    c[hu > windows.muscle[1]] = BONE
    c[(hu > windows.fat[1]) & (hu < windows.muscle[0])] = MUS   # the one-HU seam between the windows
    c[~body] = OUT
    return c


def _runs(row: np.ndarray):
    """(class, start, stop) runs of a 1-D array."""
    edges = np.flatnonzero(np.diff(row)) + 1
    starts = np.concatenate(([0], edges))
    stops = np.concatenate((edges, [row.size]))
    return [(int(row[a]), int(a), int(b)) for a, b in zip(starts, stops)]


def _walk(profile: np.ndarray, step: float, rules: Rules, gap_mm: float, pixel_mm: float,
          near_spine: np.ndarray | None = None):
    """One ray, sampled from the skin inward (index 0 = outermost body sample). Returns (outer fascia,
    stack end) as sample indices and how the stack ended: "plane" (a fat plane wider than gap_mm, bone
    other than the spine's, a fold), "bone" (at the spine: as deep as it is), "gas" (bowel gas: the
    run before it may be the bowel's wall), "organ" (a run longer than max_run_mm, or deeper than
    max_depth_mm, not reaching the spine); (None, None, None) when no wall is found."""
    runs = _runs(profile)
    dense = np.isin(profile, (MUS, BONE)).astype(float)
    probe = max(1, int(round(rules.probe_mm / step)))
    share = np.convolve(dense, np.ones(probe), "full")[probe - 1:] / probe   # share[a]: of a..a+probe
    i = 0
    # skin: non-fat at the surface (gas-like partial volume with the air outside included)
    depth, skin_mm = 0.0, max(rules.skin_mm, 2.05 * pixel_mm)
    while i < len(runs) and runs[i][0] != FAT and depth + (runs[i][2] - runs[i][1]) * step <= skin_mm:
        depth += (runs[i][2] - runs[i][1]) * step
        i += 1
    # SAT: fat with thin septa, up to the first thick muscle-range or bone run
    outer = None
    while i < len(runs):
        cls, a, b = runs[i]
        if cls in (MUS, BONE) and (b - a) * step >= rules.layer_mm and share[a] >= rules.probe_share:
            outer = a
            break
        if cls in (GAS, OUT) and i > 0:
            return None, None, None
        i += 1
    if outer is None:
        return None, None, None
    end = runs[i][2]
    max_samples = int(rules.max_depth_mm / step)
    organ_at = None              # where a run too long for a wall layer started, unless the stack reaches the spine

    def finish(stop, how):
        # bone ends the stack; only the spine's vouches for its depth (a rib, an enhancing kidney do not)
        reached_spine = near_spine is not None and bool(near_spine[min(max(stop, 1), near_spine.size) - 1])
        if how == "bone" and not reached_spine:
            how = "plane"
        if organ_at is not None and not reached_spine:
            return outer, organ_at, "organ"
        return outer, stop, "bone" if reached_spine else how

    while i < len(runs):
        cls, a, b = runs[i]
        length = (b - a) * step
        if a - outer > max_samples:
            return finish(outer + max_samples, "organ")
        if cls == MUS:
            if length > rules.max_run_mm and organ_at is None:
                organ_at = a + int(rules.max_run_mm / step)
            end = b
        elif cls == BONE:
            if length >= rules.bone_stop_mm:
                return finish(a, "bone")
            end = b
        elif cls == FAT:
            if length > gap_mm or i == len(runs) - 1:
                return finish(end, "plane")
        elif cls == GAS:                         # bowel gas: the run before it may be the bowel's wall
            return finish(end, "gas")
        else:                                    # outside the body again (a fold)
            return finish(end, "plane")
        i += 1
    return finish(end, "organ")


@dataclass
class SliceRays:
    centre: tuple[float, float]       # (row, col)
    angles: np.ndarray
    skin: np.ndarray                  # mm from the centre, per ray
    outer: np.ndarray                 # outer fascia (nan: none)
    inner: np.ndarray                 # the stack's inner line after the cut
    cut: np.ndarray                   # bool: cut out of line (ignore band around `inner`)


def _rays(classes: np.ndarray, spacing_rc, rules: Rules, by_spine: np.ndarray | None = None) -> SliceRays:
    sy, sx = spacing_rc
    body = classes != OUT
    rows, cols = np.nonzero(body)
    cr, cc = rows.mean(), cols.mean()
    step = 0.5 * min(sy, sx)
    reach = float(np.hypot((rows - cr) * sy, (cols - cc) * sx).max()) + 2 * step
    t = np.arange(0.0, reach, step)
    angles = np.linspace(0, 2 * np.pi, rules.rays, endpoint=False)
    rr = np.rint(cr + np.outer(np.sin(angles), t) / sy).astype(int)
    cc_ = np.rint(cc + np.outer(np.cos(angles), t) / sx).astype(int)
    inside = (rr >= 0) & (rr < classes.shape[0]) & (cc_ >= 0) & (cc_ < classes.shape[1])
    samples = np.full(rr.shape, OUT, np.uint8)
    samples[inside] = classes[rr[inside], cc_[inside]]
    gap_mm = max(rules.gap_mm, 1.05 * max(sy, sx))
    n = rules.rays
    skin, outer, inner = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    status = np.full(n, "", object)

    def profile(k):
        """Ray k's last body sample and its samples (and nearness to the spine) from the skin inward."""
        in_body = np.flatnonzero(samples[k] != OUT)
        if in_body.size == 0:
            return None, None, None
        last = in_body[-1]
        near = None if by_spine is None else by_spine[rr[k, :last + 1], cc_[k, :last + 1]][::-1]
        return last, samples[k, :last + 1][::-1], near

    for k in range(n):
        last, samples_k, near = profile(k)
        if last is None:
            continue
        o, e, ok = _walk(samples_k, step, rules, gap_mm, max(sy, sx), near)
        skin[k] = last * step
        if o is None:
            continue
        outer[k] = (last - o) * step
        inner[k] = (last - e) * step
        status[k] = ok
    # the SAT's depth changes slowly around the body: a ray that walked through a thin muscle as if it
    # were a septum (the latissimus over the back) finds its "fascia" deep inside: it takes its
    # neighbours' SAT depth instead, and its stack is walked again from there
    sat = skin - outer
    typical_sat = _circular_median(sat, 2 * int(round(rules.sat_window_deg / 360 * n)) + 1)
    deep = sat > typical_sat + np.maximum(rules.sat_jump_mm, 0.5 * typical_sat)
    for k in np.flatnonzero(deep):
        last, samples_k, near = profile(k)
        start = int(round(typical_sat[k] / step))
        o, e, ok = _walk(samples_k[start:], step, replace(rules, skin_mm=0.0, probe_share=0.0, layer_mm=0.0),
                         gap_mm, 0.0, None if near is None else near[start:])
        if o is None:
            continue
        outer[k] = (last - start - o) * step
        inner[k] = (last - start - e) * step
        status[k] = ok
    depth = outer - inner
    cut = np.zeros(n, bool)
    window = max(1, int(round(rules.neighbour_deg / 360 * n)))
    final = inner.copy()
    plane = status == "plane"
    fallback = rules.default_wall_mm
    if (plane & ~np.isnan(depth)).sum() >= 5:
        fallback = float(np.percentile(depth[plane & ~np.isnan(depth)], rules.typical_percentile))
    for k in range(n):
        if np.isnan(depth[k]) or status[k] == "bone":
            continue                 # the back muscles end at the spine: as deep as they are
        for widen in (1, 2, 3):      # few clear planes nearby (an organ lying along the wall): look farther
            idx = np.arange(k - widen * window, k + widen * window + 1) % n
            good = idx[plane[idx] & ~np.isnan(depth[idx])]
            if good.size >= 5:
                break
        if good.size >= 5:
            typical = float(np.percentile(depth[good], rules.typical_percentile))
        elif status[k] in ("organ", "gas"):   # no plane anywhere near (a thin patient): the slice's typical wall
            typical = fallback
        else:
            continue
        if status[k] == "organ" or depth[k] > typical + rules.out_of_line_mm:
            final[k] = outer[k] - min(typical, depth[k])
            cut[k] = True
        elif status[k] == "gas":
            cut[k] = True            # where the wall ends and the bowel's wall begins is not known
    # one ray against its neighbours: a septum taken for the fascia, a gap in a layer
    outer, final = _circular_median(outer, rules.smooth_rays), _circular_median(final, rules.smooth_rays)
    return SliceRays((float(cr), float(cc)), angles, skin, outer, final, cut)


def _circular_median(values: np.ndarray, size: int) -> np.ndarray:
    half = size // 2
    padded = np.concatenate((values[-half:], values, values[:half]))
    windows = np.lib.stride_tricks.sliding_window_view(padded, size)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = np.nanmedian(windows, axis=1)
    return np.where(np.isnan(values) & (np.isnan(windows).sum(1) > half), np.nan, out)


def _polar(shape, spacing_rc, centre):
    sy, sx = spacing_rc
    r, c = np.mgrid[0:shape[0], 0:shape[1]]
    dy, dx = (r - centre[0]) * sy, (c - centre[1]) * sx
    return np.hypot(dy, dx), np.mod(np.arctan2(dy, dx), 2 * np.pi)


def _at(values: np.ndarray, angles: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Per-ray values at each pixel's angle (periodic linear interpolation over the rays that have one)."""
    ok = ~np.isnan(values)
    if not ok.any():
        return np.full(theta.shape, np.nan)
    a, v = angles[ok], values[ok]
    a = np.concatenate((a - 2 * np.pi, a, a + 2 * np.pi))
    v = np.concatenate((v, v, v))
    return np.interp(theta, a, v)


def _spine(hu: np.ndarray, body: np.ndarray, spacing_rc) -> np.ndarray | None:
    """The vertebra: the bone (> 150 HU) pieces whose centres lie in the middle fifth of the body's
    columns and not in its front third, closed, filled, with what they enclose."""
    bone = (hu > BONE_HU) & body
    parts, count = ndimage.label(bone)
    if count == 0:
        return None
    rows, cols = np.nonzero(body)
    c0, c1, r0, r1 = cols.min(), cols.max(), rows.min(), rows.max()
    chosen, total = [], 0
    part_px = 50.0 / (spacing_rc[0] * spacing_rc[1])     # pieces of at least 0.5 cm² (a cortex broken at 3 mm)
    for k, sl in enumerate(ndimage.find_objects(parts), start=1):
        mask = parts[sl] == k
        size = int(mask.sum())
        rc, cc = ndimage.center_of_mass(mask)
        rc += sl[0].start
        cc += sl[1].start
        if abs(cc - (c0 + c1) / 2) <= 0.1 * (c1 - c0) and rc >= r0 + 0.35 * (r1 - r0) and size >= part_px:
            chosen.append(k)
            total += size
    if total < 100.0 / (spacing_rc[0] * spacing_rc[1]):   # a vertebra is at least 1 cm² of bone
        return None
    vertebra = np.isin(parts, chosen)
    closing = 1 + int(round(5.0 / min(spacing_rc)))     # the cortex's gaps; the marrow inside is bone
    padded = np.pad(vertebra, closing)
    closed = ndimage.binary_closing(padded, iterations=closing)[closing:-closing, closing:-closing]
    mask = ndimage.binary_fill_holes(closed | vertebra)
    return mask | _enclosed(mask)


def _rib_cage(hu: np.ndarray, body: np.ndarray, spine: np.ndarray | None, spacing_rc, rules: Rules,
              wall_depth: np.ndarray, centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray] | None:
    """Inside the ribs, at rib levels: the polygon through the inner points of the rib pieces in angular
    order around the body's centre, closed along the vertebra (its two sides and the middle of its
    front). Liver, spleen and the
    diaphragm lie inside it; the intercostals, the wall's muscles outside the ribs and the back muscles
    behind the line from the last rib to the vertebra lie outside. Returns it and the intercostal
    spaces (a rib-thick band between neighbouring ribs). None where there is no rib cage
    (fewer than ring_ribs pieces, or none in the body's front third on either side: the lumbar levels
    and the pelvis).
    `wall_depth`: mm from the outer fascia per pixel (negative outside it); a piece deeper than
    rib_depth_mm inside the fascia (back_reach_mm behind the vertebra's middle, where the ribs run under
    the back muscles) is a vessel or an organ with contrast, not a rib. `centre`: the rays' (row, col)."""
    if spine is None:
        return None
    sy, sx = spacing_rc
    near_spine = ndimage.binary_dilation(spine, iterations=1 + int(round(rules.rib_spine_gap_mm / min(sy, sx))))
    parts, count = ndimage.label((hu > BONE_HU) & body & ~near_spine)
    if count < rules.ring_ribs:
        return None
    rows = np.nonzero(body)[0]
    cr, cc = centre
    spine_row = float(np.nonzero(spine)[0].mean())
    points = []
    min_px = rules.rib_piece_mm2 / (sy * sx)
    for k, sl in enumerate(ndimage.find_objects(parts), start=1):
        pr, pc = np.nonzero(parts[sl] == k)
        if pr.size < min_px:
            continue
        pr, pc = pr + sl[0].start, pc + sl[1].start
        d = np.hypot((pr - cr) * sy, (pc - cc) * sx)
        i = int(np.argmin(d))
        # behind the vertebra's middle the ribs run under the back muscles, deep inside the fascia
        limit = rules.back_reach_mm if pr.mean() > spine_row else rules.rib_depth_mm
        if not wall_depth[pr[i], pc[i]] <= limit or pr.size * sy * sx > rules.rib_max_mm2:
            continue
        points.append((float(np.arctan2((pr[i] - cr) * sy, (pc[i] - cc) * sx)), int(pc[i]), int(pr[i]),
                       (float(pc.mean()), float(pr.mean()))))
    # ribs or costal cartilage in the body's front third on both sides (the iliac crests lie farther back)
    front_row = rows.min() + rules.rib_front * (rows.max() - rows.min())
    front_left = [p for p in points if p[2] < front_row and p[1] > cc]
    front_right = [p for p in points if p[2] < front_row and p[1] < cc]
    if len(points) < rules.ring_ribs or not front_left or not front_right:
        return None
    # closed along the vertebra's front: its left-most point, the middle of its front, its right-most point
    sr, sc = np.nonzero(spine)
    top = sr.min()
    right, left = int(np.argmin(sc)), int(np.argmax(sc))
    spine_points = [(int(sc[left]), int(sr[left])), (int(np.median(sc[sr == top])), int(top)), (int(sc[right]), int(sr[right]))]
    back = float(np.arctan2(1.0, 0.0))                  # straight back: where the polygon is closed
    ordered = sorted(points, key=lambda p: (p[0] - back) % (2 * np.pi))
    polygon = [(p[1], p[2]) for p in ordered] + spine_points
    # the intercostal spaces: a band as thick as a rib between neighbouring ribs' centres
    from PIL import Image, ImageDraw

    img = Image.new("1", (hu.shape[1], hu.shape[0]), 0)
    draw = ImageDraw.Draw(img)
    width = max(1, int(round(rules.rib_band_mm / min(sy, sx))))
    for a, b in zip(ordered, ordered[1:]):
        if (b[0] - a[0]) % (2 * np.pi) <= np.radians(rules.intercostal_deg):
            draw.line([a[3], b[3]], fill=1, width=width)
    return _polygon_mask(hu.shape, polygon) & body, np.array(img, bool) & body


def _enclosed(mask: np.ndarray) -> np.ndarray:
    """Pixels with the vertebra on their left, their right and behind them (rows grow to the back): its
    marrow and canal where the cortex is not closed at this resolution (an osteoporotic body's front is
    often below 150 HU). The psoas and the back muscles have bone on one or two of those sides."""
    def seen(a, axis):
        return np.logical_or.accumulate(a, axis=axis)
    left = seen(mask, 1)
    right = seen(mask[:, ::-1], 1)[:, ::-1]
    behind = seen(mask[::-1], 0)[::-1]
    return left & right & behind & ~mask


def _spine_muscles(muscle_range: np.ndarray, spine: np.ndarray, dist: np.ndarray, spacing_rc, rules: Rules) -> np.ndarray:
    """Muscle-range voxels grown from the vertebra: beside its body (psoas, crura; not in front of it,
    where the aorta and the cava lie) up to psoas_reach_mm, and behind it (erector spinae,
    multifidus, quadratus lumborum) up to back_reach_mm. `dist`: mm from the vertebra."""
    sy, sx = spacing_rc
    rows, cols = np.nonzero(spine)
    top, centre_row = rows.min(), rows.mean()
    front = rows <= top + 0.4 * (centre_row - top)          # the vertebral body's front part
    mid = float(np.median(cols[front]))
    half = float(np.median([np.ptp(cols[front & (rows == r)]) for r in np.unique(rows[front])])) / 2 + 0.5
    near = ndimage.binary_dilation(spine, iterations=1 + int(round(3.0 / min(sy, sx))))   # a fat plane may part them
    r, c = np.mgrid[0:spine.shape[0], 0:spine.shape[1]]
    lateral = np.abs(c - mid) >= 0.8 * half                 # not in front of the body: aorta, cava
    behind = r > centre_row
    seeds = near & ~spine & muscle_range & ((r >= top + 0.2 * (centre_row - top)) & lateral | behind)
    reach = np.where(behind, rules.back_reach_mm, rules.psoas_reach_mm)
    allowed = muscle_range & ~spine & (dist <= reach) & (lateral | (r >= top))
    # thin bridges of partial volume to the aorta, a kidney or the liver broken before growing
    radius = max(1, int(round(rules.psoas_neck_mm / min(sy, sx))))
    compact = ndimage.binary_opening(allowed, iterations=radius)
    parts, _ = ndimage.label(compact)
    keep = np.unique(parts[ndimage.binary_dilation(seeds, iterations=radius) & compact])
    grown = np.isin(parts, keep[keep > 0])
    return ndimage.binary_dilation(grown, iterations=radius) & allowed


def _polygon_mask(shape, points) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("1", (shape[1], shape[0]), 0)
    ImageDraw.Draw(img).polygon([tuple(map(float, p)) for p in points], fill=1, outline=1)
    return np.array(img, bool)


def reference_slice(hu: np.ndarray, spacing_rc, rules: Rules = Rules(), windows: HUWindows = HUWindows(),
                    parts: dict | None = None) -> np.ndarray:
    """Labels (uint8: 0, SAT, VAT, MUSCLE, IMAT, IGNORE) of one canonical (LPS) axial slice. `parts`, when
    given, receives the masks "wall" (the layer stack's muscle), "wall_fat" (the fat planes between its
    layers) and "unsure" (its ignored bands)."""
    labels = np.zeros(hu.shape, np.uint8)
    body = _body(hu)
    if body.sum() * spacing_rc[0] * spacing_rc[1] < 2500.0:     # under 25 cm²: no trunk in this slice
        return labels
    classes = _classes(hu, body, windows)
    spine = _spine(hu, body, spacing_rc)
    spine_dist = None if spine is None else ndimage.distance_transform_edt(~spine, sampling=spacing_rc)
    rays = _rays(classes, spacing_rc, rules, None if spine is None else spine_dist <= rules.spine_near_mm)
    radius, theta = _polar(hu.shape, spacing_rc, rays.centre)
    outer = _at(rays.outer, rays.angles, theta)
    inner = _at(rays.inner, rays.angles, theta)
    cut = _at(rays.cut.astype(float), rays.angles, theta) > 0.5
    fat, mus = classes == FAT, classes == MUS
    outside_wall = body & (radius > outer)
    stack = body & (radius <= outer) & (radius >= inner)
    inside = body & (radius < inner)
    ribs = _rib_cage(hu, body, spine, spacing_rc, rules, outer - radius, rays.centre)
    cage, intercostal = ribs if ribs is not None else (None, None)
    diaphragm = np.zeros(hu.shape, bool)
    if cage is not None:             # a stack walked into the liver or spleen stops at the ribs
        deep = ndimage.binary_erosion(cage, iterations=max(1, int(round(rules.diaphragm_mm / min(spacing_rc)))))
        intercostal &= ~cage & ~outside_wall    # inside the ribs' inner line: the diaphragm's band
        diaphragm = cage & ~deep & ~outside_wall & ~intercostal
        inside |= stack & deep
        stack &= ~deep
        stack |= intercostal         # the intercostal muscles are the wall's
        inside &= ~intercostal
    labels[outside_wall & fat] = SAT
    muscle = stack & mus
    crura = np.zeros(hu.shape, bool)
    if spine is not None:
        grown = _spine_muscles(mus, spine, spine_dist, spacing_rc, rules) & ~outside_wall
        if cage is not None:         # inside the ribs the crura lie on the liver without a plane
            crura = grown & cage & (spine_dist <= rules.crus_mm)
            grown &= ~cage
        muscle |= grown
        muscle &= ~spine             # marrow of muscle density inside the vertebra
    labels[muscle] = MUSCLE
    enclosed = ndimage.binary_fill_holes(muscle | (stack & ~fat)) & fat
    labels[(stack & fat) | (enclosed & ~outside_wall)] = IMAT
    if cage is not None:
        # fat outside the ribs but inside the wall's inner line: between the chest wall's thin muscles
        # (IMAT) or under a latissimus taken for a septum (SAT), and the thin muscles there: not told
        # apart by these rules
        labels[inside & (fat | mus) & ~cage & (labels == BACKGROUND)] = IGNORE
    labels[inside & fat & (labels == BACKGROUND)] = VAT
    if spine is not None:
        rows, cols = np.nonzero(spine)
        margin = int(round(10.0 / spacing_rc[1]))
        zone = np.zeros(hu.shape, bool)
        zone[int(rows.mean()):, max(0, cols.min() - margin):cols.max() + margin + 1] = True
        labels[zone & (labels == VAT)] = IGNORE
        labels[ndimage.binary_dilation(spine, iterations=1) & fat & (labels == VAT)] = IGNORE
    band = cut & (np.abs(radius - inner) <= rules.unsure_mm) & (mus | fat) & body
    if cage is not None:
        band &= ~cage | diaphragm        # deep inside the ribs a cut ray lies in an organ: no band there
        band |= (diaphragm | crura) & mus
    labels[band] = IGNORE
    if parts is not None:
        parts["wall"] = stack & mus & (labels == MUSCLE)
        parts["wall_fat"] = stack & fat & (labels == IMAT)      # the fat planes between the layers
        parts["unsure"] = band
    # the skin's outermost voxel: fat-range by partial volume with the air outside, SAT or not unknown
    labels[body & ~ndimage.binary_erosion(body) & fat] = IGNORE
    return labels


def apply_corrections(labels: np.ndarray, hu: np.ndarray, corrections: list[dict], windows: HUWindows = HUWindows(),
                      first: int = 0) -> np.ndarray:
    """Corrections by eye for a (slices, rows, cols) canonical volume whose slice 0 is the case's slice
    `first` (the corrections name the case's slices): see the module's docstring."""
    out = labels.copy()
    fat = windows.is_fat(hu)
    mus = windows.is_muscle(hu)
    for entry in corrections:
        a, b = entry["slices"][0] - first, entry["slices"][1] - first
        inside = _polygon_mask(hu.shape[1:], entry["polygon"])
        for k in range(max(0, a), min(labels.shape[0], b + 1)):
            sl = out[k]
            if entry["set"] == "muscle":
                sl[inside & mus[k]] = MUSCLE
                sl[inside & fat[k]] = IMAT
            elif entry["set"] == "not_muscle":
                turn = inside & np.isin(sl, (MUSCLE, IMAT))
                sl[turn] = BACKGROUND
                if entry.get("fat_is") == "VAT":
                    sl[inside & fat[k] & np.isin(sl, (BACKGROUND, IMAT))] = VAT
                elif entry.get("fat_is") == "SAT":
                    sl[inside & fat[k]] = SAT
            elif entry["set"] == "ignore":
                sl[inside] = IGNORE
            else:
                raise ValueError(f"unknown correction {entry['set']!r}")
    return out


def reference_volume(hu: np.ndarray, spacing_rc, corrections: list[dict] | None = None, rules: Rules = Rules(),
                     slices: tuple[int, int] | None = None) -> np.ndarray:
    """The reference of a canonical volume's slices a..b-1 (all by default), corrections applied."""
    a, b = slices or (0, hu.shape[0])
    out = np.stack([reference_slice(hu[k], spacing_rc, rules) for k in range(a, b)])
    return apply_corrections(out, hu[a:b], corrections or [], first=a)


CORRECTIONS = Path(__file__).with_name("references") / "corrections.json"


def load_corrections(case: str, path: Path = CORRECTIONS) -> list[dict]:
    return json.loads(path.read_text()).get(case, [])


def with_wall_layer(hu: np.ndarray, labels: np.ndarray, spacing_rc, rules: Rules = Rules(),
                    planes: str = "imat") -> tuple[np.ndarray, dict]:
    """Training labels (canonical volume) given the wall's layer stack drawn by the definition: its
    muscle-range voxels that the labels call anything but Muscle or IMAT become Muscle, the fat planes
    between its layers IMAT (planes="ignore": ignored, so that no label teaches what they are), and its
    unsure bands are ignored where the labels do not already say Muscle. Nothing else changes (the
    spine's muscles and the fat keep the labels' own). Returns the labels and voxel counts."""
    if planes not in ("imat", "ignore"):
        raise ValueError(f"planes must be 'imat' or 'ignore', not {planes!r}")
    out = labels.copy()
    added = imat = unsure = 0
    for k in range(hu.shape[0]):
        parts: dict = {}
        reference_slice(hu[k], spacing_rc, rules, parts=parts)
        if not parts:
            continue
        add = parts["wall"] & ~np.isin(out[k], (MUSCLE, IMAT, IGNORE))
        fat_planes = parts["wall_fat"] & ~np.isin(out[k], (MUSCLE, IMAT, IGNORE)) & ~add
        band = parts["unsure"] & (out[k] != MUSCLE) & ~add & ~fat_planes
        out[k][add] = MUSCLE
        out[k][fat_planes] = IMAT if planes == "imat" else IGNORE
        out[k][band] = IGNORE
        added += int(add.sum())
        imat += int(fat_planes.sum()) if planes == "imat" else 0
        unsure += int(band.sum()) + (int(fat_planes.sum()) if planes == "ignore" else 0)
    return out, {"muscle_added": added, "imat_added": imat, "ignored": unsure}
