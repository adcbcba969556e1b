"""Body composition is measured on the trunk: arms lying beside it lose their labels.

At L3 the clinical skeletal muscle area is the trunk's muscles (psoas, quadratus lumborum, erector
spinae, the wall muscles), and SAT is the trunk's fat. In a scan taken with the arms down, each arm
holds 25-55 cm² of muscle and fat per slice (the 512x512 DICOM example); counted, they would raise
the muscle area by a quarter to a half. An arm that lies apart from the trunk, with air between
them, is a body part of its own in the slice, and that is what is cleared. Parts are told apart at
SPLIT_HU, not at the body's -500 HU: an arm lying on the flank touches it through the skins'
partial volume (-500..-400 HU on the 512x512 DICOM example, where the network had drawn SAT on the
arm's underside), and at -400 it is a part of its own; the arm's own rim, below -400, is cleared with
it. An arm pressed into the flank with no such seam stays one part with the trunk: there only the
network (taught that arms are background, model 0.3.0 on) leaves it unlabelled.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..tissues import BACKGROUND

SPLIT_HU = -400.0       # body parts are told apart here: two skins touching meet at -500..-400 HU
RIM_PX = 2              # an arm's rim (the skin's partial volume below SPLIT_HU) cleared with it
LIMB_MAX_SHARE = 0.5    # a body part at least this share of the trunk's area is kept (both thighs)
BESIDE = 0.8            # an arm's centre lies beyond this share of the trunk's half-width from its centre
ARM_MIN_MM2 = 1000.0    # a body part beside the trunk this large is an arm in view (not a cable or a fold)


def parts_beside(hu_slice: np.ndarray):
    """The slice's body parts (labelled image), their sizes and bounding boxes, and the parts lying
    apart beside the trunk under LIMB_MAX_SHARE of its size (see `clear_arms`)."""
    parts, count = ndimage.label(hu_slice > SPLIT_HU)
    if count < 2:
        return parts, None, None, []
    sizes = np.bincount(parts.ravel(), minlength=count + 1)
    sizes[0] = 0
    trunk = int(np.argmax(sizes))
    boxes = ndimage.find_objects(parts)    # bounding boxes: one pass, no per-part masks of the slice
    columns = boxes[trunk - 1][1]
    centre, half_width = (columns.start + columns.stop - 1) / 2, (columns.stop - 1 - columns.start) / 2
    beside = [part for part in np.flatnonzero((sizes > 0) & (sizes < LIMB_MAX_SHARE * sizes[trunk]))
              if abs((boxes[part - 1][1].start + boxes[part - 1][1].stop - 1) / 2 - centre) > BESIDE * half_width]
    return parts, sizes, boxes, beside


def clear_arms(labels: np.ndarray, hu: np.ndarray) -> np.ndarray:
    """Labels (slices, rows, cols; canonical, columns run right to left) with every labelled body part
    that is separate from the trunk (the slice's largest body part) in the plane, smaller than
    LIMB_MAX_SHARE of it and lying beside it (the middle of its columns beyond BESIDE of the trunk's
    half-width from the trunk's middle), cleared. A part in front of the trunk (a pannus) or as large
    as it (the other thigh) keeps its labels. Returns `labels` itself when nothing changes."""
    out = labels
    for k in range(labels.shape[0]):
        parts, _, boxes, beside = parts_beside(hu[k])
        for part in beside:
            box = tuple(slice(max(0, b.start - RIM_PX), b.stop + RIM_PX) for b in boxes[part - 1])
            mine = ndimage.binary_dilation(parts[box] == part, iterations=RIM_PX) & (parts[box] == 0) | (parts[box] == part)
            if not labels[k][box][mine].any():
                continue                         # the table's end, clothing, an arm left unlabelled
            if out is labels:
                out = labels.copy()
            out[k][box][mine] = BACKGROUND
    return out


def arms_in_view(hu: np.ndarray, pixel_area_mm2: float, every: int = 1) -> tuple[int, int]:
    """(slices with an arm beside the trunk, slices looked at): every `every`-th slice of the whole
    canonical CT, an arm being a body part of at least ARM_MIN_MM2 lying apart beside the trunk."""
    looked = range(0, hu.shape[0], max(1, every))
    found = 0
    for k in looked:
        _, sizes, _, beside = parts_beside(hu[k])
        found += any(sizes[part] * pixel_area_mm2 >= ARM_MIN_MM2 for part in beside)
    return found, len(looked)
