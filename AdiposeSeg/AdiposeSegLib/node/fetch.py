"""Pull from a PACS: C-FIND the CT series of a date range or a list of accession numbers, and C-MOVE
each to the node (whose AE title the PACS must know). The researcher's "all abdominal CT of this
cohort" job; the node measures what arrives and sends the SEG + SR back as for pushed studies."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import AdiposeSegError
from .config import Peer

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
PENDING = (0xFF00, 0xFF01)


@dataclass
class FoundSeries:
    study_uid: str
    series_uid: str
    accession: str
    instances: int
    description: str


def check_date_range(text: str) -> str:
    if not re.match(r"^(\d{8})?-?(\d{8})?$", text or "") or text in ("", "-"):
        raise AdiposeSegError(f"--study-date {text!r}: give YYYYMMDD, YYYYMMDD-YYYYMMDD, or an open range like 20240101-")
    return text


def _associate(peer: Peer, calling_ae: str, contexts: list[str]):
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = 60
    ae.dimse_timeout = 600
    for context in contexts:
        ae.add_requested_context(context)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        why = f"rejected: is {calling_ae} known to it?" if assoc.is_rejected else "no answer"
        raise AdiposeSegError(f"{peer}: association not accepted ({why})")
    return assoc


def _find(assoc, query) -> list:
    found = []
    for status, identifier in assoc.send_c_find(query, STUDY_ROOT_FIND):
        code = getattr(status, "Status", None)
        if code in PENDING and identifier is not None:
            found.append(identifier)
        elif code not in (0x0000,):
            raise AdiposeSegError(f"C-FIND answered status {'none' if code is None else f'0x{code:04X}'}")
    return found


def find_ct_series(peer: Peer, calling_ae: str, study_date: str = "", accessions: list[str] | None = None,
                   min_instances: int = 10) -> list[FoundSeries]:
    from pydicom.dataset import Dataset

    if not study_date and not accessions:
        raise AdiposeSegError("fetch: give --study-date or --accession: a query without either would pull the whole PACS")
    assoc = _associate(peer, calling_ae, [STUDY_ROOT_FIND])
    try:
        studies = []
        for accession in (accessions or [""]):
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = ""
            query.StudyDate = study_date
            query.AccessionNumber = accession
            query.ModalitiesInStudy = ""
            studies += [s for s in _find(assoc, query) if not s.get("ModalitiesInStudy") or "CT" in s.ModalitiesInStudy]
        series = []
        for study in studies:
            query = Dataset()
            query.QueryRetrieveLevel = "SERIES"
            query.StudyInstanceUID = study.StudyInstanceUID
            query.SeriesInstanceUID = ""
            query.Modality = "CT"
            query.SeriesDescription = ""
            query.NumberOfSeriesRelatedInstances = ""
            for s in _find(assoc, query):
                count = int(s.get("NumberOfSeriesRelatedInstances") or 0)
                if str(s.get("Modality", "CT")) == "CT" and count >= min_instances:
                    series.append(FoundSeries(str(study.StudyInstanceUID), str(s.SeriesInstanceUID),
                                              str(study.get("AccessionNumber", "")), count, str(s.get("SeriesDescription", ""))))
        return series
    finally:
        assoc.release()


def move_series(peer: Peer, calling_ae: str, destination_ae: str, found: FoundSeries) -> int:
    """C-MOVE one series to destination_ae; returns the number of instances moved."""
    from pydicom.dataset import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = found.study_uid
    query.SeriesInstanceUID = found.series_uid
    assoc = _associate(peer, calling_ae, [STUDY_ROOT_MOVE])
    moved, last = 0, None
    try:
        for status, _identifier in assoc.send_c_move(query, destination_ae, STUDY_ROOT_MOVE):
            last = getattr(status, "Status", None)
            moved = int(getattr(status, "NumberOfCompletedSuboperations", moved) or moved)
    finally:
        assoc.release()
    if last not in (0x0000, 0xB000):
        raise AdiposeSegError(f"C-MOVE of series {found.series_uid} to {destination_ae} ended with status "
                              f"{'none' if last is None else f'0x{last:04X}'} ({moved} instances moved)")
    return moved
