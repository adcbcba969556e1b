"""Generated spines for testing the vertebral counting where real data runs out: vertebral bodies
with cortical shells and endplates, discs, canal and posterior arch, lumbar transverse processes,
ribs on the thoracic vertebrae (falling as they run out), a sacrum joined to iliac wings whose crests
rise laterally, lordosis, and any field of view. Returns a canonical (LPS) CT and the true slice
range of each vertebral body.
"""
from __future__ import annotations

ILIAC_CREST_TOP_MM = 123.0   # the crests' highest point (95 mm + 0.35 x (135 - 57) mm)

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage


@dataclass
class Spine:
    thoracic: int = 3               # thoracic vertebrae below the top of the model (T10..T12)
    lumbar: int = 5
    rib_pairs_on: tuple = ("T10", "T11", "T12")   # which thoracic vertebrae carry ribs
    lordosis_mm: float = 12.0       # forward bulge of the lumbar column
    scoliosis_mm: float = 0.0       # sideways bulge of the lumbar column (a single curve)
    collapsed: tuple = ()           # vertebrae at half their height
    fused_below: tuple = ()         # vertebrae fused to the one below (the disc under them bone)
    short_ribs: tuple = ()          # vertebrae whose ribs end 60 mm from the midline (a short floating 12th rib)
    trabecular_hu: float = 170.0
    disc_hu: float = 85.0
    spacing: tuple = (1.5, 1.5, 2.5)   # x, y, z mm
    rows: int = 220
    cols: int = 240
    noise_hu: float = 15.0
    seed: int = 0
    names: list = field(default_factory=list)


def _names(spine: Spine) -> list[str]:
    thoracic = [f"T{12 - i}" for i in range(spine.thoracic)][::-1]   # e.g. T10, T11, T12
    lumbar = [f"L{i + 1}" for i in range(spine.lumbar)]
    return thoracic + lumbar     # top -> bottom


def generate(spine: Spine, fov: tuple[str, str] | None = None):
    """The CT (canonical LPS, k from the feet up) and {name: (first_k, last_k)} of each body.
    fov=(top, bottom) cuts the image from the middle of vertebra `top` to the middle of `bottom`
    ("S" for the sacrum's bottom)."""
    rng = np.random.default_rng(spine.seed)
    sx, sy, slice_mm = spine.spacing
    sub = max(1, int(round(slice_mm / 0.8)))   # drawn on thin sub-slices, averaged: a slice integrates its thickness
    sz = slice_mm / sub
    names = _names(spine)
    heights = {n: (22.0 if n.startswith("T") else 28.0) + rng.uniform(-1.5, 1.5) for n in names}
    discs = {n: (6.0 if n.startswith("T") else 10.0) + rng.uniform(-1.0, 1.0) for n in names}
    for n in spine.collapsed:
        heights[n] *= 0.5          # a wedge or crush fracture: half its height
    # z (mm) from the bottom: sacrum 90 mm, then L5 upwards
    sacrum_mm = 90.0
    z = sacrum_mm
    bodies = {}
    for name in names[::-1]:
        z += discs[name]
        bodies[name] = (z, z + heights[name])
        z += heights[name]
    top_mm = z + 20.0
    nz = int(top_mm / sz)
    kz = (np.arange(nz) + 0.5) * sz
    hu = np.full((nz, spine.rows, spine.cols), -1000.0, dtype=np.float32)
    yy, xx = np.mgrid[0:spine.rows, 0:spine.cols]
    y_mm, x_mm = (yy - spine.rows / 2) * sy, (xx - spine.cols / 2) * sx
    lumbar_mid = (bodies[names[-1]][0] + bodies[names[-spine.lumbar]][1]) / 2.0 if spine.lumbar else top_mm / 2
    span = max(bodies[names[-spine.lumbar]][1] - bodies[names[-1]][0], 1.0) if spine.lumbar else 1.0

    def body_y(zmm):  # the body centre moves forward (negative y) in the lordotic lumbar region
        return 30.0 - spine.lordosis_mm * np.cos(np.clip((zmm - lumbar_mid) / span * np.pi, -np.pi / 2, np.pi / 2))

    def lateral(zmm):  # scoliosis: the column swings to one side and back over the lumbar spine
        return spine.scoliosis_mm * np.sin(np.clip((zmm - lumbar_mid) / span * np.pi + np.pi / 2, 0.0, np.pi))

    body = ((x_mm / 150.0) ** 2 + (y_mm / 115.0) ** 2) <= 1.0
    for k in range(nz):
        zmm = kz[k]
        sl = hu[k]
        sl[body] = 40.0
        sl[body & (((x_mm / 150.0) ** 2 + (y_mm / 115.0) ** 2) > 0.8)] = -100.0   # subcutaneous fat
        cy = body_y(zmm)
        xs = x_mm - lateral(zmm)     # the spine's own left-right position (scoliosis)
        vertebra = next((n for n, (a, b) in bodies.items() if a <= zmm <= b), None)
        disc = next((n for n, (a, b) in bodies.items() if a - discs[n] <= zmm < a), None)
        ell = ((xs / 22.0) ** 2 + ((y_mm - cy) / 16.0) ** 2)
        if vertebra:
            a, b = bodies[vertebra]
            endplate = min(zmm - a, b - zmm) < 1.5
            sl[ell <= 1.0] = 350.0 if endplate else spine.trabecular_hu
            sl[(ell <= 1.0) & (ell > 0.8)] = 350.0
        elif disc:
            sl[ell <= 1.0] = spine.trabecular_hu if disc in spine.fused_below else spine.disc_hu
        if zmm >= sacrum_mm - 5 or vertebra or disc:
            canal_y = cy + 16.0 + 10.0
            canal = (xs ** 2 + (y_mm - canal_y) ** 2) <= 9.0 ** 2
            arch = ((xs ** 2 + (y_mm - canal_y) ** 2) <= 14.0 ** 2) & ~canal & (y_mm > cy + 12)
            if vertebra or zmm < sacrum_mm:
                sl[arch] = 300.0
                if vertebra and zmm - bodies[vertebra][0] < 0.7 * heights[vertebra]:
                    sl[(np.abs(xs) < 4) & (y_mm > canal_y) & (y_mm < canal_y + 45)] = 300.0   # spinous process
            sl[canal] = 10.0
        if vertebra and vertebra.startswith("L"):
            a, b = bodies[vertebra]
            if abs(zmm - (a + b) / 2) < 5.0:
                reach = 52.0 if vertebra == "L3" else 45.0
                sl[(np.abs(xs) > 15) & (np.abs(xs) < reach) & (np.abs(y_mm - (cy + 22)) < 4)] = 300.0
        if zmm < sacrum_mm:   # sacrum: fused bodies curving back, alae to 55 mm, the ilia beside them
            depth = (sacrum_mm - zmm) / sacrum_mm
            sy_c = cy + 45 * depth ** 1.5
            alae = ((xs / (55.0 - 25 * depth)) ** 2 + ((y_mm - sy_c - 8) / 14.0) ** 2) <= 1.0
            sl[alae] = 190.0
            fused = (xs / 22.0) ** 2 + ((y_mm - sy_c) / 16.0) ** 2
            sl[fused <= 1.0] = spine.trabecular_hu + 20
            sl[(fused <= 1.0) & (fused > 0.8)] = 350.0
            sl[(xs ** 2 + (y_mm - sy_c - 26) ** 2) <= 8.0 ** 2] = 10.0   # sacral canal
        if zmm < ILIAC_CREST_TOP_MM:   # the iliac wings, beside the sacrum and up beside L5 to their crests
            depth = max(0.0, (sacrum_mm - zmm) / sacrum_mm)
            sy_c = cy + 45 * depth ** 1.5
            for side in (-1, 1):
                crest = 95.0 + 0.35 * (np.abs(xs) - 57.0)   # the crest rises laterally, to about the L4-L5 disc
                edge = 55.0 - 25 * depth + 2.0
                ilium = ((side * xs) > edge) & ((side * xs) < 135) & (np.abs(y_mm - (sy_c + 8 - 0.3 * (np.abs(xs) - edge))) < 6) \
                    & (zmm < crest)   # the sacroiliac joint: a 2 mm gap beside the ala
                sl[ilium] = 250.0
    # ribs: from the head beside the body, out and round, falling 30 mm
    for name in spine.rib_pairs_on:
        if name not in bodies:
            continue
        a, b = bodies[name]
        head_z = b - 5.0
        for t in np.linspace(0.0, 0.2 if name in spine.short_ribs else 1.0, 400):   # a short rib: 60 mm
            angle = t * 1.9
            for side in (-1, 1):
                px = side * (25.0 + 95.0 * np.sin(angle)) + lateral(head_z - 30.0 * t)
                py = body_y(head_z) + 25.0 - 80.0 * (1 - np.cos(angle)) * 0.8
                pz = head_z - 30.0 * t
                k0 = int(pz / sz)
                j0, i0 = int(py / sy + spine.rows / 2), int(px / sx + spine.cols / 2)
                r = 4.0
                for dk in range(-int(r / sz) - 1, int(r / sz) + 2):
                    for dj in range(-int(r / sy) - 1, int(r / sy) + 2):
                        for di in range(-int(r / sx) - 1, int(r / sx) + 2):
                            if (dk * sz) ** 2 + (dj * sy) ** 2 + (di * sx) ** 2 <= r * r:
                                k, j, i = k0 + dk, j0 + dj, i0 + di
                                if 0 <= k < nz and 0 <= j < spine.rows and 0 <= i < spine.cols:
                                    hu[k, j, i] = 280.0
    nz = nz // sub
    hu = hu[:nz * sub].reshape(nz, sub, spine.rows, spine.cols).mean(axis=1)
    sz = slice_mm
    hu = ndimage.gaussian_filter(hu, (0.6, 0.6, 0.6))
    hu += rng.normal(0.0, spine.noise_hu, hu.shape).astype(np.float32)
    truth = {n: (int(np.ceil(a / sz - 0.5)), int(np.floor(b / sz - 0.5))) for n, (a, b) in bodies.items()}
    lo, hi = 0, nz
    if fov:
        top, bottom = fov
        if top in bodies:
            hi = int(np.mean(bodies[top]) / sz)
        if bottom in bodies:
            lo = int(np.mean(bodies[bottom]) / sz)
    hu = hu[lo:hi]
    truth = {n: (a - lo, b - lo) for n, (a, b) in truth.items() if lo <= (a + b) / 2 < hi}
    image = sitk.GetImageFromArray(np.round(hu).astype(np.int16))
    image.SetSpacing(spine.spacing)
    image.SetOrigin((0.0, 0.0, lo * sz))
    return image, truth
