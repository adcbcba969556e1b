"""A real Orthanc (Debian's package) and a real `adiposeseg node` process for the node's tests:
each started on free loopback ports with its own storage, and stopped at the end."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before listening:\n{log.read_text() if log else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


class Orthanc:
    def __init__(self, folder: Path, modalities: dict, **extra):
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        config = {"Name": "adiposeseg-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
                  "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": "ORTHANC",
                  "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomCheckCalledAeTitle": False,
                  "DicomModalities": modalities, "DicomAssociationCloseDelay": 0, "SaveJobs": False,
                  "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.is_file() else [],
                  "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, **extra}
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(config))
        self.log = folder / "orthanc.log"
        self.process = None

    def start(self) -> Orthanc:
        tool = shutil.which("Orthanc")
        if tool is None:
            pytest.fail("Orthanc (Debian package orthanc) is part of the test requirements: bash scripts/setup.sh installs it")
        self.process = subprocess.Popen([tool, str(self.config)], stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        wait_port(self.http_port, process=self.process, log=self.log)
        end = time.time() + 30
        while time.time() < end:
            try:
                self.get("/system")
                return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("Orthanc does not answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def request(self, path: str, data=None, method: str | None = None, accept: str | None = None) -> bytes:
        body = json.dumps(data).encode() if data is not None and not isinstance(data, bytes) else data
        req = urllib.request.Request(self.url + path, data=body, method=method or ("POST" if body is not None else "GET"),
                                     headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.read()

    def get(self, path: str, **kw):
        return json.loads(self.request(path, **kw))

    def post(self, path: str, data):
        return json.loads(self.request(path, data))

    def upload(self, folder: Path) -> str:
        """Every file in folder by REST; returns the Orthanc id of the (one) series."""
        ids = {self.post("/instances", p.read_bytes())["ParentSeries"] for p in sorted(folder.iterdir()) if p.is_file()}
        assert len(ids) == 1
        return ids.pop()

    def study_series(self, study_uid: str) -> list[dict]:
        found = self.post("/tools/find", {"Level": "Series", "Query": {"StudyInstanceUID": study_uid}, "Expand": True})
        return found

    def wado(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        return self.request(f"/wado?requestType=WADO&studyUID={study_uid}&seriesUID={series_uid}&objectUID={sop_uid}"
                            "&contentType=application/dicom")


@contextmanager
def orthanc_server(folder: Path, modalities: dict, **extra):
    server = Orthanc(folder, modalities, **extra)
    try:
        yield server.start()
    finally:
        server.stop()


class NodeProcess:
    """`adiposeseg node` as a hospital would run it, in its own process (so that it can be killed)."""

    def __init__(self, workdir: Path, port: int, *flags: str):
        self.workdir, self.port, self.flags = Path(workdir), port, list(flags)
        self.log = self.workdir.parent / f"{self.workdir.name}-node.log"
        self.process = None

    def start(self) -> NodeProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS="2")
        self.process = subprocess.Popen([str(BIN / "adiposeseg"), "node", "--workdir", str(self.workdir), "--port", str(self.port),
                                         "--device", "cpu", *self.flags], stdout=open(self.log, "a"), stderr=subprocess.STDOUT, env=env)
        wait_port(self.port, process=self.process, log=self.log)
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.returncode if self.process else 0

    def audit(self) -> list[dict]:
        path = self.workdir / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []

    def events(self, name: str, series_uid: str | None = None) -> list[dict]:
        return [e for e in self.audit() if e["event"] == name and (series_uid is None or e.get("series_uid") == series_uid)]

    def wait_for(self, name: str, series_uid: str | None = None, count: int = 1, timeout: float = 180) -> list[dict]:
        end = time.time() + timeout
        while time.time() < end:
            found = self.events(name, series_uid)
            if len(found) >= count:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"the node exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"no {name} event after {timeout} s:\n{self.log.read_text()[-3000:]}")


@contextmanager
def node_process(workdir: Path, port: int, *flags: str):
    node = NodeProcess(workdir, port, *flags)
    try:
        yield node.start()
    finally:
        node.stop()


def store_files(files: list[Path], port: int, calling_ae: str = "TESTSCU", called_ae: str = "ADIPOSESEG",
                ssl_context=None) -> list[int]:
    """C-STORE the files (each in its own transfer syntax) with pynetdicom; returns the statuses, or
    raises ConnectionRefusedError when the association is not accepted."""
    import pydicom
    from pynetdicom import AE

    datasets = [pydicom.dcmread(str(f)) for f in files]
    ae = AE(ae_title=calling_ae)
    for syntax in sorted({str(ds.file_meta.TransferSyntaxUID) for ds in datasets}):
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae,
                         tls_args=(ssl_context, "localhost") if ssl_context is not None else None)
    if not assoc.is_established:
        raise ConnectionRefusedError("rejected" if assoc.is_rejected else "not established")
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()
