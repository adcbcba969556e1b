"""Sending the results: C-STORE to a DICOM peer, or STOW-RS to a DICOMweb server."""
from __future__ import annotations

import ssl
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from .config import Peer


class SendError(Exception):
    """A send that did not store every object; the message says which and why (retried later)."""


def c_store(files: list[Path], peer: Peer, calling_ae: str, ssl_context: ssl.SSLContext | None = None,
            timeout: float = 60) -> None:
    import pydicom
    from pynetdicom import AE

    datasets = [pydicom.dcmread(str(f)) for f in files]
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = timeout
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    tls = (ssl_context, peer.host) if ssl_context is not None else None
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, tls_args=tls)
    if not assoc.is_established:
        raise SendError(f"{peer}: association not accepted ({'rejected' if assoc.is_rejected else 'no answer or aborted'})")
    failures = []
    try:
        for path, ds in zip(files, datasets):
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None:
                failures.append(f"{path.name}: no answer")
            elif code not in (0x0000, 0xB000, 0xB007, 0xB006):   # success, or stored with a warning
                failures.append(f"{path.name}: status 0x{code:04X}")
    finally:
        if assoc.is_established:
            assoc.release()
    if failures:
        raise SendError(f"{peer}: " + "; ".join(failures))


def stow_rs(files: list[Path], url: str, timeout: float = 60) -> None:
    """POST the files as one multipart/related request to URL/studies (PS3.18 STOW-RS)."""
    boundary = uuid.uuid4().hex
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + Path(f).read_bytes() + b"\r\n"
                    for f in files) + b"--" + boundary.encode() + b"--\r\n"
    request = urllib.request.Request(url.rstrip("/") + "/studies", data=body, method="POST", headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status not in (200, 202):
                raise SendError(f"{url}: STOW-RS answered HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        raise SendError(f"{url}: STOW-RS answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SendError(f"{url}: STOW-RS failed ({getattr(exc, 'reason', exc)})") from None
