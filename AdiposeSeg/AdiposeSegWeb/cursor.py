"""What the views show, in the toolbar: each view's slice number and, under the mouse, the slice
(the tables' numbering) and the HU. Slicer's slice views put the mouse position into the crosshair
node (vtkMRMLSliceViewInteractorStyle on every move); the text is sent at most every 0.1 s."""
from __future__ import annotations

import asyncio

import slicer

SEND_EVERY_S = 0.1


class CursorReadout:
    def __init__(self, app):
        self.app = app
        self.volume = None
        self._pending = False
        scene = app.slicer_app.scene
        self.crosshair = scene.GetFirstNodeByClass("vtkMRMLCrosshairNode")
        if self.crosshair is not None:
            self.crosshair.AddObserver(slicer.vtkMRMLCrosshairNode.CursorPositionModifiedEvent, self._changed)
        self._observed: set[str] = set()

    def watch(self, volume) -> None:
        """Read this volume from now on (and observe the slice views, which exist once laid out)."""
        self.volume = volume
        scene = self.app.slicer_app.scene
        for node in scene.GetNodesByClass("vtkMRMLSliceNode"):
            if node.GetID() not in self._observed:
                node.AddObserver("ModifiedEvent", self._changed)
                self._observed.add(node.GetID())
        self._send()

    def _changed(self, *_):
        if self._pending:
            return
        self._pending = True
        try:
            asyncio.get_event_loop().call_later(SEND_EVERY_S, self._send_now)
        except RuntimeError:   # no event loop (not serving yet): send at once
            self._send_now()

    def _send_now(self):
        self._pending = False
        with self.app.state:
            self._send()

    def _send(self):
        state, logic, volume = self.app.state, self.app.logic, self.volume
        if volume is None or logic.scene.GetNodeByID(volume.GetID()) is not volume:
            state.cursor_text = state.views_text = ""
            return
        views = logic.viewSlices(volume, list(self.app.slicer_app.scene.GetNodesByClass("vtkMRMLSliceNode")))
        state.views_text = " · ".join(f"{name} {v['slice']}/{v['slices'] - 1}" for name, v in sorted(views.items()))
        ras = [0.0, 0.0, 0.0]
        info = logic.cursorInfo(volume, ras) if self.crosshair is not None and self.crosshair.GetCursorPositionRAS(ras) else None
        state.cursor_text = (f"cursor: slice {info['slice']}, voxel ({info['ijk'][0]}, {info['ijk'][1]}), {info['hu']:.0f} HU"
                             if info else "")
