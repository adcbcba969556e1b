"""The Storage SCP: CT slices in by C-STORE from the allowed AE titles, kept on disk per series.

Each slice is written whole under a temporary name and moved into place before the store is
acknowledged, so a killed node never holds half a file; a slice received twice (a PACS re-sending
a study) is recognised by its bytes and does not re-open a measured series.
"""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from ..running.identity import safe_name
from .audit import AuditLog
from .config import NodeConfig
from .store import NodeStore

# the transfer syntaxes CT arrives in; the reading path decodes all of them (pydicom + pylibjpeg)
CT_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",        # implicit VR little endian
    "1.2.840.10008.1.2.1",      # explicit VR little endian
    "1.2.840.10008.1.2.1.99",   # deflated explicit VR little endian
    "1.2.840.10008.1.2.2",      # explicit VR big endian (retired, still sent by old scanners)
    "1.2.840.10008.1.2.4.57",   # JPEG lossless
    "1.2.840.10008.1.2.4.70",   # JPEG lossless, first-order prediction
    "1.2.840.10008.1.2.4.51",   # JPEG extended (12 bit)
    "1.2.840.10008.1.2.4.80",   # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",   # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90",   # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",   # JPEG 2000
    "1.2.840.10008.1.2.5",      # RLE lossless
]
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"

SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND, DATA_SET_MISMATCH = 0x0000, 0xA700, 0xC000, 0xA900


def incoming_dir(workdir: str | Path, series_uid: str) -> Path:
    return Path(workdir) / "incoming" / safe_name(series_uid)


def folder_mb(folder: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total / 2**20


class Receiver:
    """Handlers for pynetdicom's events; one instance serves every association."""

    def __init__(self, config: NodeConfig, store: NodeStore, audit: AuditLog):
        self.config, self.store, self.audit = config, store, audit
        self.root = Path(config.workdir) / "incoming"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._received_mb = folder_mb(self.root)   # kept up to date rather than walked per slice
        self._per_association: dict[int, dict] = {}

    def handlers(self) -> list:
        from pynetdicom import evt

        return [(evt.EVT_C_STORE, self.on_store), (evt.EVT_C_ECHO, lambda event: SUCCESS),
                (evt.EVT_REJECTED, self.on_rejected), (evt.EVT_RELEASED, self.on_closed),
                (evt.EVT_ABORTED, self.on_closed)]

    @staticmethod
    def _who(event) -> dict:
        requestor = event.assoc.requestor
        return {"calling_ae": str(requestor.ae_title).strip(), "address": f"{requestor.address}:{requestor.port}"}

    def on_rejected(self, event) -> None:
        self.audit.write("association_rejected", **self._who(event),
                         reason="calling AE title not allowed" if str(event.assoc.requestor.ae_title).strip()
                         not in self.config.allow else "association rejected")

    def on_closed(self, event) -> None:
        with self._lock:
            summary = self._per_association.pop(id(event.assoc), None)
        if summary:
            self.audit.write("received", **self._who(event), **summary)

    def _refusal(self, series_uid: str, new_series: bool) -> str:
        free_mb = shutil.disk_usage(self.root).free / 2**20
        if free_mb < self.config.min_free_mb:
            return f"{free_mb:.0f} MB free on the node's disk, below min_free_mb {self.config.min_free_mb:.0f}"
        if self._received_mb > self.config.max_received_mb:
            return f"{self._received_mb:.0f} MB of received CT waiting, above max_received_mb {self.config.max_received_mb:.0f}"
        if new_series and self.store.active_count() >= self.config.max_queue:
            return f"{self.config.max_queue} series already waiting (max_queue)"
        return ""

    def on_store(self, event) -> int:
        who = self._who(event)
        try:
            ds = event.dataset
            series_uid, study_uid, sop_uid = (str(ds.get(k, "") or "").strip()
                                              for k in ("SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID"))
        except Exception as exc:   # an undecodable data set: refused, the node goes on
            self.audit.write("store_refused", **who, reason=f"unreadable data set: {exc.__class__.__name__}")
            return CANNOT_UNDERSTAND
        if not (series_uid and study_uid and sop_uid):
            self.audit.write("store_refused", **who, reason="no Study/Series/SOP Instance UID")
            return CANNOT_UNDERSTAND
        if str(ds.get("Modality", "CT")).upper() != "CT":
            self.audit.write("store_refused", **who, series_uid=series_uid, reason=f"Modality {ds.get('Modality')} is not CT")
            return DATA_SET_MISMATCH
        row = self.store.get(series_uid)
        refusal = self._refusal(series_uid, new_series=row is None or row["state"] not in ("receiving", "queued"))
        if refusal:
            self.audit.write("store_refused", **who, series_uid=series_uid, reason=refusal)
            return OUT_OF_RESOURCES
        folder = incoming_dir(self.config.workdir, series_uid)
        target = folder / f"{safe_name(sop_uid)}.dcm"
        try:
            data = event.encoded_dataset(include_meta=True)
            new_file = not (target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data)
            if new_file:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f".{target.name}.{threading.get_ident()}.part"
                try:
                    tmp.write_bytes(data)
                    os.replace(tmp, target)
                finally:
                    if tmp.exists():
                        tmp.unlink()
            self.store.file_received(series_uid, study_uid, who["calling_ae"], new_file)
        except OSError as exc:
            self.audit.write("store_refused", **who, series_uid=series_uid, reason=f"cannot be stored: {exc.strerror or exc}")
            return OUT_OF_RESOURCES
        with self._lock:
            self._received_mb += len(data) / 2**20 if new_file else 0
            seen = self._per_association.setdefault(id(event.assoc), {"series": {}})["series"]
            counts = seen.setdefault(series_uid, {"study_uid": study_uid, "new": 0, "repeated": 0})
            counts["new" if new_file else "repeated"] += 1
        return SUCCESS

    def removed(self, megabytes: float) -> None:
        with self._lock:
            self._received_mb = max(0.0, self._received_mb - megabytes)


def storage_ae(config: NodeConfig, receiver: Receiver):
    """The pynetdicom AE that accepts CT Image Storage (in every CT transfer syntax) and C-ECHO."""
    from pynetdicom import AE

    ae = AE(ae_title=config.ae_title)
    ae.add_supported_context(CT_IMAGE_STORAGE, CT_TRANSFER_SYNTAXES)
    ae.add_supported_context(VERIFICATION)
    ae.require_calling_aet = list(config.allow)
    ae.maximum_pdu_size = 0          # unlimited: fewer, larger PDUs per slice
    ae.network_timeout = ae.acse_timeout = 60
    ae.dimse_timeout = 120
    return ae
