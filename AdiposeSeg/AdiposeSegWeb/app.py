"""The AdiposeSeg web page: open a CT, Segment (child process, progress, cancel), review the overlays
in three slice views, edit with Slicer's segment editor effects, update statistics, save as ground
truth. Every action goes through the module's SceneLogic on trame-slicer's MRML scene."""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path

import slicer
from trame.app import TrameApp
from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_slicer import module as trame_slicer_module
from trame_slicer.app.logic.segmentation import SegmentEditorLogic
from trame_slicer.app.ui.segmentation import SegmentEditorUI
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
from trame_vuetify.ui.vuetify3 import SinglePageWithDrawerLayout

from AdiposeSegLib.errors import AdiposeSegError, Cancelled, OutputError
from AdiposeSegLib.reading.dicom import seg_sources
from AdiposeSegLib.reading.image_io import read_ct
from AdiposeSegLib.scene import SceneLogic, volume_node_from_image
from AdiposeSegLib.tissues import LABELS, NAMES, SegmentOptions

from .guard import SessionGuard
from .paths import DEFAULT_UPLOAD_LIMIT_MB, DataRoots, save_uploads
from .tables import area_plot_svg, level_rows, levels_csv, slice_rows, table_csv

log = logging.getLogger("adiposeseg.web")
POLL_S = 0.25


class AdiposeSegWeb(TrameApp):
    def __init__(self, roots: DataRoots, dataset_dir: str, model_dir: str | None = None, device: str = "auto",
                 encoder: str = "png", upload_limit_mb: float = DEFAULT_UPLOAD_LIMIT_MB, server=None):
        super().__init__(server)
        self.upload_limit = int(upload_limit_mb * 1024 ** 2)
        self.guard = SessionGuard(self.upload_limit)
        self.server.cli.set_defaults(authKey=self.guard.secret)   # the page's URL carries it: ?secret=...
        self.ctrl.on_server_bind.add(self.guard.bind)
        self.upload_dir = Path(tempfile.mkdtemp(prefix="adiposeseg-uploads-"))
        roots.add(self.upload_dir)
        self.server.enable_module(trame_slicer_module)
        self.roots = roots
        self.dataset_dir = dataset_dir
        self.slicer_app = SlicerApp()
        slicer.mrmlScene = self.slicer_app.scene      # slicer.util works on the module's scene
        register_rca_factories(self.slicer_app.view_manager, self.server, rca_encoder=encoder)
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout_dict({"AdiposeSeg": Layout(LayoutDirection.Horizontal, [
            ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.coronal_view(), ViewLayoutDefinition.sagittal_view()])})
        self.layout_manager.set_layout("AdiposeSeg")
        self.editor = SegmentEditorLogic(self.server, self.slicer_app)
        # the engine runs in a child process with this interpreter (the one that has torch)
        self.logic = SceneLogic(self.slicer_app.scene, model_dir=model_dir, options=SegmentOptions(device=device),
                                python=sys.executable)
        self.server.trigger("upload")(self.upload)
        self.volume = None
        self.source_files: list[str] = []   # the loaded DICOM series' files, slice k = file k
        self.job = None
        self._init_state()
        self._build_ui()
        self.ctrl.on_client_connected.add(self._fit_views_soon)

    def _fit_views_soon(self, *_):
        """The views know their size once the page has laid them out: fit the CT then."""
        def fit():
            if self.volume is not None:
                self.slicer_app.display_manager.reset_views()
        asyncio.get_event_loop().call_later(1.0, fit)

    # ------------------------------------------------------------------ state
    def _init_state(self):
        s = self.state
        s.trame__title = "AdiposeSeg"
        s.scans = self.roots.scans()
        s.scan = s.scans[0] if s.scans else None
        s.loaded = ""
        s.running = False
        s.progress = 0
        s.status = "Open a CT, then Segment."
        s.error = ""
        s.has_result = False
        s.slice_rows = []
        s.level_rows = []
        s.plot_svg = ""
        s.levels_png = ""
        s.slices_csv = ""
        s.levels_csv = ""
        s.case_name = "ct"
        s.l3_text = ""
        s.saved = ""
        s.is_dicom = False
        s.offer_replace = False
        s.false_colour = False
        s.dataset_dir = self.dataset_dir

    def fail(self, message: str):
        self.state.error = message
        self.state.status = "Failed; nothing was changed."

    # ------------------------------------------------------------------ actions
    def open_scan(self, name: str | None = None):
        """Load a CT named by the browser: it must resolve inside the data roots."""
        self.state.error = ""
        try:
            path = self.roots.resolve(name or self.state.scan or "")
            upload = self.upload_dir.resolve()
            self.roots.check_reads(path, own_folder=next((p for p in [path, *path.parents] if p.parent == upload), None))
            info: dict = {}
            image = read_ct(str(path), info=info)
        except AdiposeSegError as exc:
            return self.fail(str(exc))
        except Exception as exc:   # never a traceback in the page
            log.exception("open failed")
            return self.fail(f"{name}: could not be read ({type(exc).__name__}: {exc})")
        self.slicer_app.scene.Clear()
        self.source_files = seg_sources(info, None) or []
        self.volume = volume_node_from_image(self.slicer_app.scene, image, path.name.split(".")[0])
        self.slicer_app.display_manager.show_volume(self.volume, do_reset_views=True)
        self.state.update({"loaded": str(path), "has_result": False, "slice_rows": [], "level_rows": [],
                           "plot_svg": "", "levels_png": "", "l3_text": "", "saved": "",
                           "is_dicom": bool(self.source_files), "offer_replace": False,
                           "status": f"{path.name}: {image.GetSize()[0]}x{image.GetSize()[1]}x{image.GetSize()[2]}; "
                                     "click Segment."})

    def upload(self, files):
        """A CT uploaded from the browser: size-checked, written under this server's upload folder
        (itself a data root), then opened and checked like any other input."""
        self.state.error = ""
        try:
            path = save_uploads(files or [], self.upload_dir, self.upload_limit)
        except AdiposeSegError as exc:
            return self.fail(str(exc))
        self.state.scans = self.roots.scans()
        self.state.scan = str(path)
        self.open_scan(str(path))

    def segment(self):
        if self.job is not None:
            self.job.cancel()
            self.state.status = "Cancelling..."
            return
        if self.volume is None:
            return self.fail("open a CT first")
        self.state.error = ""
        try:
            self.job = self.logic.processVolume(self.volume, waitForCompletion=False, replaceEdited=True)
        except AdiposeSegError as exc:
            return self.fail(str(exc))
        self.state.update({"running": True, "progress": 0, "status": "Segmenting..."})
        asyncio.ensure_future(self._poll())

    async def _poll(self):
        job = self.job
        try:
            while not job.done:
                with self.state:
                    self.state.progress = int(100 * job.fraction)
                    self.state.status = job.message or "Segmenting..."
                await asyncio.sleep(POLL_S)
            segmentation, table = job.finish()
        except Cancelled:
            with self.state:
                self.state.update({"status": "Cancelled; nothing was changed.", "progress": 0})
            return
        except Exception as exc:
            log.error("segment failed: %s", traceback.format_exc())
            with self.state:
                self.fail(f"Segmentation failed: {exc}")
            return
        finally:
            self.job = None
            with self.state:
                self.state.running = False
        with self.state:
            self._show_result(segmentation, table)
            self.state.update({"status": "Done.", "progress": 100})

    def _show_result(self, segmentation, table):
        self.editor.on_volume_changed(self.volume)      # the segment editor edits this segmentation
        segmentation.SetDisplayVisibility(True)
        self.logic.jumpToLevel(self.volume, segmentation, "L3")
        self._refresh_tables(segmentation, table)
        self.state.has_result = True
        self.slicer_app.display_manager.show_volume(self.volume, do_reset_views=False)

    def _refresh_tables(self, segmentation, table):
        self.state.slice_rows = slice_rows(table)
        levels = self.logic.levels(segmentation)
        self.state.level_rows = level_rows(levels)
        l3 = levels.get("L3")
        self.state.plot_svg = area_plot_svg(table, l3_z_mm=l3.get("z_mm") if l3 else None)
        self.state.levels_png = self._levels_picture(segmentation)
        self.state.slices_csv = table_csv(table)
        self.state.levels_csv = levels_csv(levels)
        self.state.case_name = self.volume.GetName() if self.volume is not None else "ct"
        if l3 and "SMA_cm2" in l3:
            how = "set by hand" if l3["source"] == "manual" else f"auto, {l3['confidence']}"
            self.state.l3_text = (f"L3 slice {l3['slice']} ({how}): SMA {l3['SMA_cm2']:.1f} cm², "
                                  f"SAT {l3['SAT_cm2']:.1f} cm², VAT {l3['VAT_cm2']:.1f} cm²")
        elif l3:
            self.state.l3_text = f"L3 found with low confidence at slice {l3['slice']}: check it"
        else:
            self.state.l3_text = "L3 not found on the bone"

    def _levels_picture(self, segmentation) -> str:
        """The levels picture as a data URL; an optional view: if it cannot be drawn, the tables still show."""
        import base64

        try:
            png = self.logic.levelsPicture(self.volume, segmentation)
        except Exception:
            log.error("levels picture failed: %s", traceback.format_exc())
            return ""
        return "data:image/png;base64," + base64.b64encode(png).decode("ascii") if png else ""

    def update_statistics(self):
        self._guarded(self._update_statistics)

    def _update_statistics(self):
        segmentation, table = self.logic.resultsForVolume(self.volume)
        table = self.logic.updateStatistics(segmentation, self.volume, table)
        self._refresh_tables(segmentation, table)
        self.state.status = "Statistics updated from the edited segments."

    def save_ground_truth(self):
        self._guarded(self._save_ground_truth)

    def _save_ground_truth(self):
        segmentation, _ = self.logic.resultsForVolume(self.volume)
        row = self.logic.saveAsGroundTruth(self.volume, segmentation, self.dataset_dir, source=self.state.loaded)
        self.state.saved = f"saved case {row['case_id']} (edited: {row['edited']}) in {self.dataset_dir}"
        self.state.status = "Saved as ground truth."

    def export_dicom(self, replace: bool = False):
        self._guarded(lambda: self._export_dicom(bool(replace)))

    def _export_dicom(self, replace: bool):
        """The segmentation as it is now as DICOM SEG + SR, into the dataset folder's dicom-exports/.
        A second export of the same case is offered as a replacement (the new SR names the old one)."""
        segmentation, _ = self.logic.resultsForVolume(self.volume)
        folder = os.path.join(self.dataset_dir, "dicom-exports")
        self.state.offer_replace = False
        try:
            written = self.logic.exportDicom(self.volume, segmentation, self.source_files, folder,
                                             caseId=self.volume.GetName(), overwrite=replace)
        except OutputError as exc:
            self.state.offer_replace = "already exists" in str(exc)
            raise
        self.state.saved = "; ".join([f"wrote {', '.join(sorted(written['files']))} in {folder}"] + written["notes"])
        self.state.status = "Exported DICOM SEG + SR."

    def set_l3(self):
        self._guarded(self._set_l3)

    def _set_l3(self):
        """L3 = the slice the axial view shows (its centre), as "Set L3 from the red slice" in Slicer."""
        axial = next((node for node in self.slicer_app.scene.GetNodesByClass("vtkMRMLSliceNode")
                      if node.GetOrientationString() == "Axial"), None)
        if axial is None:
            raise AdiposeSegError("no axial view to take L3 from")
        segmentation, table = self.logic.resultsForVolume(self.volume)
        centre = [axial.GetSliceToRAS().GetElement(i, 3) for i in range(3)]
        l3 = self.logic.setL3(self.volume, segmentation, ras=centre)
        self._refresh_tables(segmentation, table)
        self.state.status = f"L3 set by hand at slice {l3['slice']}."

    def set_false_colour(self, enabled):
        if self.volume is not None:
            self._guarded(lambda: self.logic.setFalseColour(self.volume, bool(enabled)))

    def _guarded(self, action):
        self.state.error = ""
        if self.volume is None:
            return self.fail("open a CT first")
        try:
            action()
        except AdiposeSegError as exc:
            self.fail(str(exc))
        except Exception as exc:
            log.error("action failed: %s", traceback.format_exc())
            self.fail(f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ page
    def _footer_text(self) -> str:
        from AdiposeSegLib import __version__
        from AdiposeSegLib.model.model_card import default_model_dir, read_card

        try:
            card = read_card(self.logic.model_dir or default_model_dir())
            model = f"model {card.name} {card.version}"
        except AdiposeSegError:
            model = "no model found"
        return (f"AdiposeSeg {__version__} · {model} · code BSD 3-Clause; the bundled model's weights for "
                "non-commercial use only · not a medical device")

    def _upload_script(self) -> str:
        """Too big is said before a byte is sent (the server also refuses any message over the limit)."""
        limit_mb = f"{self.upload_limit / 1024 ** 2:.0f}"
        total = "Array.from($event.target.files).reduce((a, f) => a + f.size, 0)"
        return (f"{total} > {self.upload_limit} ? (error = 'the upload is ' + Math.round({total} / 1048576) + "
                f"' MB, over this server\\'s limit of {limit_mb} MB; put the scan in a data folder instead') : "
                "trigger('upload', [$event.target.files])")

    def _build_ui(self):
        with SinglePageWithDrawerLayout(self.server, theme="dark") as self.ui:
            self.ui.title.set_text("AdiposeSeg")
            self.ui.footer.clear()   # the template's "Powered by trame" / "(c) Kitware" is not this tool's
            with self.ui.footer:
                html.Div(self._footer_text(), id="footer", classes="text-caption")
            with self.ui.toolbar:
                v3.VSpacer()
                v3.VSelect(v_model=("scan",), items=("scans",), label="CT (inside the data folders)", density="compact",
                           hide_details=True, style="max-width: 520px;", id="scan-select")
                v3.VBtn("Open", click=self.open_scan, id="open-button", classes="ml-2", disabled=("running",))
                v3.VFileInput(multiple=True, hide_input=True, density="compact", prepend_icon="mdi-upload", id="upload",
                              hide_details=True, style="max-width: 48px;", disabled=("running",),
                              change=self._upload_script())
            with self.ui.drawer:
                self.ui.drawer.width = 420
                with v3.VTabs(v_model=("tab", "adiposeseg"), density="compact"):
                    v3.VTab("AdiposeSeg", value="adiposeseg", id="panel-tab")
                    v3.VTab("Edit", value="edit", disabled=("!has_result",), id="edit-tab")
                with v3.VWindow(v_model=("tab",)):
                    with v3.VWindowItem(value="adiposeseg"):
                        self._panel()
                    with v3.VWindowItem(value="edit"):
                        self.editor_ui = SegmentEditorUI(style="height: calc(100vh - 160px);")
                        with html.Div(classes="d-flex justify-center"):
                            self.editor_ui.build_undo_redo_buttons()
                        self.editor.set_ui(self.editor_ui)
            with self.ui.content:
                self.layout_manager.initialize_layout_grid(self.ui)

    def _panel(self):
        with html.Div(classes="pa-3"):
            v3.VAlert(text=("error",), type="error", v_if=("error",), density="compact", id="error", classes="mb-2")
            with html.Div(classes="d-flex align-center"):
                v3.VBtn("{{ running ? 'Cancel' : 'Segment' }}", click=self.segment, id="segment-button",
                        color=("running ? 'warning' : 'primary'",), disabled=("!loaded",))
                v3.VSwitch(v_model=("false_colour",), label="False-colour CT", hide_details=True, density="compact",
                           classes="ml-4", update_modelValue=(self.set_false_colour, "[$event]"))
            v3.VProgressLinear(model_value=("progress",), height=6, classes="my-2", id="progress")
            html.Div("{{ status }}", id="status", classes="text-body-2")
            html.Div("{{ l3_text }}", id="l3", classes="text-body-2 mt-1", v_if=("has_result",))
            with html.Div(classes="d-flex mt-2", v_if=("has_result",)):
                v3.VBtn("Update statistics", click=self.update_statistics, id="update-button", size="small")
                v3.VBtn("Save as ground truth", click=self.save_ground_truth, id="save-button", size="small",
                        classes="ml-2")
                v3.VBtn("Export DICOM SEG + SR", click=(self.export_dicom, "[false]"), id="export-dicom-button",
                        size="small", classes="ml-2", v_if=("is_dicom",))
            v3.VBtn("Replace the earlier export", click=(self.export_dicom, "[true]"), id="replace-export-button",
                    size="small", color="warning", classes="mt-2", v_if=("offer_replace",))
            v3.VBtn("Set L3 from the axial view", click=self.set_l3, id="set-l3-button", size="small", classes="mt-2",
                    v_if=("has_result",))
            html.Div("{{ saved }}", id="saved", classes="text-caption mt-1")
            html.Div("Dataset folder: {{ dataset_dir }}", classes="text-caption")
            html.Div(v_html=("plot_svg",), classes="mt-2", id="plot")
            with html.Div(classes="d-flex mt-1", v_if=("has_result",)):
                v3.VBtn("Slices CSV", size="x-small", variant="outlined", id="download-slices",
                        click="utils.download(case_name + '_slices.csv', slices_csv, 'text/csv')")
                v3.VBtn("Levels CSV", size="x-small", variant="outlined", id="download-levels", classes="ml-2",
                        click="utils.download(case_name + '_levels.csv', levels_csv, 'text/csv')")
            html.Img(src=("levels_png",), v_if=("levels_png",), id="levels-picture", style="width: 100%;",
                     classes="mt-2", title="Sagittal cut, coronal bone slab and the L3 slice with the levels found")
            with v3.VTable(density="compact", v_if=("level_rows.length",), classes="mt-2", id="levels-table"):
                with html.Thead(), html.Tr():
                    for head in ("level", "slice", "how", "SMA", "SAT", "VAT", "IMAT"):
                        html.Th(head)
                with html.Tbody(), html.Tr(v_for="row in level_rows", key="row.level"):
                    for key in ("level", "slice", "how", "SMA", "SAT", "VAT", "IMAT"):
                        html.Td(f"{{{{ row.{key} }}}}")
            with v3.VTable(density="compact", v_if=("slice_rows.length",), height=260, fixed_header=True, classes="mt-2",
                           id="slices-table"):
                with html.Thead(), html.Tr():
                    for head in ("slice", "level") + tuple(NAMES[k] for k in LABELS):
                        html.Th(head)
                with html.Tbody(), html.Tr(v_for="row in slice_rows", key="row.slice"):
                    for key in ("slice", "level") + tuple(NAMES[k] for k in LABELS):
                        html.Td(f"{{{{ row.{key} }}}}")


def default_dataset_dir() -> str:
    return os.path.join(os.path.expanduser("~"), "AdiposeSegGroundTruth")


def ensure_writable(folder: str) -> str:
    Path(folder).mkdir(parents=True, exist_ok=True)
    return folder
