"""The per-slice table, the area plot, the false-colour CT, window presets and how the segments show."""
from __future__ import annotations


import numpy as np
import vtk

import slicer

from ..errors import AdiposeSegError
from ..measuring.statistics import SLICE_COLUMNS, Statistics
from ..reading.orientation import axial_axis_of
from ..tissues import COLORS, LABELS, NAMES
from .tables import fill_table
from .volumes import (FALSE_COLOUR_NAME, PLOTTED, PLOT_REFERENCE, PREVIOUS_DISPLAY_ATTRIBUTE, SOURCE_SEGMENTATION_REFERENCE, TABLE_REFERENCE)



TOTALS_ATTRIBUTE = "AdiposeSeg.Totals"    # on the table node: name=value;... (volumes and mean HU over the slices)


def totals_of(tableNode) -> dict[str, float]:
    """The totals a table node was written with (TOTALS_ATTRIBUTE), {} for none."""
    text = tableNode.GetAttribute(TOTALS_ATTRIBUTE) if tableNode is not None else None
    return {key: float(value) for key, value in (item.split("=", 1) for item in (text or "").split(";") if "=" in item)}


# (window, level) in HU: soft tissue (abdomen) -160..240, fat -250..50, bone -450..1050
WINDOW_PRESETS = {"soft tissue": (400.0, 40.0), "fat": (300.0, -100.0), "bone": (1500.0, 300.0)}


class DisplayMixin:
    def _writeTable(self, stats: Statistics, segmentationNode, tableNode):
        if tableNode is None:
            tableNode = segmentationNode.GetNodeReference(TABLE_REFERENCE)
        if tableNode is None:
            tableNode = self.scene.AddNewNodeByClass("vtkMRMLTableNode", f"{segmentationNode.GetName()} areas")
        fill_table(tableNode, SLICE_COLUMNS, stats.rows)
        tableNode.SetAttribute(TOTALS_ATTRIBUTE, ";".join(f"{k}={v:.4f}" for k, v in stats.totals.items()))
        if stats.l3_row:
            tableNode.SetAttribute("AdiposeSeg.L3", ";".join(f"{k}={v}" for k, v in stats.l3_row.items()))
        segmentationNode.SetNodeReferenceID(TABLE_REFERENCE, tableNode.GetID())
        tableNode.SetNodeReferenceID(SOURCE_SEGMENTATION_REFERENCE, segmentationNode.GetID())
        return tableNode

    def _plot(self, tableNode, segmentationNode):
        chart = segmentationNode.GetNodeReference(PLOT_REFERENCE)
        if chart is None:
            chart = self.scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{segmentationNode.GetName()} area per slice")
            chart.SetTitle("Area per slice")
            chart.SetXAxisTitle("z (mm)")
            chart.SetYAxisTitle("area (cm2)")
            for name in PLOTTED:
                series = self.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name)
                series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
                series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
                label = next(k for k in LABELS if NAMES[k] == name)
                series.SetColor(*[c / 255.0 for c in COLORS[label]])
                chart.AddAndObservePlotSeriesNodeID(series.GetID())
            segmentationNode.SetNodeReferenceID(PLOT_REFERENCE, chart.GetID())
        for i in range(chart.GetNumberOfPlotSeriesNodes()):
            series = chart.GetNthPlotSeriesNode(i)
            series.SetAndObserveTableNodeID(tableNode.GetID())
            series.SetXColumnName("z_mm")
            series.SetYColumnName(f"{series.GetName()}_area_cm2")
        return chart

    # -- display
    def setFalseColour(self, volumeNode, enabled: bool) -> None:
        """The seeds' view (soft tissue gray, denser tissue in blue hues by density), or back to the
        colour table and window/level the volume had before it was turned on."""
        display = volumeNode.GetDisplayNode() if volumeNode is not None else None
        if display is None:
            return
        previous = volumeNode.GetAttribute(PREVIOUS_DISPLAY_ATTRIBUTE)
        if not enabled:
            if previous:
                color_id, auto, window, level = previous.split(";")
                display.SetAndObserveColorNodeID(color_id)
                display.SetAutoWindowLevel(auto == "1")
                if auto != "1":
                    display.SetWindowLevel(float(window), float(level))
                volumeNode.RemoveAttribute(PREVIOUS_DISPLAY_ATTRIBUTE)
            return
        if not previous:
            volumeNode.SetAttribute(PREVIOUS_DISPLAY_ATTRIBUTE, "{};{};{!r};{!r}".format(
                display.GetColorNodeID() or "", int(display.GetAutoWindowLevel()), display.GetWindow(), display.GetLevel()))
        from ..reporting.overlay import DENSE_HU, GRAY_WINDOW, false_colour

        colorNode = self.scene.GetFirstNodeByName(FALSE_COLOUR_NAME)
        lo, hi = GRAY_WINDOW[0], DENSE_HU[1]
        if colorNode is None:
            colorNode = self.scene.AddNewNodeByClass("vtkMRMLColorTableNode", FALSE_COLOUR_NAME)
            colorNode.SetTypeToUser()
            colorNode.SetNumberOfColors(256)
            values = np.linspace(lo, hi, 256)
            rgb = false_colour(values[None, :])[0] / 255.0
            for i, (r, g, b) in enumerate(rgb):
                colorNode.SetColor(i, f"{values[i]:.0f}", r, g, b, 1.0)
        display.SetAutoWindowLevel(False)
        display.SetWindowLevelMinMax(lo, hi)
        display.SetAndObserveColorNodeID(colorNode.GetID())

    def setWindowPreset(self, volumeNode, name: str) -> None:
        """A window/level preset of WINDOW_PRESETS (soft tissue, fat, bone); false colour is turned off."""
        if name not in WINDOW_PRESETS:
            raise AdiposeSegError(f"window preset {name!r}: choose one of {', '.join(WINDOW_PRESETS)}")
        display = volumeNode.GetDisplayNode() if volumeNode is not None else None
        if display is None:
            return
        self.setFalseColour(volumeNode, False)
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(*WINDOW_PRESETS[name])

    def setSegmentDisplay(self, segmentationNode, opacity: float | None = None, fill: bool | None = None,
                          outline: bool | None = None, visible: dict | None = None) -> dict:
        """How the segments show in the slice views: fill opacity (0..1), fill and outline on or off,
        and each tissue shown or hidden (`visible`: {"SAT": True, ...}); None leaves a setting as it
        is. Returns the settings now (segmentDisplay)."""
        display = segmentationNode.GetDisplayNode() if segmentationNode is not None else None
        if display is None:
            return {}
        if opacity is not None:
            if not 0.0 <= float(opacity) <= 1.0:
                raise AdiposeSegError(f"opacity {opacity}: give a value from 0 to 1")
            display.SetOpacity2DFill(float(opacity))
            for label in LABELS:   # the per-segment opacity multiplies the node's: keep it at 1
                display.SetSegmentOpacity2DFill(NAMES[label], 1.0)
        if fill is not None:
            display.SetVisibility2DFill(bool(fill))
        if outline is not None:
            display.SetVisibility2DOutline(bool(outline))
        for name, shown in (visible or {}).items():
            if segmentationNode.GetSegmentation().GetSegment(name) is None:
                raise AdiposeSegError(f"no segment {name!r} in {segmentationNode.GetName()}")
            display.SetSegmentVisibility(name, bool(shown))
        return self.segmentDisplay(segmentationNode)

    def segmentDisplay(self, segmentationNode) -> dict:
        """{"opacity": the fill opacity each segment shows with, "fill", "outline", "visible": {name: bool}}."""
        display = segmentationNode.GetDisplayNode() if segmentationNode is not None else None
        if display is None:
            return {}
        names = [NAMES[label] for label in LABELS if segmentationNode.GetSegmentation().GetSegment(NAMES[label])]
        opacity = display.GetOpacity2DFill() * (display.GetSegmentOpacity2DFill(names[0]) if names else 1.0)
        return {"opacity": round(opacity, 3), "fill": bool(display.GetVisibility2DFill()),
                "outline": bool(display.GetVisibility2DOutline()),
                "visible": {name: bool(display.GetSegmentVisibility(name)) for name in names}}

    def cursorInfo(self, volumeNode, ras) -> dict | None:
        """What lies under a RAS point (the cursor): the canonical axial slice (the tables' numbering,
        from the feet), the voxel (i, j, k of the volume) and its HU; None outside the volume."""
        ijk = _ijk(volumeNode, ras)
        dims = volumeNode.GetImageData().GetDimensions() if volumeNode is not None and volumeNode.GetImageData() else None
        if dims is None or not all(0 <= ijk[a] < dims[a] for a in range(3)):
            return None
        axis, upward = axial_axis_of(_directions(volumeNode))
        k = ijk[axis] if upward else dims[axis] - 1 - ijk[axis]
        hu = float(slicer.util.arrayFromVolume(volumeNode)[ijk[2], ijk[1], ijk[0]])
        return {"slice": int(k), "slices": int(dims[axis]), "ijk": [int(v) for v in ijk], "hu": hu}

    def viewSlices(self, volumeNode, sliceNodes) -> dict:
        """Per slice view (Axial, Coronal, Sagittal: the RAS axis nearest its normal): the slice it shows
        and how many there are along its normal; axial in the tables' numbering (from the feet), the
        others as the volume's own index."""
        out = {}
        if volumeNode is None or volumeNode.GetImageData() is None:
            return out
        dims = volumeNode.GetImageData().GetDimensions()
        directions = _directions(volumeNode)
        axial, upward = axial_axis_of(directions)
        for node in sliceNodes:
            matrix = node.GetSliceToRAS()
            centre = [matrix.GetElement(i, 3) for i in range(3)]
            normal = np.array([matrix.GetElement(i, 2) for i in range(3)])
            axis = int(np.argmax(np.abs(normal @ directions)))   # the index axis nearest the view's normal
            index = _ijk(volumeNode, centre)[axis]
            if axis == axial and not upward:
                index = dims[axis] - 1 - index
            view = ("Sagittal", "Coronal", "Axial")[int(np.argmax(np.abs(normal)))]   # the normal's nearest of R, A, S
            out[view] = {"slice": int(index), "slices": int(dims[axis])}
        return out


def _directions(volumeNode) -> np.ndarray:
    """The node's IJK-to-RAS directions as a 3x3 matrix (columns: the index axes)."""
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASDirectionMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])


def _ijk(volumeNode, ras) -> list[int]:
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetRASToIJKMatrix(matrix)
    point = matrix.MultiplyPoint([float(ras[0]), float(ras[1]), float(ras[2]), 1.0])
    return [int(np.floor(point[a] + 0.5)) for a in range(3)]
