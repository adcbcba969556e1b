"""The one-page patient report (PNG and PDF): who and what was measured, the levels picture (where L3
was taken, with its overlay), the L3 measures and indices with units, the flags the cut-offs decide,
the quality notes and the model that made it. Drawn from a summary (summary.json's fields), so the
command line and the Slicer/browser front ends (which build the same fields from the scene) give the
same page."""
from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path

from .safe_write import atomic_path

WIDTH, MARGIN = 1400, 24
BACKGROUND, INK, DIM, WARN = (255, 255, 255), (20, 20, 20), (90, 90, 90), (170, 60, 0)
PDF_DPI = 150    # 1400 px wide: a page 23.7 cm wide

# (summary key, shown name, unit, format)
L3_ROWS = (("SMA_cm2", "Skeletal muscle area (SMA)", "cm2", "{:.1f}"),
           ("SMD_HU", "Skeletal muscle density (SMD)", "HU", "{:.1f}"),
           ("IMAT_cm2", "Intermuscular fat (IMAT)", "cm2", "{:.1f}"),
           ("SAT_cm2", "Subcutaneous fat (SAT)", "cm2", "{:.1f}"),
           ("VAT_cm2", "Visceral fat (VAT)", "cm2", "{:.1f}"),
           ("VAT_SAT_ratio", "VAT / SAT", "", "{:.2f}"),
           ("SMI_cm2_m2", "Skeletal muscle index (SMI)", "cm2/m2", "{:.1f}"),
           ("SATI_cm2_m2", "SAT index", "cm2/m2", "{:.1f}"),
           ("VATI_cm2_m2", "VAT index", "cm2/m2", "{:.1f}"),
           ("BMI_kg_m2", "BMI", "kg/m2", "{:.1f}"))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)     # Pillow >= 10.1 with FreeType
    except (TypeError, OSError):                     # an older Pillow (e.g. in an old Slicer): its bitmap font
        return ImageFont.load_default()


def _value(level: dict, key: str, fmt: str) -> str:
    value = level.get(key)
    if isinstance(value, (int, float)) and not math.isnan(value):
        return fmt.format(value)
    return "-"


def _l3_lines(levels: dict) -> tuple[str, list[tuple[str, str]]]:
    l3 = levels.get("L3")
    if not l3:
        return "L3 was not found on the bone: set it by hand to get the L3 measures.", []
    how = "set by hand" if l3.get("source") == "manual" else f"found automatically ({l3.get('confidence')} confidence, " \
                                                              f"from {l3.get('anchor', 'the spine')})"
    head = f"L3: slice {l3.get('slice')} (z {l3.get('z_mm', float('nan')):.1f} mm), {how}"
    if "SMA_cm2" not in l3:
        return head + ". Not measured: " + str(l3.get("not_measured", "check the level")), []
    return head, [(f"{name}{' (' + unit + ')' if unit else ''}", _value(l3, key, fmt)) for key, name, unit, fmt in L3_ROWS]


def _flag_lines(levels: dict, patient: dict) -> list[str]:
    l3 = levels.get("L3") or {}
    flags = l3.get("flags") or {}
    lines = [f"{name.replace('_', ' ')}: {'yes' if value else 'no'}  ({(l3.get('flag_sources') or {}).get(name, '')})"
             for name, value in flags.items()]
    missing = [what for what, key in (("height", "height_m"), ("weight", "weight_kg"), ("sex", "sex"))
               if not patient.get(key)]
    if "SMA_cm2" in l3 and missing:
        lines.append(f"not decided without the patient's {', '.join(missing)}: sarcopenia needs height, weight and sex; "
                     "myosteatosis needs height and weight")
    return lines


def _patient_line(patient: dict) -> str:
    parts = []
    if patient.get("height_m"):
        parts.append(f"height {float(patient['height_m']):.2f} m")
    if patient.get("weight_kg"):
        parts.append(f"weight {float(patient['weight_kg']):.1f} kg")
    if patient.get("sex"):
        parts.append(f"sex {patient['sex']}")
    return "Patient: " + (", ".join(parts) if parts else "no height, weight or sex given")


def report_image(summary: dict, levels_picture=None):
    """The report page as a PIL image. `summary` holds summary.json's fields (case_id, source, date,
    model, device, patient, levels with their indices, totals, notes); `levels_picture` is the levels
    figure (a PIL image) or None when no level was found."""
    from PIL import Image, ImageDraw

    from .. import __version__

    page = Image.new("RGB", (WIDTH, 3000), BACKGROUND)
    draw = ImageDraw.Draw(page)
    title, body, small = _font(30), _font(19), _font(15)
    y = MARGIN
    draw.text((MARGIN, y), f"AdiposeSeg body composition: {summary.get('case_id', '')}", font=title, fill=INK)
    y += 42
    model = summary.get("model") or {}
    for line in (f"Source: {summary.get('source', '')}",
                 f"Measured {summary.get('date', '')} with AdiposeSeg {__version__}, model {model.get('name', '?')} "
                 f"{model.get('version', '?')} ({model.get('network', '') or summary.get('device', '')})"):
        for part in textwrap.wrap(line, 150) or [""]:
            draw.text((MARGIN, y), part, font=small, fill=DIM)
            y += 20
    y += 8
    if levels_picture is not None:
        scale = min(1.0, (WIDTH - 2 * MARGIN) / levels_picture.width, 560 / levels_picture.height)
        shown = levels_picture.resize((max(1, int(levels_picture.width * scale)), max(1, int(levels_picture.height * scale))),
                                      Image.BILINEAR)
        page.paste(shown, (MARGIN, y))
        page.info["levels_box"] = (MARGIN, y, shown.width, shown.height)
        y += shown.height + 6
        draw.text((MARGIN, y), "Sagittal cut and coronal bone slab with the levels found (yellow: high confidence, orange: "
                  "medium, gray: low, cyan: set by hand), and the L3 slice with SAT red, VAT green, muscle violet, "
                  "IMAT yellow.", font=small, fill=DIM)
        y += 30
    levels = summary.get("levels") or {}
    patient = summary.get("patient") or {}
    head, rows = _l3_lines(levels)
    draw.text((MARGIN, y), head, font=body, fill=INK)
    y += 30
    top = y
    for name, value in rows:
        draw.text((MARGIN + 10, y), name, font=body, fill=INK)
        draw.text((MARGIN + 470, y), value, font=body, fill=INK, anchor="ra")
        y += 26
    x, y2 = MARGIN + 560, top     # patient, flags and volumes beside the table
    draw.text((x, y2), _patient_line(patient), font=body, fill=INK)
    y2 += 30
    for line in _flag_lines(levels, patient):
        for part in textwrap.wrap(line, 80):
            draw.text((x + 10, y2), part, font=small, fill=INK)
            y2 += 21
    totals = summary.get("totals") or {}
    volumes = [f"{name} {totals[f'{name}_volume_cm3']:.0f} cm3" for name in ("SAT", "VAT", "Muscle", "IMAT")
               if isinstance(totals.get(f"{name}_volume_cm3"), (int, float))]
    if volumes:
        y2 += 12
        draw.text((x, y2), "Over the slices processed:", font=body, fill=INK)
        y2 += 28
        draw.text((x + 10, y2), ", ".join(volumes), font=small, fill=INK)
        y2 += 24
    y = max(y, y2) + 8
    notes = list(summary.get("notes") or [])
    if notes:
        y += 4
        draw.text((MARGIN, y), "Check before use:", font=body, fill=WARN)
        y += 28
        for note in notes:
            for i, part in enumerate(textwrap.wrap(note, 140)):
                draw.text((MARGIN + 10, y), ("- " if i == 0 else "  ") + part, font=small, fill=WARN)
                y += 20
    y += 14
    draw.text((MARGIN, y), "Research use; not a medical device. Areas are on the slice shown: check the level and the "
              "overlay before reading the numbers.", font=small, fill=DIM)
    y += 20 + MARGIN
    info = dict(page.info)
    page = page.crop((0, 0, WIDTH, y))
    page.info.update(info)
    return page


def write_report(png_path: str | os.PathLike, pdf_path: str | os.PathLike | None, summary: dict,
                 levels_picture=None) -> list[Path]:
    """The report as PNG (and PDF, same page); returns the paths written."""
    page = report_image(summary, levels_picture)
    written = []
    with atomic_path(png_path) as tmp:
        page.save(tmp, format="PNG")
    written.append(Path(png_path))
    if pdf_path is not None:
        with atomic_path(pdf_path) as tmp:
            page.save(tmp, format="PDF", resolution=PDF_DPI)
        written.append(Path(pdf_path))
    return written


def report_bytes(summary: dict, levels_picture=None) -> tuple[bytes, bytes]:
    """(PNG, PDF) bytes of the report, for a page to offer as downloads."""
    import io

    page = report_image(summary, levels_picture)
    png, pdf = io.BytesIO(), io.BytesIO()
    page.save(png, format="PNG")
    page.save(pdf, format="PDF", resolution=PDF_DPI)
    return png.getvalue(), pdf.getvalue()
