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
from trame_slicer import module as trame_slicer_module
from trame_slicer.app.logic.segmentation import SegmentEditorLogic
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

from AdiposeSegLib.errors import AdiposeSegError, Cancelled, OutputError
from AdiposeSegLib.reading.dicom import seg_sources
from AdiposeSegLib.reading.image_io import read_ct
from AdiposeSegLib.scene import SceneLogic, volume_node_from_image
from AdiposeSegLib.tissues import LABELS, NAMES, SegmentOptions

from .guard import SessionGuard
from .paths import DEFAULT_UPLOAD_LIMIT_MB, DataRoots, save_uploads
from .cursor import CursorReadout
from .tables import area_plot_svg, level_rows, levels_csv, slice_rows, table_csv
from .ui import build_page

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
        self.server.trigger("report_file")(self.report_file)
        self.volume = None
        self.source_files: list[str] = []   # the loaded DICOM series' files, slice k = file k
        self.job = None
        self._init_state()
        self.ui = build_page(self)
        self.cursor = CursorReadout(self)
        self.state.change("seg_opacity", "seg_fill", "seg_outline", *(f"show_{NAMES[k]}" for k in LABELS))(
            self._on_display_changed)
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
        s.cursor_text = ""
        s.views_text = ""
        s.update({"seg_opacity": 0.4, "seg_fill": True, "seg_outline": True, "height_m": "", "weight_kg": "", "sex": ""})
        s.update({f"show_{NAMES[k]}": True for k in LABELS})
        self.header_patient: dict = {}

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
        self.header_patient = {k: v for k, v in (info.get("patient") or {}).items() if k in ("height_m", "weight_kg", "sex")}
        self.volume = volume_node_from_image(self.slicer_app.scene, image, path.name.split(".")[0])
        self.slicer_app.display_manager.show_volume(self.volume, do_reset_views=True)
        self.cursor.watch(self.volume)
        self.state.update({"loaded": str(path), "has_result": False, "slice_rows": [], "level_rows": [],
                           "plot_svg": "", "levels_png": "", "l3_text": "", "saved": "",
                           "is_dicom": bool(self.source_files), "offer_replace": False, "cursor_text": "",
                           "height_m": str(self.header_patient.get("height_m", "")),
                           "weight_kg": str(self.header_patient.get("weight_kg", "")),
                           "sex": self.header_patient.get("sex", ""),
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
        self._apply_display(segmentation)
        if self.state.height_m or self.state.weight_kg or self.state.sex:
            try:
                self.logic.setPatient(segmentation, self.state.height_m, self.state.weight_kg, self.state.sex,
                                      source="DICOM header" if self.header_patient else "entered")
            except AdiposeSegError as exc:
                self.state.error = str(exc)
        self.logic.jumpToLevel(self.volume, segmentation, "L3")
        self._refresh_tables(segmentation, table)
        self.state.has_result = True
        self.slicer_app.display_manager.show_volume(self.volume, do_reset_views=False)

    def _refresh_tables(self, segmentation, table):
        self.state.slice_rows = slice_rows(table)
        levels = self.logic.levelReports(segmentation)
        self.state.level_rows = level_rows(levels)
        l3 = levels.get("L3")
        self.state.plot_svg = area_plot_svg(table, l3_z_mm=l3.get("z_mm") if l3 else None)
        self.state.levels_png = self._levels_picture(segmentation)
        self.state.slices_csv = table_csv(table)
        self.state.levels_csv = levels_csv(levels)
        self.state.case_name = self.volume.GetName() if self.volume is not None else "ct"
        if l3 and "SMA_cm2" in l3:
            how = "set by hand" if l3["source"] == "manual" else f"auto, {l3['confidence']}"
            smi = f", SMI {l3['SMI_cm2_m2']:.1f} cm²/m²" if "SMI_cm2_m2" in l3 else ""
            self.state.l3_text = (f"L3 slice {l3['slice']} ({how}): SMA {l3['SMA_cm2']:.1f} cm², "
                                  f"SMD {l3['SMD_HU']:.1f} HU{smi}, SAT {l3['SAT_cm2']:.1f} cm², VAT {l3['VAT_cm2']:.1f} cm²")
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

    def window_preset(self, name):
        self._guarded(lambda: self.logic.setWindowPreset(self.volume, str(name)))
        self.state.false_colour = False

    def _on_display_changed(self, **_):
        segmentation = self.logic.segmentationForVolume(self.volume) if self.volume is not None else None
        if segmentation is not None:
            self._guarded(lambda: self._apply_display(segmentation))

    def _apply_display(self, segmentation):
        s = self.state
        self.logic.setSegmentDisplay(segmentation, opacity=float(s.seg_opacity), fill=bool(s.seg_fill),
                                     outline=bool(s.seg_outline),
                                     visible={NAMES[k]: bool(s[f"show_{NAMES[k]}"]) for k in LABELS})

    def apply_patient(self, height_m="", weight_kg="", sex=""):
        self.state.update({"height_m": height_m, "weight_kg": weight_kg, "sex": sex})
        self._guarded(self._apply_patient)

    def _apply_patient(self):
        segmentation, table = self.logic.resultsForVolume(self.volume)
        patient = self.logic.setPatient(segmentation, self.state.height_m, self.state.weight_kg, self.state.sex)
        self._refresh_tables(segmentation, table)
        given = ", ".join(f"{k} {patient[k]}" for k in ("height_m", "weight_kg", "sex") if k in patient) or "none"
        self.state.status = f"Patient data: {given}."

    def jump_to_slice(self, k):
        self._guarded(lambda: self.logic.jumpToSlice(self.volume, int(k)))

    def report_file(self, kind):
        """The one-page report of the result as it is now, for the page to download (PNG or PDF)."""
        files = []
        self._guarded(lambda: files.extend(self.logic.reportFiles(self.volume, self.logic.segmentationForVolume(
            self.volume), self.state.case_name)))
        if not files:
            return ""
        self.state.status = f"Report ({kind.upper()}) of the result as it is now."
        return self.server.protocol.addAttachment(files[1] if kind == "pdf" else files[0])

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
    def footer_text(self) -> str:
        from AdiposeSegLib import __version__
        from AdiposeSegLib.model.model_card import default_model_dir, read_card

        try:
            card = read_card(self.logic.model_dir or default_model_dir())
            model = f"model {card.name} {card.version}"
        except AdiposeSegError:
            model = "no model found"
        return (f"AdiposeSeg {__version__} · {model} · code BSD 3-Clause; the bundled model's weights for "
                "non-commercial use only · not a medical device")

def default_dataset_dir() -> str:
    return os.path.join(os.path.expanduser("~"), "AdiposeSegGroundTruth")


def ensure_writable(folder: str) -> str:
    Path(folder).mkdir(parents=True, exist_ok=True)
    return folder
