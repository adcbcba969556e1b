"""Time from the last CT slice received to the SEG + SR stored back in a real Orthanc.

    .venv/bin/python benchmarks/node_round_trip.py [--runs 3] [--quiet-seconds 1]

Debian's Orthanc (as in Testing/test_dicom_node.py) routes the shared 20-slice real CT series
(UIDs restored, a new study per run) to `adiposeseg node` by REST; the clock starts when Orthanc's
synchronous C-STORE to the node returns (the last slice is in) and stops when Orthanc holds both
the SEG and the SR. The node's audit log splits it: quiet period, measuring, sending.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Testing"))

from node_helpers import free_port, node_process, orthanc_server  # noqa: E402

SERIES = ROOT.parent / "shared" / "data" / "real-ct" / "totalsegmentator-example" / "example_ct_dicom"


def copy_series(out: Path, study: str) -> Path:
    import pydicom
    from pydicom.uid import CTImageStorage

    out.mkdir(parents=True)
    for index, path in enumerate(sorted(p for p in SERIES.iterdir() if p.is_file())):
        ds = pydicom.dcmread(str(path))
        ds.SOPClassUID = CTImageStorage
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, f"{study}.1"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{study}.1.{index + 1}"
        ds.save_as(str(out / f"im{index:03d}.dcm"))
    return out


def _t(event: dict) -> float:
    return datetime.datetime.fromisoformat(event["time"]).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quiet-seconds", type=float, default=1.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        port = free_port()
        with orthanc_server(tmp, {"adiposeseg": ["ADIPOSESEG", "127.0.0.1", port]}) as orthanc:
            with node_process(tmp / "node", port, "--allow", "ORTHANC", "--quiet-seconds", str(args.quiet_seconds),
                              "--send-to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}") as node:
                for run in range(args.runs):
                    study = f"2.25.{9000 + run}"
                    orthanc_id = orthanc.upload(copy_series(tmp / f"s{run}", study))
                    t0 = time.time()
                    orthanc.post("/modalities/adiposeseg/store", {"Resources": [orthanc_id], "Synchronous": True})
                    last = time.time()
                    while not {"SEG", "SR"} <= {s["MainDicomTags"].get("Modality") for s in orthanc.study_series(study)}:
                        time.sleep(0.02)
                    back = time.time()
                    uid = f"{study}.1"
                    ev = {name: _t(node.wait_for(name, uid)[0]) for name in ("queued", "processing", "measured", "sent")}
                    rows.append({"transfer": last - t0, "total": back - last, "quiet": ev["queued"] - last,
                                 "measure": ev["measured"] - ev["processing"], "send": ev["sent"] - ev["measured"]})
                    print(f"run {run + 1}: forwarded 20 slices in {rows[-1]['transfer']:.2f} s; back in Orthanc "
                          f"{rows[-1]['total']:.2f} s after the last slice (quiet {rows[-1]['quiet']:.2f}, measure "
                          f"{rows[-1]['measure']:.2f}, send {rows[-1]['send']:.2f})", flush=True)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(f"median of {len(rows)}: last slice -> SEG + SR in Orthanc {med['total']:.2f} s with quiet_seconds "
          f"{args.quiet_seconds:g} (measure {med['measure']:.2f} s, send {med['send']:.2f} s); with the default "
          f"quiet_seconds 10 add {10 - args.quiet_seconds:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
