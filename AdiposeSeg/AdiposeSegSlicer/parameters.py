"""The module's parameter node: the inputs and options the panel shows, saved with the scene."""
from __future__ import annotations

from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper


@parameterNodeWrapper
class AdiposeSegParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    outputTable: vtkMRMLTableNode
    fatMin: Annotated[float, WithinRange(-1000, 0)] = -190.0
    fatMax: Annotated[float, WithinRange(-1000, 0)] = -30.0
    muscleMin: Annotated[float, WithinRange(-200, 300)] = -29.0
    muscleMax: Annotated[float, WithinRange(-200, 300)] = 150.0
    minIslandMm2: Annotated[float, WithinRange(0, 1000)] = 10.0
    includeImat: bool = True
    claimVisceralFat: bool = True
    includeArms: bool = False
    sliceStart: Annotated[int, WithinRange(0, 10000)] = 0
    sliceStop: Annotated[int, WithinRange(0, 10000)] = 0
    l3Slice: Annotated[int, WithinRange(-1, 10000)] = -1
