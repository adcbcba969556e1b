"""The patient's height, weight and sex kept with a result, the indices they give (SMI, SATI, VATI,
BMI and the cut-off flags, as summary.json has them), and the one-page report of the result as it is
now (edits and a hand-set L3 included). Used by SceneLogic; MRML only, no Qt."""
from __future__ import annotations

import datetime
import json

from ..reading.patients import checked_patient
from .display import totals_of
from .levels import PATIENT_ATTRIBUTE, level_reports, patient_of, refill_levels_table

NOTES_ATTRIBUTE = "AdiposeSeg.Notes"       # JSON: the run's notes (quality flags in words)


class PatientMixin:
    def setPatient(self, segmentationNode, heightM=None, weightKg=None, sex: str = "", source: str = "entered") -> dict:
        """Keep the patient's height (m), weight (kg) and sex (M/F) with the result; empty values are
        "not given". A value that cannot be a human's (a height of 175: cm, not m) is refused and the
        earlier values stay. The levels table shows the indices at once; returns the stored patient."""
        patient = checked_patient({"height_m": heightM, "weight_kg": weightKg, "sex": sex or ""}, "patient", source)
        segmentationNode.SetAttribute(PATIENT_ATTRIBUTE, json.dumps(patient))
        refill_levels_table(segmentationNode)
        return patient

    def patient(self, segmentationNode) -> dict:
        return patient_of(segmentationNode)

    def levelReports(self, segmentationNode) -> dict:
        """The levels as summary.json has them: measures, SMI/SATI/VATI/BMI with a height, flags at L3."""
        return level_reports(segmentationNode)

    def reportSummary(self, volumeNode, segmentationNode, caseId: str | None = None) -> dict:
        """The fields of summary.json the patient report is drawn from, for the result as it is now."""
        self.checkBelongs(volumeNode, segmentationNode)
        totals = totals_of(self.resultsForVolume(volumeNode)[1])
        edited = self.isEdited(segmentationNode, volumeNode)
        notes = json.loads(segmentationNode.GetAttribute(NOTES_ATTRIBUTE) or "[]")
        if edited:
            notes = ["the segmentation was edited by hand after the run (the values are the edited ones)", *notes]
        storage = volumeNode.GetStorageNode()
        return {"case_id": caseId or volumeNode.GetName(),
                "source": (storage.GetFileName() if storage is not None and storage.GetFileName() else volumeNode.GetName()),
                "date": datetime.datetime.now().isoformat(timespec="seconds"),
                "model": {"name": segmentationNode.GetAttribute("AdiposeSeg.ModelName") or "",
                          "version": segmentationNode.GetAttribute("AdiposeSeg.ModelVersion") or "",
                          "network": segmentationNode.GetAttribute("AdiposeSeg.Device") or ""},
                "patient": patient_of(segmentationNode), "levels": level_reports(segmentationNode),
                "totals": totals, "notes": notes}

    def _reportInputs(self, volumeNode, segmentationNode, caseId: str | None):
        """The summary fields and the levels picture (a PIL image, or None) the report is drawn from."""
        import io

        from PIL import Image

        summary = self.reportSummary(volumeNode, segmentationNode, caseId)
        picture = self.levelsPicture(volumeNode, segmentationNode)
        return summary, Image.open(io.BytesIO(picture)).convert("RGB") if picture else None

    def reportFiles(self, volumeNode, segmentationNode, caseId: str | None = None) -> tuple[bytes, bytes]:
        """(PNG, PDF) bytes of the one-page report of the result as it is now."""
        from ..reporting.patient_report import report_bytes

        return report_bytes(*self._reportInputs(volumeNode, segmentationNode, caseId))

    def saveReport(self, volumeNode, segmentationNode, pngPath: str, caseId: str | None = None) -> list[str]:
        """Write the report as `pngPath` and the same name with .pdf (a file dialog asked before
        replacing); returns the two paths."""
        from pathlib import Path

        from ..reporting.patient_report import write_report

        png = Path(pngPath).with_suffix(".png")
        written = write_report(png, png.with_suffix(".pdf"), *self._reportInputs(volumeNode, segmentationNode, caseId))
        return [str(p) for p in written]
