"""Timings of the browser app as a user meets them, in a real Chromium (Playwright):

    .venv/bin/python benchmarks/web_benchmark.py [--json OUT]

page ready (the panel is there), first render (the axial view shows the CT), Segment (click to
"Done" on the 512x512x16 demo phantom, child process included), and edit strokes (mouse up to the
erased SAT visible in the view), each measured from the browser side.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "AdiposeSeg"))

from AdiposeSegWeb.colours import tissue_colour_counts  # noqa: E402

CHROMIUM = os.environ.get("ADIPOSESEG_CHROMIUM", "/usr/bin/chromium")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _until(condition, timeout: float, step: float = 0.02):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError("condition not met")


def main() -> int:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json")
    parser.add_argument("--strokes", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="adiposeseg-web-bench-"))
    port = _port()
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache")}
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "AdiposeSegLib", "web", "--demo", "--dataset", str(work / "gt"),
                               "--port", str(port), "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env, cwd=ROOT)
    while not server.stdout.readline().startswith("adiposeseg web: http://"):
        if server.poll() is not None:
            raise SystemExit("the server did not start")
    started = time.perf_counter() - t0
    out = {"server_start_s (demo phantom made, CT opened)": round(started, 2)}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            t0 = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#segment-button")
            out["page_ready_s"] = round(time.perf_counter() - t0, 2)
            view = page.locator("img.image-display-area").first

            def shows_ct():
                if not view.count() or not view.get_attribute("src"):
                    return False
                pixels = np.asarray(Image.open(io.BytesIO(view.screenshot())).convert("L"))
                return pixels.mean() > 20
            _until(shows_ct, 30)
            out["first_render_s (from page load)"] = round(time.perf_counter() - t0, 2)

            t0 = time.perf_counter()
            page.click("#segment-button")
            page.wait_for_function("document.querySelector('#status').innerText.startsWith('Done')", timeout=180000)
            out["segment_s (click to Done, 16 slices 512x512)"] = round(time.perf_counter() - t0, 2)
            _until(lambda: tissue_colour_counts(view.screenshot())["SAT"] > 500, 30)
            out["segment_to_overlay_s"] = round(time.perf_counter() - t0, 2)

            page.click("#edit-tab")
            page.locator("button:has(i.mdi-eraser)").first.click()
            box = view.bounding_box()
            image = np.asarray(Image.open(io.BytesIO(view.screenshot())).convert("RGB")).astype(int)
            red = (image[..., 0] > 150) & (image[..., 1] < 110) & (image[..., 2] < 110)
            rows, cols = np.nonzero(red)
            scale = box["width"] / image.shape[1]
            latencies = []
            for n in range(args.strokes):   # short strokes along the SAT ring, each on fresh SAT
                pick = rows < np.percentile(rows, 10) if n % 2 == 0 else rows > np.percentile(rows, 90)
                y = float(np.median(rows[pick]))
                x = float(np.percentile(cols[pick], 20 + 12 * n))
                before = tissue_colour_counts(view.screenshot())["SAT"]
                page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
                page.mouse.down()
                for step in range(1, 8):
                    page.mouse.move(box["x"] + (x + 3 * step) * scale, box["y"] + y * scale)
                page.mouse.up()
                t0 = time.perf_counter()
                _until(lambda: tissue_colour_counts(view.screenshot())["SAT"] < before - 30, 10)
                latencies.append(time.perf_counter() - t0)
            out["stroke_visible_s (median of strokes, mouse up to erased SAT on screen)"] = round(statistics.median(latencies), 3)
            out["stroke_visible_s (all)"] = [round(v, 3) for v in latencies]
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    out["machine"] = f"{os.cpu_count()} CPU cores, Chromium {CHROMIUM}, Mesa offscreen (EGL), PNG view stream"
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
