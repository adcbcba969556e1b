"""The node's audit log: one JSON object per line (who sent what, when, what was measured and sent
where). UIDs, AE titles and addresses only: no patient names, ids or dates."""
from __future__ import annotations

import datetime
import json
import sys
import threading
from pathlib import Path


class AuditLog:
    def __init__(self, path: str | Path, echo: bool = True):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._echo = echo

    def write(self, event: str, **fields) -> dict:
        record = {"time": datetime.datetime.now().astimezone().isoformat(timespec="milliseconds"), "event": event, **fields}
        line = json.dumps(_clean(record), default=str, allow_nan=False)
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
            if self._echo:
                shown = " ".join(f"{k}={v}" for k, v in fields.items() if not isinstance(v, (dict, list)))
                print(f"adiposeseg node: {event} {shown}", file=sys.stderr, flush=True)
        return record

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _clean(value):
    """NaN (no muscle, no density) is written as null: the log stays strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
