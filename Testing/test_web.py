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
    time.sleep(1.0)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("#segment-button", timeout=60000)
        yield {"page": page, "dataset": dataset, "roots": roots, "outside": outside, "log": lines,
               "dicom": deidentified_dicom(("PatientBirthDate", "AccessionNumber"))}
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
    header = [c.strip() for c in page.locator("#slices-table thead th").all_inner_texts()]
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
    after = _wait_for(page, lambda: (lambda c: c if c[0]["SAT"] > 500 else None)(_counts(page)))
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
    _shot(page, "web_real_ct_l3")


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
