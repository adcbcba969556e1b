"""`adiposeseg web`: start the page (localhost unless told otherwise)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def run_web(paths: list[str], data_roots: list[str], host: str = "127.0.0.1", port: int = 8080, demo: bool = False,
            dataset_dir: str | None = None, model_dir: str | None = None, device: str = "auto", encoder: str = "png",
            upload_limit_mb: float = 512.0, open_browser: bool = False) -> int:
    # offscreen rendering with Mesa, set before VTK is imported; uploads travel over the websocket
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    os.environ.setdefault("TRAME_WS_MAX_MSG_SIZE", str(int((upload_limit_mb + 16) * 1024 ** 2)))
    from .app import AdiposeSegWeb, default_dataset_dir, ensure_writable
    from .paths import DataRoots

    roots = list(data_roots)
    for path in paths:   # a CT named on the command line: its folder becomes a data root
        p = Path(path).resolve()
        roots.append(str(p if p.is_dir() else p.parent))
    if demo:
        roots.append(str(_demo_folder()))
    app = AdiposeSegWeb(DataRoots(roots), ensure_writable(dataset_dir or default_dataset_dir()), model_dir, device, encoder,
                        upload_limit_mb)
    if paths:
        app.state.scan = str(Path(paths[0]).resolve())
    elif demo:
        app.state.scan = str(_demo_folder() / "demo_phantom_ct.nrrd")
    if app.state.scan:
        app.open_scan(app.state.scan)
    if host not in LOCAL_HOSTS:
        print(f"adiposeseg web: WARNING: listening on {host}, reachable from other machines; there is no login, "
              "anyone who has the URL below (its secret) can open the CTs in the data folders", file=sys.stderr)
    url = f"http://{'127.0.0.1' if host in LOCAL_HOSTS else host}:{port}/?secret={app.guard.secret}"
    if open_browser:   # trame's own opener would leave the secret out
        import webbrowser

        app.ctrl.on_server_ready.add(lambda **_: webbrowser.open(url))
    print(f"adiposeseg web: {url}  (data folders: "
          f"{', '.join(str(r) for r in app.roots.roots) or 'none'}; ground truth into {app.dataset_dir})", flush=True)
    app.server.start(host=host, port=port, open_browser=False, show_connection_info=False)
    return 0


def _demo_folder() -> Path:
    """The bundled demo's phantom CT, generated once into the user's cache."""
    import SimpleITK as sitk

    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "adiposeseg" / "demo"
    ct = folder / "demo_phantom_ct.nrrd"
    if not ct.is_file():
        from training.phantom import phantom_volume

        folder.mkdir(parents=True, exist_ok=True)
        image, _ = phantom_volume(seed=2026, size=512, slices=16, spacing=0.85, slice_thickness=2.5)
        sitk.WriteImage(image, str(ct), useCompression=True)
    return folder
