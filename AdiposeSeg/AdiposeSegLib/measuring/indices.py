"""Body-composition indices at a vertebral level (L3 by default), as clinicians report them.

Areas and muscle density come from the labelled slice; indices normalised by height and the flags
need the patient's height (and weight and sex for BMI- and sex-specific cut-offs). Cut-offs are
parameters with their sources; a flag that cannot be decided (no height, no sex) is left out,
never guessed.
"""
from __future__ import annotations

import math

import numpy as np

from ..tissues import IMAT, MUSCLE, SAT, VAT

LAMA_HU = (-29.0, 29.0)   # low-attenuation muscle (Aubrey 2014 / Martin 2013 convention)
NAMA_HU = (30.0, 150.0)   # normal-attenuation muscle

# Martin L et al., J Clin Oncol 2013;31:1539-1547 (cancer patients, L3):
#   sarcopenia: SMI < 43 cm2/m2 (men, BMI < 25), < 53 (men, BMI >= 25), < 41 (women, any BMI)
#   myosteatosis: SMD < 41 HU (BMI < 25), < 33 HU (BMI >= 25), both sexes
# Visceral obesity: VAT area > 100 cm2 at L3 (Doyle SL et al., Nutrition 2013; the common cut-off).
CUTOFFS = {
    "sarcopenia_smi": {"M": {"bmi_lt_25": 43.0, "bmi_ge_25": 53.0}, "F": {"bmi_lt_25": 41.0, "bmi_ge_25": 41.0}},
    "myosteatosis_smd": {"bmi_lt_25": 41.0, "bmi_ge_25": 33.0},
    "visceral_obesity_vat_cm2": 100.0,
}
SOURCES = {
    "sarcopenia": "Martin L et al. J Clin Oncol 2013;31:1539-47",
    "myosteatosis": "Martin L et al. J Clin Oncol 2013;31:1539-47",
    "visceral_obesity": "VAT > 100 cm2 (Doyle SL et al. Nutrition 2013;29:1365-9)",
}


def level_measures(labels: np.ndarray, hu: np.ndarray, pixel_area_mm2: float) -> dict:
    """Areas (cm2), muscle density and its low/normal attenuation parts on one labelled axial slice."""
    cm2 = pixel_area_mm2 / 100.0
    muscle_hu = hu[labels == MUSCLE].astype(np.float64)
    area = {name: float((labels == label).sum() * cm2) for name, label in (("SAT", SAT), ("VAT", VAT), ("IMAT", IMAT))}
    sma = float(muscle_hu.size * cm2)
    lama = float(((muscle_hu >= LAMA_HU[0]) & (muscle_hu <= LAMA_HU[1])).sum() * cm2)
    nama = float(((muscle_hu >= NAMA_HU[0]) & (muscle_hu <= NAMA_HU[1])).sum() * cm2)
    return {
        "SMA_cm2": sma,
        "SMD_HU": float(muscle_hu.mean()) if muscle_hu.size else float("nan"),
        "SMD_SD_HU": float(muscle_hu.std()) if muscle_hu.size else float("nan"),
        "IMAT_cm2": area["IMAT"], "SAT_cm2": area["SAT"], "VAT_cm2": area["VAT"],
        "TAT_cm2": area["SAT"] + area["VAT"] + area["IMAT"],
        "VAT_SAT_ratio": area["VAT"] / area["SAT"] if area["SAT"] > 0 else float("nan"),
        "LAMA_cm2": lama, "NAMA_cm2": nama,
        "LAMA_pct_of_SMA": 100.0 * lama / sma if sma > 0 else float("nan"),
        "NAMA_pct_of_SMA": 100.0 * nama / sma if sma > 0 else float("nan"),
    }


def patient_indices(measures: dict, patient: dict | None) -> dict:
    """SMI, SATI, VATI (cm2/m2), BMI, and the flags their cut-offs decide; empty without a height."""
    patient = patient or {}
    height = patient.get("height_m")
    out: dict = {}
    if not height or not (0.4 <= float(height) <= 2.5):
        return out
    h2 = float(height) ** 2
    out.update({"SMI_cm2_m2": measures["SMA_cm2"] / h2, "SATI_cm2_m2": measures["SAT_cm2"] / h2,
                "VATI_cm2_m2": measures["VAT_cm2"] / h2})
    weight = patient.get("weight_kg")
    bmi = float(weight) / h2 if weight else None
    if bmi is not None:
        out["BMI_kg_m2"] = bmi
    sex = (patient.get("sex") or "").upper()[:1]
    flags = {}
    if sex in ("M", "F") and bmi is not None:
        band = "bmi_lt_25" if bmi < 25 else "bmi_ge_25"
        flags["sarcopenia"] = out["SMI_cm2_m2"] < CUTOFFS["sarcopenia_smi"][sex][band]
    if bmi is not None and not math.isnan(measures["SMD_HU"]):
        band = "bmi_lt_25" if bmi < 25 else "bmi_ge_25"
        flags["myosteatosis"] = measures["SMD_HU"] < CUTOFFS["myosteatosis_smd"][band]
    if flags:
        out["flags"] = flags
    return out


def level_report(measures: dict, patient: dict | None, with_flags: bool = True) -> dict:
    """Measures, the patient-normalised indices, and every flag that can be decided, with sources.
    The flags' cut-offs are defined at L3 only: other levels get the indices without flags."""
    report = dict(measures)
    if "SMA_cm2" not in measures:   # the level's slice was not processed
        return report
    extra = patient_indices(measures, patient)
    flags = extra.pop("flags", {})
    report.update(extra)
    if not with_flags:
        return report
    flags["visceral_obesity"] = measures["VAT_cm2"] > CUTOFFS["visceral_obesity_vat_cm2"]
    report["flags"] = flags
    report["flag_sources"] = {name: SOURCES[name] for name in flags}
    return report
