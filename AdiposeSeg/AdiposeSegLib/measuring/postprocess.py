"""HU gating of the network's classes, the rims it leaves short, removal of tiny islands, and unlabelled visceral fat claimed."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .masks import mask_bounds
from ..tissues import BACKGROUND, IMAT, LABELS, MUSCLE, SAT, VAT, HUWindows

# Connectivity inside a slice only: islands are judged slice by slice, as areas are reported.
IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Smallest box holding every True voxel, one voxel wider in-plane (for dilation); () when empty."""
    bounds = mask_bounds(mask)
    if bounds is None:
        return ()
    pads = [0] + [1] * (mask.ndim - 1)
    return tuple(slice(max(0, lo - pad), min(n, hi + 1 + pad)) for (lo, hi), pad, n in zip(bounds, pads, mask.shape))


# Which version of the labelling rules (gate, islands, claim) made a result. Raise it with every change
# that gives other labels for the same model, options and scan: a batch re-uses an earlier result only
# under the same rules, and the cohort table shows them. 2: IMAT is never removed as an island.
# 3: arms lying apart beside the trunk are not measured (trunk.clear_arms; the include_arms option).
# 4: the rims the network leaves short are taken back within 2.5 mm: muscle-range voxels it called SAT
# join the muscle (muscle_rim), fat-range voxels it called background join SAT (sat_rim). 5: body
# parts are told apart at -400 HU (trunk.SPLIT_HU): an arm lying on the flank is cleared too. 6: the SAT
# rim is no longer cut off at the edge of a batch's window (pipeline.widened): a slice's labels no
# longer depend on the batch size (8 pixels on some slices of the real series).
LABEL_RULES = 6


def gate(classes: np.ndarray, hu: np.ndarray, windows: HUWindows, include_imat: bool = True) -> np.ndarray:
    """Keep SAT / VAT on fat-range voxels and Muscle on muscle-range voxels.

    Fat-range voxels the network put inside muscle are IMAT when they lie within the muscle; where
    such a patch touches SAT or VAT it is partial-volume fat at the fascia and joins that compartment.
    The network decides the compartment; the HU window makes the boundary pixel-exact.
    IMAT is never removed as an island: by its definition every fat-range pixel within the muscle is
    IMAT, a single pixel included (clearing patches under 10 mm² lost two thirds of the phantoms' IMAT).
    """
    fat, muscle = windows.is_fat(hu), windows.is_muscle(hu)
    in_muscle = (classes == MUSCLE) | (classes == IMAT)
    # whole-array selections, not masked assignments (several times slower on a 512x512 batch)
    out = np.where(((classes == SAT) | (classes == VAT)) & fat, classes, np.uint8(BACKGROUND)).astype(np.uint8, copy=False)
    out = np.where(in_muscle & muscle, np.uint8(MUSCLE), out)
    candidates = in_muscle & fat
    box = _bounding_box(candidates)
    if box:
        cand, region = candidates[box], out[box]
        components, count = ndimage.label(cand, structure=IN_PLANE)
        touch_sat = np.bincount(components[_grown(region == SAT)], minlength=count + 1)
        touch_vat = np.bincount(components[_grown(region == VAT)], minlength=count + 1)
        fate = np.full(count + 1, IMAT if include_imat else BACKGROUND, dtype=np.uint8)
        fate[(touch_sat > 0) & (touch_sat >= touch_vat)] = SAT
        fate[(touch_vat > 0) & (touch_vat > touch_sat)] = VAT
        fate[0] = BACKGROUND
        region[cand] = fate[components[cand]]
    return out


# The network draws its boundaries on a 2.5 mm grid and often stops a pixel short of the tissue; the
# rims it leaves are taken back up to this far from the tissue (one pixel of its grid; at least one
# pixel of the scan): see muscle_rim and sat_rim.
RIM_MM = 2.5


def muscle_rim(labels: np.ndarray, classes: np.ndarray, hu: np.ndarray, windows: HUWindows, pixel_mm: float) -> np.ndarray:
    """Muscle-range voxels the network called SAT, next to the muscle, are muscle.

    The gate makes the muscle's boundary with fat pixel-exact only where the network's muscle reaches
    it; where it stops short, the muscle's rim (its fascia and partial-volume edge, -29..150 HU) is
    called SAT, which its HU cannot be, and was left unlabelled. Such voxels join the muscle when they
    are connected to it within RIM_MM. Voxels the network called background (liver, kidney, bowel
    against the muscle) or VAT are never taken: on the held-out real slab 21 of the 25 VAT-called ones
    next to the muscle were tissue TotalSegmentator calls neither.
    """
    take = (labels == BACKGROUND) & (classes == SAT) & windows.is_muscle(hu)
    return _grow_label(labels, MUSCLE, take, pixel_mm)


SAT_RIM_GAS_GAP_PX = 1   # sat_rim never takes a voxel this close to air or gas (the skin's partial volume)


def rim_reach_pixels(pixel_mm: float) -> int:
    """How many pixels (4-connected steps) the rims grow a label beyond the network's tissue."""
    return max(1, int(round(RIM_MM / pixel_mm)))


def cleaning_margin_pixels(pixel_mm: float) -> int:
    """How far beyond the network's tissue the cleaning reads or writes: the rims' growth, plus the
    pixels sat_rim looks further out for air and gas."""
    return rim_reach_pixels(pixel_mm) + SAT_RIM_GAS_GAP_PX


def sat_rim(labels: np.ndarray, classes: np.ndarray, hu: np.ndarray, windows: HUWindows, pixel_mm: float) -> np.ndarray:
    """Fat-range voxels the network called background, next to SAT, are SAT.

    Between the skin and the SAT the network's boundary stops short too, and the SAT's outer rim
    (fat-range by HU, partial volume with the skin included) was left unlabelled: about one pixel
    around the whole body. Such voxels join the SAT when they are connected to it within RIM_MM;
    voxels next to air or gas (< CLAIM_GAS_HU: the skin's partial volume with the air outside) are
    never taken, nor are voxels the gate or the island removal cleared (the network did not call
    them background). Run after claim_visceral_fat, so that a rim between SAT and VAT that touches
    VAT is already visceral.
    """
    take = (labels == BACKGROUND) & (classes == BACKGROUND) & windows.is_fat(hu) & ~_near_gas(hu, SAT_RIM_GAS_GAP_PX)
    return _grow_label(labels, SAT, take, pixel_mm)


def _grow_label(labels: np.ndarray, label: int, allowed: np.ndarray, pixel_mm: float) -> np.ndarray:
    """`label` grown into the `allowed` voxels connected to it (in-plane) within RIM_MM."""
    box = _bounding_box(allowed)
    if not box:
        return labels
    region, allowed = labels[box], allowed[box]
    seed = region == label
    grown = seed
    for _ in range(rim_reach_pixels(pixel_mm)):
        step = _grown(grown) & allowed
        if not (step & ~grown).any():
            break
        grown = grown | step
    out = labels.copy()
    out[box][grown & ~seed] = label
    return out


def _grown(mask: np.ndarray) -> np.ndarray:
    """The mask grown by one pixel to its 4 in-plane neighbours: binary_dilation with IN_PLANE, as
    four shifted ORs (several times faster on a whole volume)."""
    out = mask.copy()
    out[:, 1:, :] |= mask[:, :-1, :]
    out[:, :-1, :] |= mask[:, 1:, :]
    out[:, :, 1:] |= mask[:, :, :-1]
    out[:, :, :-1] |= mask[:, :, 1:]
    return out


def _near_gas(hu: np.ndarray, pixels: int) -> np.ndarray:
    """Gas and air (< CLAIM_GAS_HU) and the voxels within `pixels` of them in-plane: fat-range HU
    there is partial volume with the gas (bowel gas, the air outside the skin), not fat."""
    near = hu < CLAIM_GAS_HU
    for _ in range(pixels):
        near = _grown(near)
    return near


def remove_islands(labels: np.ndarray, pixel_area_mm2: float, min_area_mm2: float,
                   which: tuple[int, ...] = LABELS) -> np.ndarray:
    """Clear in-plane connected components smaller than min_area_mm2, for each label in `which`.
    (The pipeline passes the window that can hold tissue, so no crop here.)"""
    min_pixels = int(np.ceil(min_area_mm2 / pixel_area_mm2)) if min_area_mm2 > 0 else 0
    if min_pixels <= 1:
        return labels
    out = labels.copy()
    for label in which:
        mask = labels == label
        if not mask.any():
            continue
        components, count = ndimage.label(mask, structure=IN_PLANE)
        sizes = np.bincount(components[mask], minlength=count + 1)   # over the label's own pixels only: faster
        small = sizes < min_pixels
        small[0] = False
        if small.any():
            out[np.take(small, components)] = BACKGROUND   # np.take: half the time of small[components]
    return out


# Unlabelled fat-range patches join VAT when they touch it (claim_visceral_fat): only patches up to
# this size, and clear of gas and air by this many pixels (partial volume at bowel gas is not fat).
CLAIM_MAX_PATCH_MM2 = 200.0
CLAIM_GAS_HU = -250.0
CLAIM_GAS_GAP_PX = 2


def claim_visceral_fat(labels: np.ndarray, hu: np.ndarray, windows: HUWindows, pixel_area_mm2: float,
                       network_background: np.ndarray | None = None) -> np.ndarray:
    """Fat-range voxels the network left unlabelled, next to VAT, are VAT.

    By definition every fat-range voxel inside the abdominal wall is visceral; the network leaves
    thin rims of it unlabelled (around kidneys, vessels and bowel, beside psoas and vertebra). The
    unlabelled fat-range voxels more than CLAIM_GAS_GAP_PX pixels from gas and air (< CLAIM_GAS_HU)
    form in-plane patches; a patch that touches VAT and not SAT and is at most CLAIM_MAX_PATCH_MM2
    joins VAT; the rest stays unlabelled (the skin's rim against the air, fat inside the spinal
    canal, patches bridging SAT and VAT). Checked on the held-out real slab by
    benchmarks/compartment_rules_check.py. network_background: the voxels the network itself called
    background (the pipeline passes it, so that fat the gate or the island removal cleared - IMAT
    when it is not wanted, SAT islands - is never made VAT); default: every unlabelled voxel.
    """
    take = (labels == BACKGROUND) & windows.is_fat(hu)
    if network_background is not None:
        take &= network_background
    take &= ~_near_gas(hu, CLAIM_GAS_GAP_PX)
    box = _bounding_box(take)
    if not box:
        return labels
    region, patch_mask = labels[box], take[box]
    patches, count = ndimage.label(patch_mask, structure=IN_PLANE)
    touch_vat = np.bincount(patches[_grown(region == VAT)], minlength=count + 1)
    touch_sat = np.bincount(patches[_grown(region == SAT)], minlength=count + 1)
    size = np.bincount(patches[patch_mask], minlength=count + 1)
    join = (touch_vat > 0) & (touch_sat == 0) & (size * pixel_area_mm2 <= CLAIM_MAX_PATCH_MM2)
    join[0] = False
    out = labels.copy()
    out[box][np.take(join, patches)] = VAT
    return out
