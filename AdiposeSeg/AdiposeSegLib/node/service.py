"""The node's loop: receive (pynetdicom threads), take quiet series off the queue, measure each with
the batch path (`process_case`: series choice, checks, quality flags, levels, SEG + SR), send the
results with back-off, keep the cohort table, remove received CT once its retention has passed."""
from __future__ import annotations

import shutil
import ssl
import threading
import time
from pathlib import Path

from ..errors import AdiposeSegError
from ..running.identity import run_key, safe_name
from ..tissues import HUWindows, SegmentOptions
from .audit import AuditLog
from .config import NodeConfig
from .receiver import Receiver, folder_mb, incoming_dir, storage_ae
from .sender import SendError, c_store, stow_rs
from .store import NodeStore

MAX_BACKOFF_S = 3600.0


def server_tls(config: NodeConfig) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
        if config.tls_ca:
            context.load_verify_locations(config.tls_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise AdiposeSegError(f"node: TLS certificate or key cannot be used ({exc})") from None
    return context


def measured(summary: dict) -> dict:
    """The numbers for the audit log: L3 areas and the volumes, no patient data."""
    l3 = summary.get("l3") or {}
    totals = summary.get("totals") or {}
    return {"l3": {k: v for k, v in l3.items() if k.endswith(("_cm2", "_HU")) or k in ("slice", "source", "confidence")},
            "volumes_cm3": {k[:-len("_volume_cm3")]: v for k, v in totals.items() if k.endswith("_volume_cm3")},
            "slices": summary.get("slices_processed"), "quality": summary.get("quality") or {}}


class Node:
    def __init__(self, config: NodeConfig, model=None, echo: bool = True):
        from ..model.model_card import load_model

        self.config = config
        self.workdir = Path(config.workdir)
        for sub in ("incoming", "results"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.store = NodeStore(self.workdir / "node.sqlite")
        self.audit = AuditLog(self.workdir / "audit.jsonl", echo=echo)
        self.receiver = Receiver(config, self.store, self.audit)
        self.model = model if model is not None else load_model(config.model or None)
        self.options = SegmentOptions(windows=HUWindows(fat=tuple(config.fat_window), muscle=tuple(config.muscle_window)),
                                      device=config.device)
        self.key = run_key(self.model, self.options)
        self.stop_event = threading.Event()
        self._server = None

    # --- life cycle -------------------------------------------------------------------------
    def _warm_up(self) -> None:
        """One tiny batch through the network before listening: the first series is not the one
        that pays for the session's set-up (about 1.5 s measured on 2 cores)."""
        import numpy as np

        network = self.model.onnx_network() if self.options.device in ("cpu", "auto") else None
        if network is not None:
            size = int(self.model.card.grid_pixels)
            network(np.full((1, 1, size, size), -1.0, dtype=np.float32))

    def start(self) -> None:
        self._warm_up()
        resumed = self.store.resume()
        self._adopt_orphans()
        ae = storage_ae(self.config, self.receiver)
        try:
            self._server = ae.start_server((self.config.host, int(self.config.port)), block=False,
                                           evt_handlers=self.receiver.handlers(), ssl_context=server_tls(self.config))
        except OSError as exc:
            raise AdiposeSegError(f"node: cannot listen on {self.config.host}:{self.config.port} ({exc.strerror or exc})") from None
        self.audit.write("started", ae_title=self.config.ae_title, listen=f"{self.config.host}:{self.config.port}",
                         allow=self.config.allow, send_to=self.config.send_to or None, stow_url=self.config.stow_url or None,
                         tls=bool(self.config.tls_cert), resumed=resumed, model=self.key["model"])

    def stop(self) -> None:
        self.stop_event.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
            self.audit.write("stopped")
        self.store.close()

    def serve(self, poll_s: float = 0.25) -> None:
        self.start()
        try:
            while not self.stop_event.is_set():
                if not self.step():
                    self.stop_event.wait(poll_s)
        finally:
            self.stop()

    def _adopt_orphans(self) -> None:
        """Slices on disk whose series the database does not know (killed between the two): queued."""
        known = {safe_name(r["series_uid"]) for r in self.store.all()}
        import pydicom

        for folder in sorted((self.workdir / "incoming").iterdir()):
            files = [f for f in folder.glob("*.dcm")] if folder.is_dir() and folder.name not in known else []
            if files:
                ds = pydicom.dcmread(str(files[0]), stop_before_pixels=True)
                for _ in files:
                    self.store.file_received(str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID), "", True,
                                             now=files[0].stat().st_mtime)

    # --- one step ---------------------------------------------------------------------------
    def step(self, now: float | None = None) -> bool:
        """Do the next piece of work; False when there was none."""
        now = time.time() if now is None else now
        for uid in self.store.promote_quiet(float(self.config.quiet_seconds), now):
            self.audit.write("queued", series_uid=uid, files=(self.store.get(uid) or {}).get("files"))
        did = False
        for row in self.store.due_sends(now):
            self._send(row)
            did = True
        row = self.store.take_queued()
        if row is not None:
            self._process(row)
            did = True
        self._remove_expired(now)
        return did

    def _case(self, series_uid: str) -> tuple[str, Path]:
        case_id = safe_name(series_uid)
        return case_id, self.workdir / "results" / case_id

    def _process(self, row: dict) -> None:
        from ..reporting.aggregate import aggregate
        from ..running.batch import process_case
        from ..running.progress import RunControl

        uid = row["series_uid"]
        case_id = self._case(uid)[0]
        dicom_options = {"content_creator": self.config.content_creator}
        if self.config.uid_root:
            dicom_options["uid_root"] = self.config.uid_root
        self.audit.write("processing", series_uid=uid, study_uid=row["study_uid"], files=row["files"])
        t0 = time.perf_counter()
        outcome = process_case(str(incoming_dir(self.workdir, uid)), case_id, self.workdir / "results", self.model,
                               self.options, RunControl(None, self.stop_event), None, self.key, skip_done=True,
                               dicom_seg=True, dicom_options=dicom_options)
        seconds = round(time.perf_counter() - t0, 2)
        if outcome.status == "cancelled":
            self.store.requeue(uid)
            self.audit.write("processing_stopped", series_uid=uid, reason="the node is stopping; queued again")
            return
        summary = outcome.summary or {}
        if outcome.status == "failed":
            if self.store.finish(uid, "failed", outcome.message):
                self.audit.write("failed", series_uid=uid, study_uid=row["study_uid"], message=outcome.message, seconds=seconds)
        else:
            missing = [f.name for f in self._result_files(uid) if not f.is_file()]
            already_sent = outcome.status == "skipped" and row.get("sent_at") is not None
            state = "sent" if already_sent else "not_sent" if missing else "sending"
            message = ("the DICOM SEG/SR could not be written: " + "; ".join(summary.get("notes", [])[-3:])) if missing else ""
            if self.store.finish(uid, state, message, processed=outcome.status == "done"):
                self.audit.write("measured" if outcome.status == "done" else "unchanged", series_uid=uid,
                                 study_uid=row["study_uid"], seconds=seconds, next=state, message=outcome.message or message,
                                 measured=measured(summary) if outcome.status == "done" else None)
            else:
                self.audit.write("superseded", series_uid=uid, reason="new slices arrived while measuring; measured again later")
        try:
            aggregate(self.workdir / "results")
        except AdiposeSegError as exc:
            self.audit.write("cohort_table_failed", message=str(exc))

    def _result_files(self, series_uid: str) -> list[Path]:
        case_id, case_dir = self._case(series_uid)
        return [case_dir / f"{case_id}_seg.dcm", case_dir / f"{case_id}_sr.dcm"]

    def _send(self, row: dict) -> None:
        uid = row["series_uid"]
        files = self._result_files(uid)
        where = []
        try:
            if self.config.send_to:
                c_store(files, self.config.destination, self.config.ae_title)
                where.append(self.config.send_to)
            if self.config.stow_url:
                stow_rs(files, self.config.stow_url)
                where.append(self.config.stow_url)
        except (SendError, OSError) as exc:
            attempts = int(row["attempts"]) + 1
            give_up = attempts >= int(self.config.send_attempts)
            delay = min(float(self.config.retry_seconds) * 2 ** (attempts - 1), MAX_BACKOFF_S)
            self.store.send_failed(uid, str(exc), None if give_up else time.time() + delay)
            self.audit.write("send_gave_up" if give_up else "send_failed", series_uid=uid, attempt=attempts,
                             message=str(exc), **({} if give_up else {"retry_in_s": round(delay, 1)}))
            return
        self.store.sent(uid)
        import pydicom

        sent = [str(pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID) for f in files]
        self.audit.write("sent", series_uid=uid, study_uid=row["study_uid"], to=where, sop_instance_uids=sent)

    def _remove_expired(self, now: float) -> None:
        for uid in self.store.removable(float(self.config.keep_received_hours), now):
            folder = incoming_dir(self.workdir, uid)
            size = folder_mb(folder)
            shutil.rmtree(folder, ignore_errors=True)
            self.receiver.removed(size)
            self.store.mark_removed(uid)
            self.audit.write("removed_received", series_uid=uid, megabytes=round(size, 1))
