"""The browser app (issue 11) in a real browser: Debian's Chromium driven by Playwright against
`adiposeseg web --demo`, rendering Slicer's views offscreen with Mesa. Assertions count the tissue
colours in each view (not pixel-exact screenshots: Mesa versions differ)."""
import csv
import io
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trame_slicer", reason="trame-slicer[standalone] is part of the test requirements")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is part of the test requirements")

from AdiposeSegWeb.colours import tissue_colour_counts  # noqa: E402

CHROMIUM = os.environ.get("ADIPOSESEG_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
SHOTS = os.environ.get("ADIPOSESEG_SCREENSHOTS")   # a folder: keep the page's screenshots (for docs/)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def web(tmp_path_factory, real_ct_dir, deidentified_dicom):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    base = tmp_path_factory.mktemp("web")
    roots, dataset, outside = base / "data", base / "dataset", base / "outside"
    roots.mkdir()
    outside.mkdir()
    (outside / "secret.nrrd").write_text("not for the browser")
    (roots / "escape.nrrd").symlink_to(outside / "secret.nrrd")
    port = _free_port()
    env = {**os.environ, "XDG_CACHE_HOME": str(base / "cache"), "VTK_DEFAULT_OPENGL_WINDOW": "vtkEGLRenderWindow"}
    process = subprocess.Popen([sys.executable, "-m", "AdiposeSegLib", "web", "--demo", "--data-root", str(roots),
                                "--data-root", str(real_ct_dir / "totalsegmentator-example"),
                                "--data-root", str(deidentified_dicom(("PatientBirthDate", "AccessionNumber"))),
                                "--dataset", str(dataset), "--port", str(port), "--device", "cpu", "--upload-limit-mb", "4"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    lines = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if line.startswith("adiposeseg web: http://") or process.poll() is not None:
            break
    if process.poll() is not None:
        pytest.fail("the web app did not start:\n" + "".join(lines))
    url = re.search(r"(http://\S+)", lines[-1]).group(1)
    time.sleep(1.0)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(url)
        page.wait_for_selector("#segment-button", timeout=60000)
        yield {"page": page, "dataset": dataset, "roots": roots, "outside": outside, "log": lines, "url": url,
               "port": port, "browser": browser, "dicom": deidentified_dicom(("PatientBirthDate", "AccessionNumber"))}
        browser.close()
    process.terminate()
    process.wait(10)


def _shot(page, name):
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


def _colour_counts(png: bytes) -> dict:
    return tissue_colour_counts(png)


def _views(page):
    return page.locator("img.image-display-area")


def _counts(page):
    return [_colour_counts(_views(page).nth(i).screenshot()) for i in range(_views(page).count())]


def _wait_for(page, condition, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        page.wait_for_timeout(300)
    return condition()


def _table_total(page, column):
    header = [c.strip().split("\n")[0] for c in page.locator("#slices-table thead th").all_inner_texts()]
    index = header.index(column)
    rows = page.locator("#slices-table tbody tr")
    return sum(float(rows.nth(i).locator("td").nth(index).inner_text()) for i in range(rows.count()))


def test_segment_edit_update_save_in_the_browser(web):
    page = web["page"]
    assert _views(page).count() == 3                       # axial, coronal, sagittal
    before = _counts(page)
    assert all(c["SAT"] < 20 and c["VAT"] < 20 for c in before), before   # the plain CT: no tissue colours

    page.click("#segment-button")
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Done')", timeout=180000)
    assert page.evaluate("() => window.trame.state.get('progress')") == 100   # not left at 94% (issue 26)
    # every view re-renders on its own after "Done" (the coronal and sagittal ones reset their cameras
    # later): wait until all three show the tissues, not the axial one alone
    after = _wait_for(page, lambda: (lambda c: c if c[0]["SAT"] > 500 and all(v["SAT"] > 20 and v["VAT"] > 20 for v in c[1:])
                                     else None)(_counts(page))) or _counts(page)
    _shot(page, "web_after_segment")
    axial = after[0]
    assert axial["SAT"] > 500 and axial["VAT"] > 500 and axial["Muscle"] > 500, after
    assert all(c["SAT"] > 20 and c["VAT"] > 20 for c in after[1:]), after   # coronal and sagittal show them too
    sat_area = _table_total(page, "SAT")
    assert sat_area > 0

    # erase SAT with the mouse: the Erase effect of Slicer's segment editor, dragged across the anterior wall
    page.click("#edit-tab")                               # SAT, the first segment, is the active one
    page.locator("button:has(i.mdi-eraser)").first.click()
    view = _views(page).nth(0)
    box = view.bounding_box()
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(view.screenshot())).convert("RGB")).astype(int)
    red = (image[..., 0] > 150) & (image[..., 1] < 110) & (image[..., 2] < 110)
    rows, cols = np.nonzero(red)
    top = rows < np.percentile(rows, 10)                  # the anterior SAT band
    y, x = float(np.median(rows[top])), float(np.median(cols[top]))
    scale = box["width"] / image.shape[1]
    page.mouse.move(box["x"] + (x - 60) * scale, box["y"] + y * scale)
    page.mouse.down()
    for step in range(1, 25):
        page.mouse.move(box["x"] + (x - 60 + 5 * step) * scale, box["y"] + y * scale)
    page.mouse.up()
    erased = _wait_for(page, lambda: (lambda c: c if c["SAT"] < axial["SAT"] - 100 else None)(_colour_counts(view.screenshot())))
    _shot(page, "web_after_erase")
    assert erased and erased["SAT"] < axial["SAT"] - 100, (axial, erased)
    # Undo gives the view back as it was, fill as opaque as before (issue 26: one Undo made every fill
    # more opaque); Redo puts the erase back
    page.locator("button:has(i.mdi-undo)").first.click()
    undone = _wait_for(page, lambda: (lambda c: c if c["SAT"] > axial["SAT"] - 50 else None)(_colour_counts(view.screenshot())))
    assert undone and all(abs(undone[t] - axial[t]) <= 0.03 * axial[t] + 20 for t in ("SAT", "VAT", "Muscle")), (axial, undone)
    page.locator("button:has(i.mdi-redo)").first.click()
    assert _wait_for(page, lambda: _colour_counts(view.screenshot())["SAT"] < axial["SAT"] - 100)

    page.click("#panel-tab")
    page.click("#update-button")
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Statistics updated')", timeout=30000)
    assert _table_total(page, "SAT") < sat_area

    page.click("#save-button")
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Saved')", timeout=60000)
    with open(web["dataset"] / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and rows[0]["edited"] == "yes"
    for key in ("image", "segmentation", "prediction"):
        assert (web["dataset"] / rows[0][key]).is_file()
    assert re.search(r"saved case demo_phantom_ct", page.inner_text("#saved"))


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside/secret.nrrd", "escape.nrrd"])
def test_paths_outside_the_data_roots_are_refused(web, name):
    page = web["page"]
    page.click("#panel-tab")
    page.evaluate("name => window.trame.state.set('scan', name)", name)
    page.click("#open-button")
    page.wait_for_selector("#error", timeout=10000)
    assert "outside the data folders" in page.inner_text("#error")
    assert "Traceback" not in page.content()


def test_uploads_are_limited_and_checked_like_any_input(web, example_ct_sm, tmp_path):
    import SimpleITK as sitk

    page = web["page"]
    upload = page.locator("input[type=file]").first
    too_big = tmp_path / "big.nrrd"
    too_big.write_bytes(os.urandom(5 * 1024 * 1024))
    upload.set_input_files(str(too_big))
    page.wait_for_function("document.querySelector('#error') && document.querySelector('#error').innerText.includes('limit')",
                           timeout=30000)
    assert "over this server's limit of 4 MB" in page.inner_text("#error")
    junk = tmp_path / "notes.nrrd"
    junk.write_text("these are notes, not a CT")
    upload.set_input_files(str(junk))
    page.wait_for_function("document.querySelector('#error') && document.querySelector('#error').innerText.includes('notes')",
                           timeout=30000)
    assert "Traceback" not in page.content()
    ct = tmp_path / "uploaded_ct.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(example_ct_sm)), str(ct), useCompression=True)
    upload.set_input_files(str(ct))
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('uploaded_ct.nrrd')", timeout=30000)
    assert not page.locator("#error").count()


def test_cancel_leaves_the_views_unchanged(web):
    page = web["page"]   # the uploaded CT from the test above, not yet segmented
    page.click("#segment-button")
    page.wait_for_function("document.querySelector('#segment-button').innerText.includes('CANCEL') || "
                           "document.querySelector('#segment-button').innerText.includes('Cancel')", timeout=10000)
    page.click("#segment-button")
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Cancelled')", timeout=30000)
    counts = _counts(page)
    assert all(c["SAT"] < 20 and c["VAT"] < 20 for c in counts), counts


def test_real_ct_opens_on_l3_with_the_levels_table(web, example_ct):
    page = web["page"]
    page.click("#panel-tab")
    page.evaluate("name => window.trame.state.set('scan', name)", str(example_ct))
    page.click("#open-button")
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('example_ct')", timeout=30000)
    page.click("#segment-button")
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Done')", timeout=180000)
    text = page.inner_text("#l3")
    match = re.match(r"L3 slice (\d+) \(auto, high\)", text)
    assert match and abs(int(match.group(1)) - 74) <= 1, text
    first = page.locator("#levels-table tbody tr").first.locator("td").all_inner_texts()
    assert first[:2] == ["L3", match.group(1)]
    counts = _wait_for(page, lambda: (lambda c: c if c[0]["Muscle"] > 500 else None)(_counts(page)))
    assert counts[0]["SAT"] > 500 and counts[0]["VAT"] > 500, counts
    picture = page.locator("#levels-picture")        # issue 23 D: the levels picture in the page
    assert picture.get_attribute("src").startswith("data:image/png;base64,")
    assert page.evaluate("() => document.querySelector('#levels-picture').naturalHeight") == 480
    plot = page.inner_html("#plot")                   # issue 26: ticks, head/feet, the L3 line, the IMAT curve
    assert 'id="plot-l3"' in plot and 'data-tissue="IMAT"' in plot and "feet" in plot and "head" in plot
    _shot(page, "web_real_ct_l3")


def _axial_png(page):
    return _views(page).nth(0).screenshot()


def _set(page, **values):
    for key, value in values.items():
        page.evaluate("([k, v]) => window.trame.state.set(k, v)", [key, value])


def test_segments_show_and_hide_with_opacity_fill_and_outline(web):
    """Issue 26 E: on the main tab, each tissue on or off, the fill's opacity, fill and outline."""
    page = web["page"]   # the example CT segmented by the test above
    shown = _colour_counts(_axial_png(page))
    _set(page, show_SAT=False)
    hidden = _wait_for(page, lambda: (lambda c: c if c["SAT"] < 0.05 * shown["SAT"] else None)(_colour_counts(_axial_png(page))))
    assert hidden and hidden["VAT"] > 0.8 * shown["VAT"] and hidden["Muscle"] > 0.8 * shown["Muscle"], (shown, hidden)
    _set(page, show_SAT=True, seg_fill=False)   # outlines only: far fewer coloured pixels, every tissue still there
    outlined = _wait_for(page, lambda: (lambda c: c if 0.1 * shown["SAT"] < c["SAT"] < 0.7 * shown["SAT"] else None)(_colour_counts(_axial_png(page))))
    assert outlined and all(0 < outlined[t] < shown[t] for t in ("SAT", "VAT", "Muscle")), (shown, outlined)
    _set(page, seg_fill=True, seg_outline=False, seg_opacity=0.0)   # nothing drawn at all
    none = _wait_for(page, lambda: (lambda c: c if all(c[t] < 0.02 * shown[t] + 20 for t in c) else None)(
        _colour_counts(_axial_png(page))))     # (the L3 mark, a small green disc, stays)
    assert none, (shown, _colour_counts(_axial_png(page)))
    _set(page, seg_outline=True, seg_opacity=0.4)
    assert _wait_for(page, lambda: _colour_counts(_axial_png(page))["SAT"] > 0.9 * shown["SAT"])


def test_window_presets_and_the_cursor_readout(web, example_ct):
    import SimpleITK as sitk

    from AdiposeSegLib.reading.orientation import input_axial_index

    page = web["page"]
    _set(page, seg_opacity=0.0, seg_outline=False)
    brightness = {}
    for name in ("soft-tissue", "fat", "bone"):
        before = _axial_png(page)
        page.click(f"#window-{name}")
        _wait_for(page, lambda: _axial_png(page) != before, timeout=10)
        from PIL import Image

        brightness[name] = float(np.asarray(Image.open(io.BytesIO(_axial_png(page))).convert("L")).mean())
    assert brightness["fat"] > brightness["soft-tissue"] > brightness["bone"], brightness   # -250..50, -160..240, -450..1050
    _set(page, seg_opacity=0.4, seg_outline=True)
    page.click("#window-soft-tissue")

    box = _views(page).nth(0).bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5)
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.55)
    text = _wait_for(page, lambda: page.inner_text("#cursor"))
    match = re.match(r"cursor: slice (\d+), voxel \((\d+), (\d+)\), (-?\d+) HU", text)
    assert match, text
    k, i, j, hu = map(int, match.groups())
    axial = re.search(r"Axial (\d+)/(\d+)", page.inner_text("#view-slices"))
    assert axial and int(axial.group(1)) == k                      # the cursor lies on the axial view's slice
    image = sitk.ReadImage(str(example_ct))
    assert int(axial.group(2)) == image.GetSize()[2] - 1
    value = float(sitk.GetArrayViewFromImage(image)[input_axial_index(image, k), j, i])
    assert abs(value - hu) <= 0.5, (value, hu)                    # the HU of that very voxel


def test_patient_data_give_the_indices_and_the_report_downloads(web):
    from PIL import Image

    page = web["page"]
    page.fill("#height", "1.75")     # typed, as a user does
    page.fill("#weight", "80")
    _set(page, sex="M")
    page.wait_for_function("window.trame.state.get('height_m') === '1.75' && window.trame.state.get('weight_kg') === '80'",
                           timeout=10000)
    page.click("#apply-patient")
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Patient data: height_m 1.75')",
                           timeout=30000)
    cells = page.locator("#levels-table tbody tr").first.locator("td").all_inner_texts()
    headers = [h.replace("\n", " ") for h in page.locator("#levels-table thead th").all_inner_texts()]
    assert headers == ["level", "slice", "confidence", "SMA cm²", "SMD HU", "SMI cm²/m²", "IMAT cm²", "SAT cm²", "VAT cm²"]
    row = dict(zip(headers, cells))
    assert row["level"] == "L3" and float(row["SMI cm²/m²"]) == pytest.approx(float(row["SMA cm²"]) / 1.75 ** 2, abs=0.06)
    assert "SMI" in page.inner_text("#l3")
    with page.expect_download() as download:
        page.click("#download-levels")
    levels = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert levels[0]["level"] == "L3" and float(levels[0]["BMI_kg_m2"]) == pytest.approx(80 / 1.75 ** 2)

    with page.expect_download() as download:
        page.click("#download-report-png")
    assert download.value.suggested_filename == "example_ct_report.png"
    report = Image.open(download.value.path())
    assert report.width == 1400 and report.height > 600
    with page.expect_download() as download:
        page.click("#download-report-pdf")
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF")
    drawer = page.locator("nav").first.bounding_box()            # at a laptop's 1366 x 768 every column fits
    page.set_viewport_size({"width": 1366, "height": 768})
    try:
        last = page.locator("#levels-table thead th").last.bounding_box()
        drawer = page.locator("nav").first.bounding_box()
        assert last["x"] + last["width"] <= drawer["x"] + drawer["width"], (last, drawer)
        _shot(page, "web_review_1366")
    finally:
        page.set_viewport_size({"width": 1600, "height": 900})


def test_a_table_row_moves_the_views_there(web):
    page = web["page"]
    rows = page.locator("#slices-table tbody tr")
    target = rows.nth(5)
    k = int(target.locator("td").first.inner_text())
    target.click()
    assert _wait_for(page, lambda: f"Axial {k}/" in page.inner_text("#view-slices")), page.inner_text("#view-slices")
    level = page.locator("#levels-table tbody tr").nth(2)
    k = int(level.locator("td").nth(1).inner_text())
    level.click()
    assert _wait_for(page, lambda: f"Axial {k}/" in page.inner_text("#view-slices")), page.inner_text("#view-slices")


def test_set_l3_from_the_axial_view_is_kept_as_manual(web):
    page = web["page"]   # the example CT from the test above, views on L3
    page.click("#set-l3-button")
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('L3 set by hand')", timeout=30000)
    assert re.match(r"L3 slice \d+ \(set by hand\)", page.inner_text("#l3"))
    assert page.locator("#levels-table tbody tr").first.locator("td").nth(2).inner_text() == "by hand"
    page.click("#save-button")
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Saved')", timeout=60000)
    with open(web["dataset"] / "manifest.csv", newline="") as fh:
        row = list(csv.DictReader(fh))[-1]
    assert row["l3_source"] == "manual" and row["case_id"].startswith("example_ct")


def test_a_dicom_series_exports_seg_and_sr_and_replaces_with_a_predecessor(web):
    """Issue 21 G: the browser exports the segmentation of a DICOM-loaded CT through the engine's writers."""
    import pydicom

    page, series = web["page"], web["dicom"]
    page.evaluate("name => window.trame.state.set('scan', name)", str(series))
    page.click("#open-button")
    page.wait_for_function(f"document.querySelector('#status').innerText.startsWith('{series.name}')", timeout=30000)
    page.click("#segment-button")
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Done')", timeout=180000)
    page.click("#export-dicom-button")
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Exported')", timeout=60000)
    out = web["dataset"] / "dicom-exports"
    seg = pydicom.dcmread(out / f"{series.name}_seg.dcm")
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in series.iterdir()}
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == sources and seg.PatientBirthDate == "" and seg.AccessionNumber == ""
    first_sr = pydicom.dcmread(out / f"{series.name}_sr.dcm")

    page.click("#export-dicom-button")   # a second export does not replace the first unasked
    page.wait_for_function("(document.querySelector('#error')?.innerText || '').includes('already exists')", timeout=60000)
    page.click("#replace-export-button")
    page.wait_for_function("document.querySelector('#status').innerText.startsWith('Exported')", timeout=60000)
    sr = pydicom.dcmread(out / f"{series.name}_sr.dcm")
    predecessor = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert predecessor.ReferencedSOPInstanceUID == first_sr.SOPInstanceUID
    assert sr.SeriesNumber != first_sr.SeriesNumber


def test_the_tables_download_as_csv(web):
    """Issue 26: the per-slice and levels tables leave the page as CSV, with every column and units."""
    page = web["page"]   # the 20-slice DICOM series segmented by the export test above
    with page.expect_download() as download:
        page.click("#download-slices")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert download.value.suggested_filename == f"{web['dicom'].name}_slices.csv" and len(rows) == 20
    assert {"slice", "z_mm", "SAT_area_cm2", "Muscle_mean_HU"} <= set(rows[0])
    with page.expect_download() as download:
        page.click("#download-levels")
    header = Path(download.value.path()).read_text().splitlines()[0].split(",")
    assert header[0] == "level" and {"slice", "confidence", "SMA_cm2", "SMD_HU", "SMI_cm2_m2"} <= set(header)


def test_the_footer_names_the_tool_its_model_and_licence(web):
    text = web["page"].inner_text("#footer")
    assert text.startswith("AdiposeSeg ") and "adiposeseg-unet-default" in text and "BSD 3-Clause" in text
    assert "Kitware" not in web["page"].inner_text("footer")


# -- security (issue 22): the port is reachable from any page the user's browser opens
def _run_async(coroutine):
    """Playwright's sync API keeps an event loop in this thread: run a raw client in another."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _open_error(page, name):
    page.evaluate("() => window.trame.state.set('error', '')")
    page.evaluate("name => window.trame.state.set('scan', name)", str(name))
    page.click("#open-button")
    page.wait_for_function("(document.querySelector('#error')?.innerText || '').length > 0", timeout=30000)
    return page.inner_text("#error")


def _upload_error(page, path, needle, timeout=30000):
    """Upload `path` through the page's file input; the error the page shows once it mentions `needle`."""
    page.evaluate("() => window.trame.state.set('error', '')")
    page.locator("input[type=file]").first.set_input_files(str(path))
    page.wait_for_function(f"(document.querySelector('#error')?.innerText || '').includes('{needle}')", timeout=timeout)
    return page.inner_text("#error")


def test_a_folder_of_symlinks_to_outside_files_is_refused(web, dicom_j2k):
    import shutil

    outside_series = web["outside"] / "series"
    shutil.copytree(dicom_j2k, outside_series)
    linked = web["roots"] / "linked"
    linked.mkdir()
    for f in outside_series.iterdir():
        (linked / f.name).symlink_to(f)
    message = _open_error(web["page"], linked)
    assert "lies outside the data folders" in message
    assert not any((web["dataset"] / "images").glob("linked*")) if (web["dataset"] / "images").exists() else True


def test_a_detached_header_pointing_outside_is_refused(web, example_ct_sm):
    import SimpleITK as sitk

    sitk.WriteImage(sitk.ReadImage(str(example_ct_sm)), str(web["outside"] / "secret.nhdr"))
    header = (web["outside"] / "secret.nhdr").read_text().replace("data file: secret.raw", "data file: ../outside/secret.raw")
    (web["roots"] / "evil.nhdr").write_text(header)
    assert "data file: ../outside/secret.raw" in header
    assert "lies outside the data folders" in _open_error(web["page"], web["roots"] / "evil.nhdr")


def test_an_uploaded_header_naming_an_absolute_outside_file_is_refused(web, tmp_path):
    page = web["page"]
    mhd = tmp_path / "evil.mhd"
    mhd.write_text("ObjectType = Image\nNDims = 3\nDimSize = 64 64 4\nElementSpacing = 1 1 1\nElementType = MET_SHORT\n"
                   f"ElementDataFile = {web['outside'] / 'secret.raw'}\n")
    assert len(mhd.read_bytes()) < 300
    assert "lies outside the upload" in _upload_error(page, mhd, "outside")


def test_an_upload_declaring_a_small_size_is_counted_as_it_arrived(web):
    """4.5 MB sent in chunks by a client that declares 1 byte, under a 4 MB limit: refused before anything is written."""
    page = web["page"]
    page.evaluate("() => window.trame.state.set('error', '')")
    page.evaluate("""() => {
        const chunks = Array.from({length: 9}, () => new Uint8Array(512 * 1024).buffer);
        window.trame.trigger('upload', [[{name: 'big.nrrd', size: 1, type: '', content: chunks}]]);
    }""")
    page.wait_for_function("(document.querySelector('#error')?.innerText || '').includes('limit')", timeout=30000)
    assert "over this server's limit of 4 MB" in page.inner_text("#error")


def test_a_gzip_bomb_is_refused_before_it_is_inflated(web, tmp_path):
    import gzip
    import struct

    header = bytearray(352)
    header[0:4] = struct.pack("<i", 348)
    header[40:56] = struct.pack("<8h", 3, 512, 512, 400, 1, 1, 1, 1)
    header[70:72] = struct.pack("<h", 4)          # int16
    header[72:74] = struct.pack("<h", 16)
    header[76:108] = struct.pack("<8f", 1, 0.8, 0.8, 1, 0, 0, 0, 0)
    header[108:112] = struct.pack("<f", 352)
    header[344:348] = b"n+1\0"
    bomb = tmp_path / "bomb.nii.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        fh.write(bytes(header))
        zeros = bytes(1 << 20)
        for _ in range(200):                       # 200 MB of voxels in about 200 KB
            fh.write(zeros)
    assert bomb.stat().st_size < 1024 * 1024
    assert "over 16 times this server's upload limit" in _upload_error(web["page"], bomb, "inflates", timeout=60000)


def test_a_malformed_request_gets_one_line_not_a_traceback(web):
    """A trigger called with arguments it does not take: the page gets one line, the log the traceback."""
    page = web["page"]
    reply = page.evaluate("""async () => {
        try { await window.trame.trigger('upload', [1, {x: 2}, 3]); return 'no error'; }
        catch (e) { return JSON.stringify(e); }
    }""")
    assert "the details are in the server's log" in reply
    assert "Traceback" not in reply and ".py" not in reply and "site-packages" not in reply


def test_a_cross_origin_websocket_is_refused(web):
    import aiohttp

    async def attempt(origin):
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(f"http://127.0.0.1:{web['port']}/ws", headers={"Origin": origin}):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    assert _run_async(attempt("http://evil.example")) == 403
    assert _run_async(attempt(f"http://127.0.0.1:{web['port']}")) == 403   # right origin, but no session cookie


def test_a_second_browser_session_is_refused_and_says_so(web):
    other = web["browser"].new_context()
    page = other.new_page()
    response = page.goto(web["url"])
    assert response.status == 409 and "in use by another browser session" in page.inner_text("#busy")
    other.close()
    first = web["page"]                      # the first session still works
    first.evaluate("() => window.trame.state.set('error', '')")
    assert "outside the data folders" in _open_error(first, "/etc/passwd")


def test_the_secret_is_per_launch_and_the_default_one_is_refused(web):
    import aiohttp

    secret = re.search(r"secret=([^&\s]+)", web["url"]).group(1)
    assert len(secret) >= 24 and secret != "wslink-secret"
    cookies = {c["name"]: c["value"] for c in web["page"].context.cookies()}

    async def hello(token):
        from wslink.chunking import generate_chunks
        import msgpack

        base = f"http://127.0.0.1:{web['port']}"
        async with aiohttp.ClientSession(cookies=cookies) as session:
            async with session.ws_connect(f"{base}/ws", headers={"Origin": base}) as ws:
                message = msgpack.packb({"wslink": "1.0", "id": "system:c0:0", "method": "wslink.hello",
                                         "args": [{"secret": token}], "kwargs": {}})
                for chunk in generate_chunks(message, 1 << 20):
                    await ws.send_bytes(chunk)
                reply = await ws.receive(timeout=10)
                return bytes(reply.data)

    assert b"Authentication failed" in _run_async(hello("wslink-secret"))
