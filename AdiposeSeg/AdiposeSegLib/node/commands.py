"""`adiposeseg node` and `adiposeseg fetch`: the command-line faces of the DICOM node."""
from __future__ import annotations


import signal
import sys

from ..errors import AdiposeSegError


def _csv(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def add_parsers(sub) -> None:
    p = sub.add_parser("node", help="a DICOM node: receive CT by C-STORE, measure it, send DICOM SEG + SR back")
    p.add_argument("--config", help="JSON file of settings (the flags' names); flags given here win")
    p.add_argument("--workdir", help="received CT, results/, results/summary.csv, node.sqlite (the queue), audit.jsonl")
    p.add_argument("--ae-title", help="this node's AE title (default ADIPOSESEG)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1: loopback only, until you say otherwise)")
    p.add_argument("--port", type=int, help="DICOM port (default 11112)")
    p.add_argument("--allow", type=_csv, metavar="AE[,AE]", help="calling AE titles that may send CT; others are rejected and logged")
    p.add_argument("--send-to", metavar="AE@HOST:PORT", help="C-STORE the SEG + SR here (usually the PACS that sent the CT)")
    p.add_argument("--stow-url", metavar="URL", help="or/and STOW-RS them to this DICOMweb root, e.g. http://pacs:8042/dicom-web")
    p.add_argument("--quiet-seconds", type=float, help="a series is complete after this long without a new slice (default 10)")
    p.add_argument("--keep-received-hours", type=float, help="keep received CT this long after its results were sent (default 24)")
    p.add_argument("--max-queue", type=int, help="series waiting at most; beyond, new series are refused with status A700 (default 20)")
    p.add_argument("--min-free-mb", type=float, help="refuse slices (A700) when the disk has less free (default 2048)")
    p.add_argument("--max-received-mb", type=float, help="refuse slices (A700) when this much received CT waits (default 20480)")
    p.add_argument("--send-attempts", type=int, help="tries per send before giving up and reporting it (default 8)")
    p.add_argument("--retry-seconds", type=float, help="first wait before a failed send is retried; doubles each time (default 30)")
    p.add_argument("--tls-cert", help="serve DICOM over TLS with this certificate (PEM)")
    p.add_argument("--tls-key", help="the certificate's private key (PEM)")
    p.add_argument("--tls-ca", help="require callers' certificates signed by this CA (PEM)")
    p.add_argument("--model", help="model directory or .zip (default: the bundled model)")
    p.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"))
    p.add_argument("--uid-root", help="UID root for the SEG/SR UIDs (default $ADIPOSESEG_UID_ROOT, else 2.25 UUID UIDs)")
    p.add_argument("--content-creator", help="the SEG's Content Creator's Name (default empty: an unreviewed result)")
    p.add_argument("--status", action="store_true", help="print each series' state from the workdir's queue and exit")
    p.add_argument("--retry-sends", action="store_true",
                   help="queue the sends that were given up (send_failed) again, then run (after fixing the destination)")
    p.set_defaults(func=cmd_node)

    p = sub.add_parser("fetch", help="pull CT from a PACS (C-FIND a date range or accession numbers, C-MOVE to the node)")
    p.add_argument("--from", dest="pacs", required=True, metavar="AE@HOST:PORT", help="the PACS to query and move from")
    p.add_argument("--move-to", metavar="AE", help="the node's AE title, as the PACS knows it (default ADIPOSESEG)", default="ADIPOSESEG")
    p.add_argument("--calling-ae", default="ADIPOSESEG", help="our AE title in the query (default ADIPOSESEG)")
    p.add_argument("--study-date", default="", metavar="YYYYMMDD[-YYYYMMDD]", help="studies in this date range")
    p.add_argument("--accession", type=_csv, metavar="A[,B]", help="studies with these accession numbers")
    p.add_argument("--min-instances", type=int, default=10, help="skip CT series with fewer images (scouts, dose pages; default 10)")
    p.add_argument("--dry-run", action="store_true", help="list the series that would be moved, move nothing")
    p.set_defaults(func=cmd_fetch)


def cmd_node(args) -> int:
    from dataclasses import fields

    from .config import NodeConfig, build_config, read_config_file
    from .service import Node

    if args.status:
        return print_status(args.workdir or (read_config_file(args.config).get("workdir") if args.config else None))
    config = build_config(read_config_file(args.config) if args.config else {},   # every setting that is also a flag
                          {f.name: getattr(args, f.name) for f in fields(NodeConfig) if hasattr(args, f.name)})
    node = Node(config)
    if args.retry_sends:
        print(f"adiposeseg node: {node.store.retry_given_up()} given-up send(s) queued again", file=sys.stderr)

    def stop(_signum, _frame):
        node.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"adiposeseg node: {config.ae_title} listening on {config.host}:{config.port}; workdir {config.workdir}; "
          "stop with Ctrl-C or SIGTERM", file=sys.stderr, flush=True)
    node.serve()
    return 0


def print_status(workdir: str | None) -> int:
    import datetime
    from pathlib import Path

    from .store import NodeStore

    if not workdir or not (Path(workdir) / "node.sqlite").is_file():
        raise AdiposeSegError(f"node --status: {workdir or '(no --workdir)'} holds no node queue (node.sqlite)")
    store = NodeStore(Path(workdir) / "node.sqlite")
    rows = store.all()
    store.close()
    counts: dict = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
        when = datetime.datetime.fromtimestamp(row["last_received"]).isoformat(sep=" ", timespec="seconds")
        print(f"{row['state']:12s} {row['series_uid']}  {row['files']} files, last {when}, from {row['calling_ae']}"
              + (f", {row['attempts']} send attempt(s)" if row["attempts"] else "") + (f": {row['message']}" if row["message"] else ""))
    print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no series yet")
    return 1 if counts.get("send_failed") or counts.get("failed") or counts.get("not_sent") else 0


def cmd_fetch(args) -> int:
    from .config import ae_title, parse_peer
    from .fetch import check_date_range, find_ct_series, move_series

    peer = parse_peer(args.pacs, "--from")
    if args.study_date:
        check_date_range(args.study_date)
    found = find_ct_series(peer, ae_title(args.calling_ae, "--calling-ae"), args.study_date, args.accession,
                           args.min_instances)
    print(f"{len(found)} CT series found on {peer}")
    failed = 0
    for s in found:
        line = f"  study {s.study_uid} series {s.series_uid} ({s.instances} images) {s.description}"
        if args.dry_run:
            print(line)
            continue
        try:
            moved = move_series(peer, args.calling_ae, ae_title(args.move_to, "--move-to"), s)
            print(f"{line}: {moved} moved to {args.move_to}")
        except AdiposeSegError as exc:
            failed += 1
            print(f"{line}: FAILED {exc}", file=sys.stderr)
    return 1 if failed else 0



