"""Is the image a patient, lying the way its header says? The body's own anatomy decides.

A header that disagrees with its pixels (an anterior-posterior flip, a prone patient stored with a
supine header, a 90-degree rotation) puts the spine where the abdominal wall should be: the network
then labels the wrong side as SAT and the numbers change by tens of percent without any error.
In LPS (the engine's canonical orientation) the spine of any patient, supine or prone, lies
posterior to the body's centre, near the midline. A water cylinder, a QA phantom or noise has no
spine and no CT texture. Each check refuses with the cause; the flags below only inform.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import ImageShapeError, NotCTError
from .hu_checks import largest_body
from .orientation import axial_axis, to_canonical

BONE_HU = 250.0
MIN_BONE_CM2 = 3.0          # less bone than this in every slice looked at: no skeleton
MIDLINE_CM2 = 2.0           # a slice says where the spine is only when its midline holds this much bone ...
MIDLINE_SHARE = 0.35        # ... and this share of the slice's bone: lumbar and lower thoracic levels, where
                            # the vertebra dominates; not the pelvis (the pubic symphysis lies in front) or hips
MIDLINE_BAND = 0.1          # bone within this fraction of the body's width of its centre: the spine's column
SPINE_ANTERIOR = -0.05      # median midline-bone offset (fraction of body depth) below this: the image is flipped
ROTATED_ASPECT = 1.1        # body deeper (anterior-posterior) than wide, spine not posterior: rotated 90 degrees
MIN_TEXTURE = 0.5           # neighbouring voxels of a CT correlate (about 0.9); noise does not
MAX_BONE_FRACTION = 0.4     # bone is a few percent of a body's cross-section, never most of it
SAMPLE_SLICES = 12
METAL_HU = 2500.0           # above dense cortical bone (about 1900 HU): metal
METAL_MIN_VOXELS = 20
ADULT_WIDTH_MM = 260.0      # a labelled body narrower than this (children, small adults) is outside what the model was validated on


def sampled_canonical(image: sitk.Image, count: int = SAMPLE_SLICES) -> tuple[np.ndarray, tuple]:
    """Up to `count` axial slices, evenly spread, in canonical LPS order (k, rows A->P, cols R->L)."""
    axis, _ = axial_axis(image)
    n = image.GetSize()[axis]
    step = max(1, n // count)
    index = [slice(None)] * 3
    index[axis] = slice(None, None, step)
    sub = to_canonical(image[tuple(index)])
    return sitk.GetArrayFromImage(sub).astype(np.float32), sub.GetSpacing()


def _slice_facts(s: np.ndarray, spacing) -> dict | None:
    body = largest_body(s)
    if body is None:
        return None
    body = ndimage.binary_fill_holes(body)
    rows, cols = np.nonzero(body)
    if rows.size < 100:
        return None
    pixel_cm2 = spacing[0] * spacing[1] / 100.0
    depth, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    inner = body[:, :-1] & body[:, 1:]
    a, b = s[:, :-1][inner], s[:, 1:][inner]
    texture = float(np.corrcoef(a, b)[0, 1]) if a.size > 10 and a.std() > 0 and b.std() > 0 else 1.0
    bone = (s > BONE_HU) & body
    facts = {"aspect": float(depth * spacing[1] / (width * spacing[0])), "texture": texture,
             "bone_fraction": float(bone.sum() / rows.size), "bone_cm2": float(bone.sum() * pixel_cm2), "spine_offset": None}
    if facts["bone_cm2"] < MIN_BONE_CM2:
        return facts
    rb, cb = np.nonzero(bone)
    band = np.abs(cb - cols.mean()) < MIDLINE_BAND * width
    if band.sum() * pixel_cm2 >= MIDLINE_CM2 and band.sum() >= MIDLINE_SHARE * rb.size:
        facts["spine_offset"] = float((rb[band].mean() - rows.mean()) / depth)
    return facts


def check_patient_anatomy(image: sitk.Image, source: str = "image") -> None:
    """Refuse images that are not a body (no texture, no bone, noise) or whose pixels lie otherwise than
    the header says (spine anterior: flipped; body deeper than wide with the spine not posterior: rotated)."""
    hu, spacing = sampled_canonical(image)
    facts = [f for f in (_slice_facts(hu[k], spacing) for k in range(hu.shape[0])) if f]
    if not facts:
        return
    texture = float(np.median([f["texture"] for f in facts]))
    if texture < MIN_TEXTURE:
        raise NotCTError(f"{source}: neighbouring voxels are unrelated (correlation {texture:.2f}; a CT's is about 0.9): "
                         "this looks like noise, not an image of a body")
    bone_fraction = float(np.median([f["bone_fraction"] for f in facts]))
    if bone_fraction > MAX_BONE_FRACTION:
        raise NotCTError(f"{source}: {bone_fraction:.0%} of the 'body' is denser than bone ({BONE_HU:.0f} HU); "
                         "no patient's cross-section is mostly bone. Not a CT of a body")
    if max(f.get("bone_cm2", 0.0) for f in facts) < MIN_BONE_CM2:
        raise NotCTError(f"{source}: no bone (spine, pelvis, ribs) in any of {len(facts)} slices looked at: a phantom "
                         "(water cylinder, QA fat ring) or not a body. AdiposeSeg measures patients")
    offsets = [f["spine_offset"] for f in facts if f["spine_offset"] is not None]
    # the same test on the slices turned by 90 degrees: a spine that lies to one side shows there
    turned = [f["spine_offset"] for f in (_slice_facts(np.ascontiguousarray(hu[k].T), spacing[::-1][1:] + (spacing[2],))
                                          for k in range(hu.shape[0])) if f and f["spine_offset"] is not None]
    aspect = float(np.median([f["aspect"] for f in facts]))
    if len(turned) > len(offsets) and abs(float(np.median(turned))) > 2 * abs(SPINE_ANTERIOR) and aspect > ROTATED_ASPECT:
        raise NotCTError(f"{source}: the body is {aspect:.2f} times deeper than wide and the spine lies to one side of its "
                         "centre: the pixels are rotated by 90 degrees against the orientation header (a decubitus "
                         "scan stored as supine, or a wrong transform). Fix the header or re-export the series")
    if not offsets:
        return   # no lumbar or thoracic vertebra in view: which way is up cannot be told from the spine
    offset = float(np.median(offsets))
    if offset < SPINE_ANTERIOR:
        raise NotCTError(f"{source}: the spine lies in front of the body's centre (offset {offset:+.2f} of the body's "
                         "depth; posterior is positive). The pixels are flipped front to back against the orientation "
                         "header (a prone scan stored as supine, or a wrong ImageOrientationPatient / NIfTI "
                         "transform); SAT and VAT would be swapped in places. Fix the header or re-export the series")


def check_slices_consistent(values: np.ndarray, slice_axis: int, source: str = "image") -> None:
    """One slice unlike the rest: blank (a single value: a lost slice written as air) or without air
    (its rescale intercept missing, values +1024) is refused, naming it, rather than measured."""
    n = values.shape[slice_axis]
    if n < 3:
        return
    others = tuple(a for a in range(3) if a != slice_axis)
    lo, hi = values.min(axis=others), values.max(axis=others)
    blank = np.flatnonzero(lo == hi)
    if blank.size and blank.size < n:
        raise ImageShapeError(f"{source}: slice {int(blank[0])} (of {n}) holds a single value ({float(lo[blank[0]]):g}) "
                              f"{'and ' + str(blank.size - 1) + ' more ' if blank.size > 1 else ''}while the others show "
                              "a body: a slice was lost or blanked in export. Copy the complete series")
    has_air = lo < -800.0
    if has_air.mean() >= 0.5 and not has_air.all():
        k = int(np.flatnonzero(~has_air)[0])
        raise NotCTError(f"{source}: slice {k} (of {n}) has no air (lowest value {float(lo[k]):g}) while "
                         f"{int(has_air.sum())} others do: its values look offset (rescale intercept missing on that "
                         "slice?). Not measured; re-export the series")


CHUNK_SLICES = 32


def _by_blocks(volume: np.ndarray, per_slice):
    """per_slice(block) over CHUNK_SLICES slices at a time, joined along the slices: a mask of the whole
    volume would be another copy of it (issue 27 C)."""
    return np.concatenate([per_slice(volume[k:k + CHUNK_SLICES]) for k in range(0, volume.shape[0], CHUNK_SLICES)])


def anatomy_flags(hu: np.ndarray, labels: np.ndarray, spacing, slice_indices: np.ndarray) -> tuple[dict, list[str]]:
    """Quality flags a reader of the numbers should know, from the analysed canonical slices: metal
    (streak artefacts), a body narrower than the adults the model was validated on."""
    flags: dict = {}
    notes: list[str] = []
    metal = np.flatnonzero(_by_blocks(hu, lambda block: (block >= METAL_HU).sum(axis=(1, 2))) >= METAL_MIN_VOXELS)
    if metal.size:
        first, last = int(slice_indices[metal[0]]), int(slice_indices[metal[-1]])
        flags["metal_artifact"] = {"slices": int(metal.size), "of": int(hu.shape[0]), "first_slice": first, "last_slice": last}
        notes.append(f"metal (>= {METAL_HU:.0f} HU) on {metal.size} of {hu.shape[0]} slices ({first}..{last}): streak "
                     "artefacts shift HU there, so fat and muscle areas on those slices are less reliable; check the overlay")
    columns = _by_blocks(labels, lambda block: (block > 0).any(axis=1))   # (slices, cols): body tissue in that column
    has = columns.any(axis=1)
    if has.any():
        left = columns.argmax(axis=1)
        right = columns.shape[1] - 1 - columns[:, ::-1].argmax(axis=1)
        width = float(np.median((right - left + 1)[has]) * spacing[0])
        if width < ADULT_WIDTH_MM:
            flags["small_body_mm"] = round(width, 1)
            notes.append(f"the body is {width:.0f} mm wide, narrower than the adult abdomens the model was validated on "
                         f"(>= {ADULT_WIDTH_MM:.0f} mm): treat SAT/VAT as unvalidated (children, very small adults)")
    return flags, notes
