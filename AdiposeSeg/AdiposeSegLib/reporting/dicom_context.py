"""What a DICOM SEG and SR say besides the labels: who made them, when, with which rules, on
which slices, what they replace, and the UIDs and series numbers they get."""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field

from ..tissues import IMAT, LABELS, NAMES

UID_ROOT_ENV = "ADIPOSESEG_UID_ROOT"
SERIES_EPOCH = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)


def check_uid_root(root: str) -> str:
    """A site's UID root ("1.2.3." or "1.2.3"), as the prefix every new UID gets."""
    import re

    root = root.strip()
    if root and not root.endswith("."):
        root += "."
    if not re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*\.", root) or len(root) > 40:
        raise ValueError(f"UID root {root!r}: give dot-separated numbers without leading zeros, at most 40 "
                         "characters (room is left for the unique part)")
    return root


def series_numbers(now: datetime.datetime) -> tuple[int, int]:
    """SEG and SR series numbers that grow with time, so a re-run never reuses a number: twice the
    seconds since 2020-01-01 UTC (+1 for the SR); fits DICOM's IS range until 2054."""
    seconds = int((now.astimezone(datetime.timezone.utc) - SERIES_EPOCH).total_seconds())
    return 2 * seconds, 2 * seconds + 1


@dataclass
class DicomContext:
    model_name: str
    model_version: str
    software_version: str
    run: dict = field(default_factory=dict)          # the run key: options and labelling rules
    slice_range: tuple[int, int] = (0, 0)            # canonical analysed slices [start, stop)
    slice_count: int = 0                             # canonical slices in the scan
    quality: dict = field(default_factory=dict)
    levels: dict = field(default_factory=dict)
    uid_root: str | None = None                      # None: ADIPOSESEG_UID_ROOT, else UUID-derived 2.25 UIDs
    content_creator: str = ""                        # a person's name (DICOM PN), empty for an unreviewed result
    predecessor: object | None = None                # the SR this result replaces (pydicom Dataset), if any
    now: datetime.datetime = field(default_factory=lambda: datetime.datetime.now().astimezone())

    def __post_init__(self):
        root = self.uid_root if self.uid_root is not None else os.environ.get(UID_ROOT_ENV, "")
        self.uid_root = check_uid_root(root) if root else ""
        self.series_number, self.sr_series_number = series_numbers(self.now)

    def uid(self) -> str:
        import highdicom as hd
        from pydicom.uid import generate_uid

        return hd.UID(generate_uid(prefix=self.uid_root or None))

    @property
    def labels(self) -> list[int]:
        """The segments written: IMAT only when it was labelled (--no-imat: not measured, not absent)."""
        include_imat = (self.run.get("options") or {}).get("include_imat", True)
        return [label for label in LABELS if label != IMAT or include_imat]

    def slices_text(self) -> str:
        start, stop = self.slice_range
        whole = " (the whole scan)" if (start, stop) == (0, self.slice_count) else ""
        return f"slices {start}..{stop - 1} of {self.slice_count} (feet to head){whole}"

    def series_description(self, kind: str) -> str:
        names = " ".join(NAMES[label] for label in self.labels)
        return f"AdiposeSeg {names}" if kind == "SEG" else "AdiposeSeg body composition"

    def content_description(self) -> str:
        return f"{self.model_name} {self.model_version}, {self.slices_text()}"[:64]

    def rules(self) -> dict[str, str]:
        """The labelling rules and the analysed range, by name (SEG algorithm parameters; TID 4019 in the SR)."""
        options = self.run.get("options") or {}
        out = {"analysed": self.slices_text()}
        for name in ("fat", "muscle"):
            window = options.get(f"{name}_window")
            if window:
                out[f"{name} window"] = f"{window[0]:g}..{window[1]:g} HU"
        if options:
            out.update({
                "IMAT": "labelled" if options.get("include_imat", True) else "not labelled",
                "islands removed under": f"{options.get('min_island_mm2', 0):g} mm2",
                "unlabelled fat next to VAT": "claimed as VAT" if options.get("claim_visceral_fat") else "left unlabelled",
                "arms": "measured" if options.get("include_arms") else "not measured"})
        if self.run.get("label_rules"):
            out["labelling rules version"] = str(self.run["label_rules"])
        return out

    def rule_parameters(self) -> list[str]:
        return [f"{name}: {value}" for name, value in self.rules().items()]

    def quality_parameters(self) -> list[str]:
        """The quality flags a reader of the numbers must see, one line each."""
        out = []
        for name, value in sorted(self.quality.items()):
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            out.append(f"quality {name}: {value}")
        return out

    def l3_parameters(self) -> list[str]:
        l3 = self.levels.get("L3") or {}
        if not l3:
            return []
        where = f"L3 slice {l3['slice']} (input slice {l3.get('input_slice', l3['slice'])})"
        if l3.get("source") == "auto":
            return [f"{where}, found automatically, {l3.get('confidence', 'unknown')} confidence from the "
                    f"{l3.get('anchor', 'spine')}"]
        return [f"{where}, set by hand"]


def coded(pair):
    """An SCT (value, meaning) pair as highdicom's CodedConcept."""
    import highdicom as hd

    value, meaning = pair
    return hd.sr.CodedConcept(value, "SCT", meaning)
