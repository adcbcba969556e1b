"""The page's tables and area plot, from the table node and levels SceneLogic wrote."""
from __future__ import annotations

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


def level_rows(levels: dict) -> list[dict]:
    rows = []
    for name in ordered(levels):   # L3 first, as in the Slicer module's levels table
        level = levels[name]
        how = "by hand" if level["source"] == "manual" else level["confidence"]
        fmt = lambda key: f"{level[key]:.1f}" if isinstance(level.get(key), (int, float)) else "-"  # noqa: E731
        rows.append({"level": name, "slice": level["slice"], "how": how, "SMA": fmt("SMA_cm2"), "SAT": fmt("SAT_cm2"),
                     "VAT": fmt("VAT_cm2"), "IMAT": fmt("IMAT_cm2")})
    return rows


def area_plot_svg(table_node, width: int = 380, height: int = 140) -> str:
    """SAT, VAT and muscle area (cm²) along z, as an inline SVG."""
    if table_node is None:
        return ""
    cols = _columns(table_node)
    z = cols.get("z_mm", [])
    if len(z) < 2:
        return ""
    top = max(max(cols[f"{name}_area_cm2"]) for name in PLOTTED) or 1.0
    z0, z1 = min(z), max(z)
    lines = []
    for name in PLOTTED:
        label = next(k for k in LABELS if NAMES[k] == name)
        r, g, b = COLORS[label]
        points = " ".join(f"{(zz - z0) / (z1 - z0 or 1) * (width - 10) + 5:.1f},"
                          f"{height - 15 - a / top * (height - 25):.1f}"
                          for zz, a in sorted(zip(z, cols[f"{name}_area_cm2"])))
        lines.append(f'<polyline fill="none" stroke="rgb({r},{g},{b})" stroke-width="2" points="{points}"/>')
    legend = " ".join(f'<tspan fill="rgb{COLORS[next(k for k in LABELS if NAMES[k] == n)]}">{n}</tspan>' for n in PLOTTED)
    return (f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
            f'<rect width="100%" height="100%" fill="#1e1e1e"/>{"".join(lines)}'
            f'<text x="5" y="{height - 3}" font-size="10" fill="#aaa">z (mm) → ; area up to {top:.0f} cm² </text>'
            f'<text x="{width - 130}" y="12" font-size="11">{legend}</text></svg>')


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
                "SAT_cm2", "VAT_cm2", "SMI_cm2_m2")


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
