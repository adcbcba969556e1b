"""Synthetic abdominal CT phantoms with exact SAT / VAT / Muscle / IMAT labels.

Shapes are drawn in millimetres around the body centre and rasterised on any pixel grid, so one
anatomy can be rendered at 0.7 mm on 512x512 or at 3 mm on 128x128. Labels mark the tissue that was
painted (before noise and blur), the way an annotator marks a compartment's fat, not a noisy
threshold. Coordinates: x to the patient's left (image columns), y posterior (image rows), the
canonical LPS layout the engine works in.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

BG, SAT, VAT, MUSCLE, IMAT = 0, 1, 2, 3, 4


@dataclass
class Anatomy:
    """One patient: sizes in mm and tissue densities in HU, drawn once per phantom."""

    half_width: float          # body half-width (x)
    half_depth: float          # body half-depth (y)
    squareness: float          # superellipse exponent of the outline
    wobble: np.ndarray         # Fourier coefficients of the outline
    sat_anterior: float        # SAT thickness at the front
    sat_lateral: float
    sat_posterior: float
    wall: float                # abdominal wall muscle thickness
    vat_fraction: float        # how much of the free visceral space is fat
    fat_hu: float
    muscle_hu: float
    organ_hu: float
    contrast: bool
    noise_hu: float
    blur_mm: float
    arms: bool
    table: bool
    imat_spots: int
    septa: int
    seed: int
    body_shift: tuple = (0.0, 0.0)
    fov_radius: float = 1e9
    outside_fov_hu: float = -1024.0
    extras: dict = field(default_factory=dict)


def random_anatomy(rng: np.random.Generator) -> Anatomy:
    habitus = rng.uniform(0, 1)  # 0 cachectic .. 1 obese
    half_width = rng.uniform(120, 155) + 70 * habitus
    half_depth = half_width * rng.uniform(0.62, 0.85)
    sat_scale = 2 + 55 * habitus**1.5 + rng.uniform(-2, 8)
    return Anatomy(
        half_width=half_width,
        half_depth=half_depth,
        squareness=rng.uniform(2.0, 2.8),
        wobble=rng.normal(0, 0.02, size=(4, 2)),
        sat_anterior=max(2.0, sat_scale * rng.uniform(0.8, 1.3)),
        sat_lateral=max(2.0, sat_scale * rng.uniform(0.6, 1.1)),
        sat_posterior=max(2.0, sat_scale * rng.uniform(0.5, 1.0)),
        wall=rng.uniform(6, 16),
        vat_fraction=np.clip(0.15 + 0.7 * habitus + rng.normal(0, 0.1), 0.05, 0.95),
        fat_hu=rng.uniform(-115, -80),
        muscle_hu=rng.uniform(30, 60),
        organ_hu=rng.uniform(45, 65),
        contrast=bool(rng.uniform() < 0.5),
        noise_hu=rng.uniform(6, 28),
        blur_mm=rng.uniform(0.4, 1.2),
        arms=bool(rng.uniform() < 0.35),
        table=bool(rng.uniform() < 0.8),
        imat_spots=int(rng.integers(0, 12)),
        septa=int(rng.integers(0, 6)),
        seed=int(rng.integers(0, 2**31 - 1)),
        body_shift=(rng.uniform(-20, 20), rng.uniform(-25, 15)),
        fov_radius=rng.uniform(230, 260) if rng.uniform() < 0.5 else 1e9,
        outside_fov_hu=float(rng.choice([-1024.0, -2048.0, -3024.0])),
    )


class _Canvas:
    """HU and label images on a pixel grid, painted with shapes given in mm."""

    def __init__(self, rows: int, cols: int, spacing: float, anatomy: Anatomy):
        self.spacing = spacing
        ys = (np.arange(rows) - (rows - 1) / 2) * spacing - anatomy.body_shift[1]
        xs = (np.arange(cols) - (cols - 1) / 2) * spacing - anatomy.body_shift[0]
        self.y, self.x = np.meshgrid(ys, xs, indexing="ij")
        self.hu = np.full((rows, cols), -1000.0)
        self.labels = np.zeros((rows, cols), dtype=np.uint8)

    def paint(self, mask: np.ndarray, hu: float | np.ndarray, label: int) -> None:
        self.hu[mask] = hu if np.isscalar(hu) else hu[mask]
        self.labels[mask] = label

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0) -> np.ndarray:
        c, s = np.cos(angle), np.sin(angle)
        dx, dy = self.x - cx, self.y - cy
        u, v = c * dx + s * dy, -s * dx + c * dy
        return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _round_two(a: Anatomy) -> dict:
    """Anatomy added after the first default model, drawn from its own stream per patient so that the
    earlier draws (sizes, spacings, noise) keep their values for every seed."""
    r = np.random.default_rng([a.seed, 2])
    return {
        "muscle_hu_shift": -r.uniform(15, 45) if r.uniform() < 0.3 else 0.0,  # fatty muscle (older patients)
        "wall_layers": bool(r.uniform() < 0.75),    # external/internal oblique + transversus with fat planes
        "transversus_mm": r.uniform(2.5, 6.0),
        "plane_mm": r.uniform(1.0, 2.5),             # fat plane between wall layers
        "preperitoneal_mm": r.uniform(1.0, 4.0) if r.uniform() < 0.4 else 0.0,
        "crus_mm": r.uniform(6.0, 11.0),             # upper psoas / crus beside the vertebral body
        "ql_mm": r.uniform(10.0, 18.0),              # quadratus lumborum
    }


def _round_four(a: Anatomy) -> dict:
    """The wall's layers at realistic thickness (issue 24), its own stream: bulky flank muscles
    (external/internal oblique and transversus are thickest at the sides, the rectus in front), more
    extraperitoneal fat at the front and sides in patients with much visceral fat, and marbled fatty
    muscle in older patients (many small IMAT streaks in the back muscles, psoas and wall)."""
    r = np.random.default_rng([a.seed, 4])
    return {
        "flank_gain": r.uniform(1.1, 1.9) if r.uniform() < 0.7 else 1.0,
        "rectus_gain": r.uniform(0.8, 1.4),
        "preperitoneal_gain": 1.0 + 1.5 * a.vat_fraction * r.uniform(0, 1),
        "marbling": int(r.integers(25, 80)) if r.uniform() < 0.6 else 0,
    }


def _sectors(canvas: "_Canvas") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How much each pixel lies in front, behind and at the side of the body's centre (they sum to 1)."""
    theta = np.arctan2(canvas.y, canvas.x)
    front = np.clip(-np.sin(theta), 0, 1)
    back = np.clip(np.sin(theta), 0, 1)
    return front, back, 1 - front - back


def _wall_thickness(canvas: "_Canvas", a: Anatomy, four: dict) -> np.ndarray:
    front, back, side = _sectors(canvas)
    return a.wall * (four["rectus_gain"] * front + four["flank_gain"] * side + back)


def _arm_gap_mm(a: Anatomy) -> float:
    """Air between each arm and the flank (round three, its own stream): 0 is an arm pressed against
    the trunk, which only the network can tell apart (measuring/trunk.py sees arms lying apart)."""
    r = np.random.default_rng([a.seed, 3])
    return 0.0 if r.uniform() < 0.4 else r.uniform(3.0, 16.0)


def _outline_radius(theta: np.ndarray, a: Anatomy, scale_x: float, scale_y: float) -> np.ndarray:
    """Radius of a superellipse with a slightly wobbly outline, flattened at the back."""
    p = a.squareness
    c, s = np.abs(np.cos(theta)), np.abs(np.sin(theta))
    r = 1.0 / ((c / scale_x) ** p + (s / scale_y) ** p) ** (1.0 / p)
    w = 1.0
    for k, (ca, sa) in enumerate(a.wobble, start=2):
        w = w + ca * np.cos(k * theta) + sa * np.sin(k * theta)
    back = np.clip(np.sin(theta), 0, 1) ** 4  # y>0 is posterior: the patient lies on the table
    return r * w * (1 - 0.08 * back)


def _shell(canvas: _Canvas, a: Anatomy, inset: np.ndarray | float, z_scale: float) -> np.ndarray:
    theta = np.arctan2(canvas.y, canvas.x)
    r = np.hypot(canvas.x, canvas.y)
    outline = _outline_radius(theta, a, a.half_width * z_scale, a.half_depth * z_scale)
    return r <= outline - inset


def _sat_thickness(canvas: _Canvas, a: Anatomy) -> np.ndarray:
    front, back, side = _sectors(canvas)
    return a.sat_anterior * front + a.sat_posterior * back + a.sat_lateral * side


def render_slice(a: Anatomy, rows: int, cols: int, spacing: float, z: float = 0.0,
                 rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One axial slice: (HU float32, labels uint8). z in [-1, 1] moves from upper to lower abdomen."""
    rng = rng or np.random.default_rng(a.seed)
    extra = _round_two(a)
    four = _round_four(a)
    muscle_hu = max(a.muscle_hu + extra["muscle_hu_shift"], -12.0)
    cv = _Canvas(rows, cols, spacing, a)
    z_scale = 1.0 + 0.04 * z
    skin = 1.8
    sat = _sat_thickness(cv, a)
    body = _shell(cv, a, 0.0, z_scale)
    inside_skin = _shell(cv, a, skin, z_scale)
    inside_sat = _shell(cv, a, skin + sat, z_scale)
    wall = _wall_thickness(cv, a, four)
    inside_wall = _shell(cv, a, skin + sat + wall, z_scale)

    if a.table:
        table_y = a.half_depth * z_scale * 1.02 + 12
        band = (cv.y > table_y) & (cv.y < table_y + 8) & (np.abs(cv.x) < 230)
        cv.paint(band, 120.0, BG)
        cv.paint((cv.y >= table_y + 8) & (cv.y < table_y + 40) & (np.abs(cv.x) < 220), -300.0, BG)

    cv.paint(body, 30.0, BG)                         # skin
    cv.paint(inside_skin, a.fat_hu, SAT)             # subcutaneous fat
    for i in range(a.septa):                         # fibrous septa in SAT
        ang = rng.uniform(0, 2 * np.pi)
        line = np.abs(np.sin(np.arctan2(cv.y, cv.x) - ang)) * np.hypot(cv.x, cv.y) < 0.6
        cv.paint(line & inside_skin & ~inside_sat, 10.0, BG)
    cv.paint(inside_sat, muscle_hu, MUSCLE)          # abdominal wall muscles
    # a thin fat plane between the oblique muscles, as on real CT
    oblique_gap = inside_sat & ~_shell(cv, a, skin + sat + 0.45 * wall, z_scale) & _shell(cv, a, skin + sat + 0.45 * wall - 1.2, z_scale)
    lateral = np.abs(cv.x) > 0.55 * a.half_width
    cv.paint(oblique_gap & lateral, a.fat_hu, IMAT)
    if extra["wall_layers"]:
        # transversus abdominis: the innermost layer, behind its own fat plane at the sides
        depth = skin + sat + np.maximum(wall - extra["transversus_mm"], 0.55 * wall)
        inner_gap = _shell(cv, a, depth, z_scale) & ~_shell(cv, a, depth + extra["plane_mm"], z_scale)
        cv.paint(inner_gap & inside_sat & (np.abs(cv.x) > 0.45 * a.half_width) & (cv.y < 0.6 * a.half_depth), a.fat_hu, IMAT)
    # linea alba: fat-free fibrous strip in the midline front
    alba = inside_sat & ~inside_wall & (np.abs(cv.x) < 4) & (cv.y < 0)
    cv.paint(alba, 20.0, BG)

    cavity = inside_wall.copy()
    if extra["preperitoneal_mm"]:   # extraperitoneal fat between the wall and the organs, thickest in front
        theta = np.arctan2(cv.y, cv.x)
        prep = extra["preperitoneal_mm"] * (1 + (four["preperitoneal_gain"] - 1) * np.clip(-np.sin(theta) + 0.3, 0, 1))
        cv.paint(inside_wall & ~_shell(cv, a, skin + sat + wall + prep, z_scale), a.fat_hu + 5, VAT)
        cavity = _shell(cv, a, skin + sat + wall + prep, z_scale)
    organ_hu = a.organ_hu + (40 if a.contrast else 0)
    # visceral cavity: bowel/organ soft tissue with fat between, in proportion to vat_fraction
    cv.paint(cavity, organ_hu - 15, BG)
    hw, hd = a.half_width * z_scale, a.half_depth * z_scale
    inner_w = max(hw - a.sat_lateral - a.wall, 40)
    inner_d = max(hd - a.sat_anterior - a.wall, 40)
    fat_field = ndimage.gaussian_filter(rng.normal(size=cv.hu.shape), 6.0 / spacing)
    fat_field = (fat_field - fat_field.mean()) / (fat_field.std() + 1e-9)
    threshold = np.quantile(fat_field[cavity], 1 - a.vat_fraction) if cavity.any() else 0
    cv.paint(cavity & (fat_field > threshold), a.fat_hu + 5, VAT)
    # bowel loops with gas, fluid or oral contrast
    for _ in range(int(6 + 10 * rng.uniform())):
        cx, cy = rng.uniform(-0.7, 0.7) * inner_w, rng.uniform(-0.8, 0.2) * inner_d
        rad = rng.uniform(8, 22)
        loop = cv.ellipse(cx, cy, rad, rad * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi)) & cavity
        cv.paint(loop, 35.0, BG)
        content = rng.choice(["gas", "fluid", "contrast", "feces"], p=[0.35, 0.3, 0.15, 0.2])
        lumen = cv.ellipse(cx, cy, rad - 2.5, (rad - 2.5) * 0.8) & loop
        value = {"gas": -1000.0, "fluid": 10.0, "contrast": rng.uniform(200, 500), "feces": -40.0}[content]
        if content == "feces":
            texture = -250 + 250 * (ndimage.gaussian_filter(rng.uniform(size=cv.hu.shape), 1.0 / spacing) > 0.5)
            cv.paint(lumen, texture, BG)
        else:
            cv.paint(lumen, value, BG)
    # liver (right = image left, x<0) shrinks towards the pelvis, spleen on the left
    liver_size = np.clip(0.65 - 0.5 * (z + 1) / 2, 0.05, 0.7)
    if liver_size > 0.1:
        liver = cv.ellipse(-0.45 * inner_w, -0.05 * inner_d, liver_size * inner_w, 0.75 * inner_d, 0.3) & cavity
        cv.paint(liver, organ_hu, BG)
        spleen = cv.ellipse(0.6 * inner_w, 0.35 * inner_d, 0.22 * inner_w * liver_size / 0.6, 0.3 * inner_d, -0.6) & cavity
        cv.paint(spleen, organ_hu - 5, BG)
    # spine, canal, posterior elements, paraspinal and psoas muscles
    spine_y = hd - a.sat_posterior - a.wall - 62
    vb_r = rng.uniform(16, 22)
    psoas = np.clip((z + 0.6) / 1.2, 0.05, 1.0)
    for side in (-1, 1):
        para = cv.ellipse(side * 30, spine_y + 50, 30, 27, side * 0.25) & body
        cv.paint(para & inside_sat, muscle_hu + 5, MUSCLE)
        ps = cv.ellipse(side * (vb_r + 12 * psoas + 6), spine_y - 3, 8 + 16 * psoas, 9 + 12 * psoas) & cavity
        cv.paint(ps, muscle_hu, MUSCLE)
        if z < 0.2:   # upper psoas and crus: long narrow bands hugging the side of the vertebral body
            crus = extra["crus_mm"]
            band = cv.ellipse(side * (vb_r + 0.6 * crus), spine_y - 4, crus, 18 + 10 * (0.2 - z) / 1.2, side * 0.15)
            cv.paint(band & cavity, muscle_hu, MUSCLE)
        kidney = cv.ellipse(side * (vb_r + 55), spine_y - 5, 28, 45, side * 0.5) & cavity
        if -0.6 < z < 0.7:
            peri = cv.ellipse(side * (vb_r + 55), spine_y - 5, 36, 54, side * 0.5) & cavity
            cv.paint(peri, a.fat_hu + 8, VAT)
            cv.paint(kidney, organ_hu + (120 if a.contrast else 0), BG)
        if z > -0.7:  # quadratus lumborum, behind the kidney beside the transverse process
            ql = extra["ql_mm"]
            cv.paint(cv.ellipse(side * (vb_r + 30 + 0.8 * ql), spine_y + 26, ql, 0.6 * ql, side * 0.35) & inside_sat,
                     muscle_hu + 3, MUSCLE)
    for _ in range(a.imat_spots):
        side = rng.choice([-1, 1])
        spot = cv.ellipse(side * 30 + rng.uniform(-14, 14), spine_y + 50 + rng.uniform(-10, 10), rng.uniform(1.5, 4), rng.uniform(1.5, 4))
        cv.paint(spot & (cv.labels == MUSCLE), a.fat_hu + 10, IMAT)
    if four["marbling"] and extra["muscle_hu_shift"] < 0:   # marbled fatty muscle: streaks of IMAT
        mr = np.random.default_rng([a.seed, 4, int(1000 * (z + 2))])
        muscle_now = ndimage.binary_erosion(cv.labels == MUSCLE, iterations=max(1, int(round(1.5 / spacing))))
        ys, xs = cv.y[muscle_now], cv.x[muscle_now]
        for i in mr.choice(ys.size, size=min(four["marbling"], ys.size), replace=False) if ys.size else []:
            streak = cv.ellipse(xs[i], ys[i], mr.uniform(0.8, 3.0), mr.uniform(0.6, 1.5), mr.uniform(0, np.pi))
            cv.paint(streak & muscle_now, a.fat_hu + 15, IMAT)
    cv.paint(cv.ellipse(0, spine_y, vb_r, vb_r * 0.85) & body, rng.uniform(500, 800), BG)
    cv.paint(cv.ellipse(0, spine_y, vb_r - 2.5, vb_r * 0.85 - 2.5) & body, rng.uniform(150, 280), BG)
    cv.paint(cv.ellipse(0, spine_y + vb_r + 8, 8, 7) & body, 20.0, BG)            # canal
    cv.paint(cv.ellipse(0, spine_y + vb_r + 25, 5, 14) & body, 400.0, BG)         # spinous process
    for side in (-1, 1):
        cv.paint(cv.ellipse(side * 16, spine_y + vb_r + 12, 12, 5, side * 0.5) & body, 450.0, BG)
    # great vessels
    cv.paint(cv.ellipse(-0.25 * vb_r - 6, spine_y - vb_r - 10, 11, 11) & cavity, 200.0 if a.contrast else 40.0, BG)
    cv.paint(cv.ellipse(vb_r * 0.9 + 4, spine_y - vb_r - 10, 10, 8) & cavity, 150.0 if a.contrast else 40.0, BG)
    # ribs in the upper abdomen, embedded in the wall
    if z < 0.1:
        n_ribs = int(rng.integers(5, 10))
        for ang in np.linspace(0.15 * np.pi, 0.85 * np.pi, n_ribs) + rng.normal(0, 0.05, n_ribs):
            ang = ang + np.pi  # front half
            for mirror in (1, -1):
                t = np.array([np.cos(ang) * mirror, np.sin(ang)])
                r = _outline_radius(np.arctan2(t[1], t[0]), a, hw, hd) - skin - _sat_at(a, t) - a.wall * 0.5
                cx, cy = r * t[0], r * t[1]
                rib = cv.ellipse(cx, cy, 6, 4, np.arctan2(t[1], t[0])) & body
                cv.paint(rib, rng.uniform(300, 700), BG)
    if a.arms:   # fat and muscle by HU, but not measured: body composition is the trunk's (measuring/trunk.py)
        gap = _arm_gap_mm(a)
        outside = cv.hu < -500            # an arm pressed against the flank does not cover it
        for side in (-1, 1):
            flank = side * cv.x[(cv.labels > 0) & (np.abs(cv.y + 10) < 20)]   # the trunk's edge on this side
            ax = side * ((flank.max() if flank.size else hw) + 42 + gap)
            for (rx, ry), hu_value in (((42, 48), 30.0), ((40, 46), a.fat_hu), ((30, 36), muscle_hu), ((9, 9), 700.0)):
                cv.paint(cv.ellipse(ax, -10, rx, ry) & outside, hu_value, BG)

    hu = cv.hu
    if a.blur_mm > 0:
        hu = ndimage.gaussian_filter(hu, a.blur_mm / spacing)
    noise = rng.normal(0, a.noise_hu, size=hu.shape)
    noise = ndimage.gaussian_filter(noise, 0.6) * 1.8  # CT noise is correlated between neighbours
    hu = hu + noise
    if a.fov_radius < 1e8:
        r = np.hypot(cv.x + a.body_shift[0], cv.y + a.body_shift[1])
        outside = r > a.fov_radius
        hu[outside] = a.outside_fov_hu
        cv.labels[outside] = BG
    return hu.astype(np.float32), cv.labels


def _sat_at(a: Anatomy, direction: np.ndarray) -> float:
    front = max(-direction[1], 0.0)
    back = max(direction[1], 0.0)
    return a.sat_anterior * front + a.sat_posterior * back + a.sat_lateral * (1 - front - back)


def phantom_volume(seed: int = 0, size: int = 256, slices: int = 12, spacing: float | None = None,
                   slice_thickness: float = 3.0, z_range: tuple[float, float] = (-0.6, 0.6),
                   anatomy: Anatomy | None = None) -> tuple[sitk.Image, sitk.Image]:
    """A phantom CT and its labels as SimpleITK images in LPS (identity direction), HU as int16."""
    rng = np.random.default_rng(seed)
    a = anatomy or random_anatomy(rng)
    if spacing is None:
        spacing = float(rng.uniform(440, 520) / size)
    hus, labs = [], []
    for i, z in enumerate(np.linspace(*z_range, slices)):
        hu, lab = render_slice(a, size, size, spacing, float(z), np.random.default_rng(a.seed + i))
        hus.append(hu)
        labs.append(lab)
    hu_vol = np.clip(np.round(np.stack(hus)), -3024, 3071).astype(np.int16)
    ct = sitk.GetImageFromArray(hu_vol)
    ct.SetSpacing((spacing, spacing, slice_thickness))
    ct.SetOrigin((-(size - 1) / 2 * spacing, -(size - 1) / 2 * spacing, 0.0))
    labels = sitk.GetImageFromArray(np.stack(labs))
    labels.CopyInformation(ct)
    return ct, labels


def phantom_slices(seed: int, count: int, size: int, spacing_range: tuple[float, float] = (0.7, 3.2),
                   ) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Independent training slices [(HU, labels, pixel mm)], each from a new patient and z level.

    `size` is the field of view in model pixels; the native pixel grid varies with the spacing.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        a = random_anatomy(rng)
        spacing = float(rng.uniform(*spacing_range))
        fov = rng.uniform(380, 520)
        n = int(np.clip(round(fov / spacing), 64, 512))
        hu, lab = render_slice(a, n, n, spacing, float(rng.uniform(-1, 1)), np.random.default_rng(a.seed))
        out.append((hu, lab, spacing))
    return out
