"""The page's layout: toolbar (CT, open, upload, what the cursor points at), the AdiposeSeg and Edit
tabs, the three slice views, the footer. Every control calls an AdiposeSegWeb action."""
from __future__ import annotations

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_slicer.app.ui.segmentation import SegmentEditorUI
from trame_vuetify.ui.vuetify3 import SinglePageWithDrawerLayout

from AdiposeSegLib.scene.display import WINDOW_PRESETS
from AdiposeSegLib.tissues import COLORS, LABELS, NAMES

from .tables import LEVEL_HEADERS, SLICE_HEADERS

SMALL_TABLE = "font-size: 12px;"
CELL = "padding: 0 4px; height: 26px; white-space: nowrap;"


def upload_script(limit_bytes: int) -> str:
    """Too big is said before a byte is sent (the server also refuses any message over the limit)."""
    limit_mb = f"{limit_bytes / 1024 ** 2:.0f}"
    total = "Array.from($event.target.files).reduce((a, f) => a + f.size, 0)"
    return (f"{total} > {limit_bytes} ? (error = 'the upload is ' + Math.round({total} / 1048576) + "
            f"' MB, over this server\\'s limit of {limit_mb} MB; put the scan in a data folder instead') : "
            "trigger('upload', [$event.target.files])")


def build_page(app) -> SinglePageWithDrawerLayout:
    with SinglePageWithDrawerLayout(app.server, theme="dark") as ui:
        ui.title.set_text("AdiposeSeg")
        ui.title.style = "flex: 0 0 auto;"
        ui.footer.clear()   # the template's "Powered by trame" / "(c) Kitware" is not this tool's
        with ui.footer:
            html.Div(app.footer_text(), id="footer", classes="text-caption")
        with ui.toolbar:
            html.Div("{{ views_text }}", id="view-slices", classes="text-caption ml-4", style="white-space: nowrap;")
            html.Div("{{ cursor_text }}", id="cursor", classes="text-caption ml-4", style="white-space: nowrap;")
            v3.VSpacer()
            v3.VSelect(v_model=("scan",), items=("scans",), label="CT (inside the data folders)", density="compact",
                       hide_details=True, style="max-width: 400px;", id="scan-select")
            v3.VBtn("Open", click=app.open_scan, id="open-button", classes="ml-2", disabled=("running",))
            v3.VFileInput(multiple=True, hide_input=True, density="compact", prepend_icon="mdi-upload", id="upload",
                          hide_details=True, style="max-width: 48px;", disabled=("running",),
                          change=upload_script(app.upload_limit))
        with ui.drawer:
            ui.drawer.width = 440
            with v3.VTabs(v_model=("tab", "adiposeseg"), density="compact"):
                v3.VTab("AdiposeSeg", value="adiposeseg", id="panel-tab")
                v3.VTab("Edit", value="edit", disabled=("!has_result",), id="edit-tab")
            with v3.VWindow(v_model=("tab",)):
                with v3.VWindowItem(value="adiposeseg"):
                    _panel(app)
                with v3.VWindowItem(value="edit"):
                    app.editor_ui = SegmentEditorUI(style="height: calc(100vh - 160px);")
                    with html.Div(classes="d-flex justify-center"):
                        app.editor_ui.build_undo_redo_buttons()
                    app.editor.set_ui(app.editor_ui)
        with ui.content:
            app.layout_manager.initialize_layout_grid(ui)
    return ui


def _panel(app):
    with html.Div(classes="pa-3"):
        v3.VAlert(text=("error",), type="error", v_if=("error",), density="compact", id="error", classes="mb-2")
        with html.Div(classes="d-flex align-center"):
            v3.VBtn("{{ running ? 'Cancel' : 'Segment' }}", click=app.segment, id="segment-button",
                    color=("running ? 'warning' : 'primary'",), disabled=("!loaded",))
            v3.VSwitch(v_model=("false_colour",), label="False-colour CT", hide_details=True, density="compact",
                       classes="ml-4", update_modelValue=(app.set_false_colour, "[$event]"))
        with html.Div(classes="d-flex align-center mt-1", v_if=("loaded",)):
            html.Span("Window:", classes="text-caption mr-1")
            for name in WINDOW_PRESETS:
                v3.VBtn(name, size="x-small", variant="outlined", classes="mr-1", id=f"window-{name.replace(' ', '-')}",
                        click=(app.window_preset, f"['{name}']"))
        v3.VProgressLinear(model_value=("progress",), height=6, classes="my-2", id="progress")
        html.Div("{{ status }}", id="status", classes="text-body-2")
        html.Div("{{ l3_text }}", id="l3", classes="text-body-2 mt-1", v_if=("has_result",))
        with html.Div(v_if=("has_result",)):
            _display_controls(app)
            _patient_fields(app)
        with html.Div(classes="d-flex flex-wrap mt-2", v_if=("has_result",)):
            v3.VBtn("Update statistics", click=app.update_statistics, id="update-button", size="small", classes="mr-2 mb-1")
            v3.VBtn("Save as ground truth", click=app.save_ground_truth, id="save-button", size="small", classes="mr-2 mb-1")
            v3.VBtn("Export DICOM SEG + SR", click=(app.export_dicom, "[false]"), id="export-dicom-button",
                    size="small", classes="mb-1", v_if=("is_dicom",))
        v3.VBtn("Replace the earlier export", click=(app.export_dicom, "[true]"), id="replace-export-button",
                size="small", color="warning", classes="mt-2", v_if=("offer_replace",))
        v3.VBtn("Set L3 from the axial view", click=app.set_l3, id="set-l3-button", size="small", classes="mt-1",
                v_if=("has_result",))
        html.Div("{{ saved }}", id="saved", classes="text-caption mt-1")
        html.Div("Dataset folder: {{ dataset_dir }}", classes="text-caption")
        html.Div(v_html=("plot_svg",), classes="mt-2", id="plot")
        with html.Div(classes="d-flex flex-wrap mt-1", v_if=("has_result",)):
            for ident, label, click in (
                    ("download-slices", "Slices CSV", "utils.download(case_name + '_slices.csv', slices_csv, 'text/csv')"),
                    ("download-levels", "Levels CSV", "utils.download(case_name + '_levels.csv', levels_csv, 'text/csv')"),
                    ("download-report-png", "Report PNG",
                     "utils.download(case_name + '_report.png', trigger('report_file', ['png']), 'image/png')"),
                    ("download-report-pdf", "Report PDF",
                     "utils.download(case_name + '_report.pdf', trigger('report_file', ['pdf']), 'application/pdf')")):
                v3.VBtn(label, size="x-small", variant="outlined", id=ident, classes="mr-2 mb-1", click=click)
        html.Img(src=("levels_png",), v_if=("levels_png",), id="levels-picture", style="width: 100%;",
                 classes="mt-2", title="Sagittal cut, coronal bone slab and the L3 slice with the levels found")
        _table("levels-table", "level_rows", "row.level", LEVEL_HEADERS, app.jump_to_slice)
        _table("slices-table", "slice_rows", "row.slice", SLICE_HEADERS, app.jump_to_slice, height=260)


def _display_controls(app):
    with html.Div(classes="d-flex align-center flex-wrap mt-2", id="segment-display"):
        for label in LABELS:
            name = NAMES[label]
            r, g, b = COLORS[label]
            v3.VCheckbox(v_model=(f"show_{name}", True), label=name, density="compact", hide_details=True,
                         color=f"rgb({r},{g},{b})", id=f"show-{name}", classes="mr-1", style="flex: 0 0 auto;")
    with html.Div(classes="d-flex align-center"):
        v3.VSlider(v_model=("seg_opacity", 0.4), min=0, max=1, step=0.05, label="Opacity", density="compact",
                   hide_details=True, id="opacity", style="max-width: 200px;")
        v3.VSwitch(v_model=("seg_fill", True), label="Fill", density="compact", hide_details=True, classes="ml-3",
                   id="fill-switch")
        v3.VSwitch(v_model=("seg_outline", True), label="Outline", density="compact", hide_details=True,
                   classes="ml-3", id="outline-switch")


def _patient_fields(app):
    with html.Div(classes="d-flex align-center mt-1", id="patient"):
        v3.VTextField(v_model=("height_m", ""), label="m", placeholder="height", density="compact", hide_details=True,
                      id="height", style="max-width: 96px;", classes="mr-2", title="Height in metres (for SMI, BMI)")
        v3.VTextField(v_model=("weight_kg", ""), label="kg", placeholder="weight", density="compact", hide_details=True,
                      id="weight", style="max-width: 96px;", classes="mr-2", title="Weight in kg (for BMI and the flags)")
        v3.VSelect(v_model=("sex", ""), items=("['', 'M', 'F']",), label="sex", density="compact", hide_details=True,
                   id="sex", style="max-width: 96px;", classes="mr-2", title="Sex (for the sarcopenia cut-off)")
        # the values travel with the click: the fields' state may reach the server after it
        v3.VBtn("Apply", size="small", click=(app.apply_patient, "[height_m, weight_kg, sex]"), id="apply-patient")


def _table(ident: str, rows: str, key: str, headers, on_click, height=None):
    """A compact table of (key, header) columns; clicking a row moves the views to its slice."""
    with v3.VTable(density="compact", v_if=(f"{rows}.length",), classes="mt-2", id=ident, height=height,
                   fixed_header=height is not None, style=SMALL_TABLE):
        with html.Thead(), html.Tr():
            for _, head in headers:   # the unit on a second line keeps every column in the drawer
                name, _, unit = head.partition(" ")
                with html.Th(style=CELL + " line-height: 1.1;"):
                    html.Div(name)
                    html.Div(unit, classes="text-caption", v_if=(str(bool(unit)).lower(),))
        with html.Tbody(), html.Tr(v_for=f"row in {rows}", key=key, click=(on_click, "[row.slice]"),
                                   style="cursor: pointer;"):
            for column, _ in headers:
                html.Td(f"{{{{ row['{column}'] }}}}", style=CELL)
