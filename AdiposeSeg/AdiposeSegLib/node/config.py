"""The node's settings: command-line flags over a JSON config file over the defaults."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import AdiposeSegError

AE_TITLE = re.compile(r"^[ -~]{1,16}$")   # DICOM AE: up to 16 printable ASCII characters, no backslash


@dataclass(frozen=True)
class Peer:
    """A remote DICOM application entity: AE@HOST:PORT."""
    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def ae_title(text: str, what: str = "AE title") -> str:
    text = str(text).strip()
    if not AE_TITLE.match(text) or "\\" in text:
        raise AdiposeSegError(f"{what} {text!r}: an AE title is 1 to 16 printable ASCII characters, no backslash")
    return text


def parse_peer(text: str, what: str = "--send-to") -> Peer:
    match = re.match(r"^(?P<ae>[^@]+)@(?P<host>\[[^\]]+\]|[^:]+):(?P<port>\d+)$", str(text).strip())
    if not match:
        raise AdiposeSegError(f"{what} {text!r}: give AE@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise AdiposeSegError(f"{what} {text!r}: the port must be 1..65535")
    return Peer(ae_title(match["ae"], f"{what} AE title"), match["host"].strip("[]"), port)


@dataclass
class NodeConfig:
    workdir: str = ""
    ae_title: str = "ADIPOSESEG"
    host: str = "127.0.0.1"          # loopback unless configured: a node is not on the hospital network by accident
    port: int = 11112
    allow: list = field(default_factory=list)     # calling AE titles accepted; empty refuses everyone
    send_to: str = ""                # AE@HOST:PORT for C-STORE of the SEG + SR
    stow_url: str = ""               # or/and a DICOMweb STOW-RS URL (…/dicom-web)
    quiet_seconds: float = 10.0      # a series is complete when no slice arrived for this long
    keep_received_hours: float = 24.0   # received CT kept this long after its results were sent
    max_queue: int = 20              # series waiting or being received; a new one beyond is refused
    min_free_mb: float = 2048.0      # refuse new slices when the workdir's disk has less free
    max_received_mb: float = 20480.0   # refuse new slices when received CT not yet removed exceeds this
    send_attempts: int = 8           # then the send is given up and reported
    retry_seconds: float = 30.0      # first back-off; doubles each attempt, at most 1 hour
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""                 # with a CA, callers must present a certificate it signed
    model: str = ""
    device: str = "auto"
    uid_root: str = ""
    content_creator: str = ""
    fat_window: tuple = (-190.0, -30.0)
    muscle_window: tuple = (-29.0, 150.0)

    @property
    def destination(self) -> Peer | None:
        return parse_peer(self.send_to) if self.send_to else None

    def check(self) -> NodeConfig:
        if not self.workdir:
            raise AdiposeSegError("node: give --workdir DIR (received CT, results, the queue and the audit log live there)")
        self.ae_title = ae_title(self.ae_title, "--ae-title")
        self.allow = [ae_title(a, "--allow") for a in self.allow]
        if not self.allow:
            raise AdiposeSegError("node: give --allow AE[,AE]: the calling AE titles that may send CT (nobody else can)")
        if not 0 < int(self.port) < 65536:
            raise AdiposeSegError(f"node: --port {self.port}: give 1..65535")
        if not (self.send_to or self.stow_url):
            raise AdiposeSegError("node: give --send-to AE@HOST:PORT or --stow-url URL: where the SEG + SR go")
        self.destination   # noqa: B018  (parses, or says what is wrong)
        if self.stow_url and not re.match(r"^https?://", self.stow_url):
            raise AdiposeSegError(f"node: --stow-url {self.stow_url!r}: give an http:// or https:// DICOMweb root")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise AdiposeSegError("node: TLS needs both --tls-cert and --tls-key")
        for name in ("quiet_seconds", "keep_received_hours", "min_free_mb", "max_received_mb", "retry_seconds"):
            if float(getattr(self, name)) < 0:
                raise AdiposeSegError(f"node: {name.replace('_', '-')} must be 0 or more")
        if int(self.max_queue) < 1 or int(self.send_attempts) < 1:
            raise AdiposeSegError("node: --max-queue and --send-attempts must be at least 1")
        return self


def read_config_file(path: str) -> dict:
    """The JSON config's settings, with the flags' names (dashes or underscores)."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise AdiposeSegError(f"--config {path}: cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise AdiposeSegError(f"--config {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise AdiposeSegError(f"--config {path}: expected a JSON object of settings")
    known = {f.name for f in fields(NodeConfig)}
    settings = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise AdiposeSegError(f"--config {path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if isinstance(settings.get("allow"), str):
        settings["allow"] = [a for a in settings["allow"].split(",") if a.strip()]
    return settings


def build_config(file_settings: dict, flags: dict) -> NodeConfig:
    """Flags given on the command line (not None) win over the file, the file over the defaults."""
    merged = dict(file_settings)
    merged.update({k: v for k, v in flags.items() if v is not None})
    return NodeConfig(**merged).check()
