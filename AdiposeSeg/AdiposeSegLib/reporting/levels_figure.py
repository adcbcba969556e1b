"""The levels picture: a sagittal cut through the spine and a coronal bone-window slab through the
vertebral bodies, their transverse processes and rib heads (count the ribs down to T12), each with
the level marks, beside the L3 axial slice with its overlay: a reader checks in one look where L3 was
taken."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .overlay import false_colour

MARK_COLOURS = {"high": (255, 230, 0), "medium": (255, 150, 0), "low": (160, 160, 160), "manual": (0, 220, 255)}
HEIGHT = 480
BONE_WINDOW = (-250.0, 1250.0)   # HU shown black .. white in the coronal panel


def levels_figure(canonical: sitk.Image, hu: np.ndarray, labels: np.ndarray, levels: dict):
    """A PIL image, or None when no level has a place to show."""
    from PIL import Image, ImageDraw

    if not levels:
        return None
    sx, sy, sz = canonical.GetSpacing()
    anchor = levels.get("L3") or next(iter(levels.values()))
    centre = anchor.get("centre_lps_mm")
    column = (int(canonical.TransformPhysicalPointToIndex(centre)[0]) if centre else hu.shape[2] // 2)
    column = int(np.clip(column, 0, hu.shape[2] - 1))
    sagittal = false_colour(hu[:, :, column], labels[:, :, column])[::-1]   # superior up, anterior left
    width = max(1, int(round(HEIGHT * (hu.shape[1] * sy) / (hu.shape[0] * sz))))
    left = Image.fromarray(sagittal).resize((width, HEIGHT), Image.BILINEAR)
    draw = ImageDraw.Draw(left)
    row_of = lambda k: (hu.shape[0] - 1 - k + 0.5) * HEIGHT / hu.shape[0]  # noqa: E731
    for name, level in levels.items():
        colour = MARK_COLOURS["manual" if level.get("source") == "manual" else level.get("confidence", "low")]
        y = row_of(level["slice"])
        j = canonical.TransformPhysicalPointToIndex(level["centre_lps_mm"])[1] if level.get("centre_lps_mm") else hu.shape[1] / 2
        x = (j + 0.5) * width / hu.shape[1]
        draw.line([(x - 30, y), (x + 30, y)], fill=colour, width=2)
        draw.text((x + 34, y - 6), name, fill=colour)
    coronal = _coronal_panel(canonical, hu, levels, anchor, row_of)
    k = int(anchor["slice"])
    axial = Image.fromarray(false_colour(hu[k], labels[k]))
    axial_width = max(1, int(round(HEIGHT * (hu.shape[2] * sx) / (hu.shape[1] * sy))))
    axial = axial.resize((axial_width, HEIGHT), Image.BILINEAR)
    name = "L3" if "L3" in levels else next(iter(levels))
    caption = f"{name}: slice {k} ({anchor.get('source')}, {anchor.get('confidence')})"
    if "SMA_cm2" in anchor:
        caption += f"  SMA {anchor['SMA_cm2']:.1f}  SAT {anchor['SAT_cm2']:.1f}  VAT {anchor['VAT_cm2']:.1f} cm2"
    ImageDraw.Draw(axial).text((6, 6), caption, fill=(255, 255, 0))
    sheet = Image.new("RGB", (left.width + coronal.width + axial.width, HEIGHT), (0, 0, 0))
    sheet.paste(left, (0, 0))
    sheet.paste(coronal, (left.width, 0))
    sheet.paste(axial, (left.width + coronal.width, 0))
    return sheet


def _coronal_panel(canonical: sitk.Image, hu: np.ndarray, levels: dict, anchor: dict, row_of):
    """Maximum intensity over a coronal slab from the bodies' centre to 25 mm behind it, bone window."""
    from PIL import Image, ImageDraw

    sx, sy, sz = canonical.GetSpacing()
    centre = anchor.get("centre_lps_mm")
    j = int(canonical.TransformPhysicalPointToIndex(centre)[1]) if centre else hu.shape[1] // 2
    j0, j1 = max(0, j - int(5 / sy)), min(hu.shape[1], j + int(25 / sy) + 1)
    slab = np.asarray(hu[:, j0:j1, :]).max(axis=1)[::-1].astype(np.float32)   # superior up
    grey = (np.clip((slab - BONE_WINDOW[0]) / (BONE_WINDOW[1] - BONE_WINDOW[0]), 0, 1) * 255).astype(np.uint8)
    width = max(1, int(round(HEIGHT * (hu.shape[2] * sx) / (hu.shape[0] * sz))))
    panel = Image.fromarray(grey).convert("RGB").resize((width, HEIGHT), Image.BILINEAR)
    draw = ImageDraw.Draw(panel)
    for name, level in levels.items():
        colour = MARK_COLOURS["manual" if level.get("source") == "manual" else level.get("confidence", "low")]
        i = canonical.TransformPhysicalPointToIndex(level["centre_lps_mm"])[0] if level.get("centre_lps_mm") else hu.shape[2] / 2
        x, y = (i + 0.5) * width / hu.shape[2], row_of(level["slice"])
        draw.line([(x - 45, y), (x - 25, y)], fill=colour, width=2)
        draw.line([(x + 25, y), (x + 45, y)], fill=colour, width=2)
        draw.text((x + 48, y - 6), name, fill=colour)
    return panel
