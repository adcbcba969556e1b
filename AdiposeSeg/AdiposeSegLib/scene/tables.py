"""Table nodes from rows of values: the per-slice table and the levels table share this."""
from __future__ import annotations

import vtk

TEXT_COLUMNS = ("level", "source", "confidence")


def fill_table(tableNode, columns, rows: list[dict]) -> None:
    """One vtkTable column per name (int `slice`, text for TEXT_COLUMNS, else double; a missing
    value is NaN or ""), with cm2 / HU unit labels from the column names."""
    table = vtk.vtkTable()
    for column in columns:
        text = column in TEXT_COLUMNS
        array = vtk.vtkStringArray() if text else vtk.vtkIntArray() if column == "slice" else vtk.vtkDoubleArray()
        array.SetName(column)
        array.SetNumberOfValues(len(rows))
        for i, row in enumerate(rows):
            value = row.get(column)
            if text:
                array.SetValue(i, "" if value is None else str(value))
            else:
                array.SetValue(i, float("nan") if value is None and column != "slice" else value)
        table.AddColumn(array)
    tableNode.SetAndObserveTable(table)
    for column in columns:
        if column.endswith("_cm2_m2"):
            tableNode.SetColumnUnitLabel(column, "cm2/m2")
        elif column.endswith("_cm2"):
            tableNode.SetColumnUnitLabel(column, "cm2")
        elif column.endswith("_HU"):
            tableNode.SetColumnUnitLabel(column, "HU")
