"""The module's Slicer terminology context (.term.json), written from tissues.TERMINOLOGY.

`python -m AdiposeSegLib.reporting.terminology` rewrites the shipped file; a test checks it is current.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..tissues import COLORS, DESCRIPTIONS, LABELS, TERMINOLOGY, TERMINOLOGY_CONTEXT

TERM_FILE = Path(__file__).resolve().parents[2] / "Resources" / "SegmentationCategoryTypeModifier-AdiposeSeg.term.json"


def terminology_json() -> dict:
    categories: dict[str, dict] = {}
    for label in LABELS:
        (cat_code, cat_name), (type_code, type_name), modifier = TERMINOLOGY[label]
        category = categories.setdefault(cat_code, {
            "CodeMeaning": cat_name, "CodingSchemeDesignator": "SCT", "CodeValue": cat_code,
            "showAnatomy": False, "Type": []})
        entry = {"CodeMeaning": DESCRIPTIONS[label].lower(), "3dSlicerLabel": DESCRIPTIONS[label].lower(),
                 "recommendedDisplayRGBValue": list(COLORS[label])}
        if modifier is None:
            category["Type"].append({**entry, "CodeMeaning": type_name, "CodingSchemeDesignator": "SCT",
                                     "CodeValue": type_code})
            continue
        kind = next((t for t in category["Type"] if t["CodeValue"] == type_code), None)
        if kind is None:
            kind = {"CodeMeaning": type_name, "CodingSchemeDesignator": "SCT", "CodeValue": type_code, "Modifier": []}
            category["Type"].append(kind)
        kind["Modifier"].append({**entry, "CodeMeaning": modifier[1], "CodingSchemeDesignator": "SCT",
                                 "CodeValue": modifier[0]})
    return {"SegmentationCategoryTypeContextName": TERMINOLOGY_CONTEXT,
            "@schema": "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#",
            "SegmentationCodes": {"Category": list(categories.values())}}


def terminology_text() -> str:
    return json.dumps(terminology_json(), indent=2) + "\n"


if __name__ == "__main__":
    TERM_FILE.write_text(terminology_text())
    sys.exit(0)
