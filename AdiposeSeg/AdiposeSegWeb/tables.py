"""The page's tables and area plot, from the table node and levels SceneLogic wrote."""
from __future__ import annotations

import numpy as np

from AdiposeSegLib.scene.levels import ordered
from AdiposeSegLib.tissues import COLORS, LABELS, NAMES

PLOTTED = ("SAT", "VAT", "Muscle")


def _columns(table_node) -> dict[str, list]:
    table = table_node.GetTable()
    out = {}
    for c in range(table.GetNumberOfColumns()):
        column = table.GetColumn(c)
        out[column.GetName()] = [column.GetValue(i) for i in range(column.GetNumberOfValues())]
    return out


def slice_rows(table_node) -> list[dict]:
    if table_node is None:
        return []
    cols = _columns(table_node)
    rows = []
    for i, k in enumerate(cols.get("slice", [])):
        row = {"slice": int(k), "level": cols.get("level", [""] * (i + 1))[i]}
        for label in LABELS:
            row[NAMES[label]] = f"{cols[f'{NAMES[label]}_area_cm2'][i]:.1f}"
        rows.append(row)
    return rows[::-1]   # head first, as a radiologist scrolls


# (row key, header): the units in the headers, as the CSVs have them in the column names
LEVEL_HEADERS = (("level", "level"), ("slice", "slice"), ("confidence", "confidence"), ("SMA", "SMA cm²"),
                 ("SMD", "SMD HU"), ("SMI", "SMI cm²/m²"), ("IMAT", "IMAT cm²"), ("SAT", "SAT cm²"), ("VAT", "VAT cm²"))
SLICE_HEADERS = (("slice", "slice"), ("level", "level")) + tuple((NAMES[k], f"{NAMES[k]} cm²") for k in LABELS)


def level_rows(levels: dict) -> list[dict]:
    """The levels table's rows from SceneLogic.levelReports (SMI with the patient's height)."""
    rows = []
    for name in ordered(levels):   # L3 first, as in the Slicer module's levels table
        level = levels[name]
        confidence = "by hand" if level["source"] == "manual" else level["confidence"]
        fmt = lambda key: f"{level[key]:.1f}" if isinstance(level.get(key), (int, float)) and level[key] == level[key] else "-"  # noqa: E731
        rows.append({"level": name, "slice": level["slice"], "confidence": confidence, "SMA": fmt("SMA_cm2"),
                     "SMD": fmt("SMD_HU"), "SMI": fmt("SMI_cm2_m2"), "IMAT": fmt("IMAT_cm2"), "SAT": fmt("SAT_cm2"),
                     "VAT": fmt("VAT_cm2")})
    return rows


def _nice_step(span: float, ticks: int = 4) -> float:
    raw = span / ticks
    magnitude = 10 ** np.floor(np.log10(raw)) if raw > 0 else 1.0
    return float(min((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), default=magnitude))


def area_plot_svg(table_node, width: int = 380, height: int = 160, l3_z_mm: float | None = None) -> str:
    """SAT, VAT, muscle and IMAT area (cm²) along z as an inline SVG: axes with ticks, the feet and head
    ends named, and a line at L3 when it is known."""
    if table_node is None:
        return ""
    cols = _columns(table_node)
    z = cols.get("z_mm", [])
    if len(z) < 2:
        return ""
    left, right, top_pad, bottom = 34, 8, 16, 28
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    top = max(max(cols[f"{name}_area_cm2"]) for name in PLOTTED) or 1.0
    z0, z1 = min(z), max(z)
    x_of = lambda zz: left + (zz - z0) / (z1 - z0 or 1) * plot_w              # noqa: E731
    y_of = lambda a: top_pad + plot_h - a / top * plot_h                      # noqa: E731
    parts = ['<rect width="100%" height="100%" fill="#1e1e1e"/>',
             f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" stroke="#888"/>',
             f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{top_pad + plot_h}" stroke="#888"/>']
    step = _nice_step(top)
    for k in range(int(top // step) + 1):
        a = k * step
        parts.append(f'<line x1="{left - 3}" y1="{y_of(a):.1f}" x2="{left}" y2="{y_of(a):.1f}" stroke="#888"/>'
                     f'<text x="{left - 5}" y="{y_of(a) + 3:.1f}" font-size="9" fill="#aaa" text-anchor="end">{a:g}</text>')
    zstep = _nice_step(z1 - z0)
    first = np.ceil(z0 / zstep) * zstep
    for zz in np.arange(first, z1 + 1e-6, zstep):
        parts.append(f'<line x1="{x_of(zz):.1f}" y1="{top_pad + plot_h}" x2="{x_of(zz):.1f}" y2="{top_pad + plot_h + 3}" '
                     f'stroke="#888"/><text x="{x_of(zz):.1f}" y="{top_pad + plot_h + 12}" font-size="9" fill="#aaa" '
                     f'text-anchor="middle">{zz:g}</text>')
    names = PLOTTED + ("IMAT",)
    for name in names:
        label = next(k for k in LABELS if NAMES[k] == name)
        r, g, b = COLORS[label]
        points = " ".join(f"{x_of(zz):.1f},{y_of(a):.1f}" for zz, a in sorted(zip(z, cols[f"{name}_area_cm2"])))
        parts.append(f'<polyline fill="none" stroke="rgb({r},{g},{b})" stroke-width="{1 if name == "IMAT" else 2}" '
                     f'points="{points}" data-tissue="{name}"/>')
    if l3_z_mm is not None and z0 <= l3_z_mm <= z1:
        x = x_of(l3_z_mm)
        parts.append(f'<line x1="{x:.1f}" y1="{top_pad}" x2="{x:.1f}" y2="{top_pad + plot_h}" stroke="#ffe600" '
                     f'stroke-dasharray="3,2" id="plot-l3"/><text x="{x + 2:.1f}" y="{top_pad + 9}" font-size="9" '
                     f'fill="#ffe600">L3</text>')
    legend = " ".join(f'<tspan fill="rgb{COLORS[next(k for k in LABELS if NAMES[k] == n)]}">{n}</tspan>' for n in names)
    parts.append(f'<text x="{left}" y="{height - 3}" font-size="9" fill="#aaa">feet ← z (mm) → head; area (cm²)</text>'
                 f'<text x="{width - 150}" y="11" font-size="10">{legend}</text>')
    return f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'


def table_csv(table_node) -> str:
    """Every column of the per-slice table (areas in cm², mean HU, z in mm), feet to head, as CSV."""
    import csv
    import io

    if table_node is None:
        return ""
    cols = _columns(table_node)
    names = list(cols)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for i in range(len(cols[names[0]]) if names else 0):
        writer.writerow([cols[n][i] for n in names])
    return out.getvalue()


LEVEL_FIELDS = ("slice", "input_slice", "z_mm", "source", "anchor", "confidence", "SMA_cm2", "SMD_HU", "IMAT_cm2",
                "SAT_cm2", "VAT_cm2", "SMI_cm2_m2", "SATI_cm2_m2", "VATI_cm2_m2", "BMI_kg_m2")


def levels_csv(levels: dict) -> str:
    """The levels table as CSV, L3 first: the same fields (and units in the names) as summary.json."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("level",) + LEVEL_FIELDS)
    for name in ordered(levels):
        writer.writerow([name] + [levels[name].get(key, "") for key in LEVEL_FIELDS])
    return out.getvalue()
