"""Tissue classes: stable label ids, segment names, colours and default HU windows.

Label ids in files never change: 0 background, 1 SAT, 2 VAT, 3 Muscle, 4 IMAT.
"""
from __future__ import annotations

from dataclasses import dataclass, field, asdict

BACKGROUND, SAT, VAT, MUSCLE, IMAT = 0, 1, 2, 3, 4
LABELS = (SAT, VAT, MUSCLE, IMAT)
NAMES = {SAT: "SAT", VAT: "VAT", MUSCLE: "Muscle", IMAT: "IMAT"}
DESCRIPTIONS = {
    SAT: "Subcutaneous adipose tissue",
    VAT: "Visceral adipose tissue",
    MUSCLE: "Skeletal muscle",
    IMAT: "Intermuscular adipose tissue",
}
# RGB 0..255. Muscle uses the colour Slicer's anatomy colour table gives skeletal muscle.
COLORS = {
    SAT: (230, 40, 40),
    VAT: (40, 200, 60),
    MUSCLE: (150, 80, 225),    # violet: far in hue from SAT red, VAT green and IMAT yellow, also for red-green colour blindness
    IMAT: (230, 220, 60),
}
# SNOMED CT codes, (category, type, type modifier or None), the same in the .seg.nrrd terminology tag,
# the module's Slicer terminology context (Resources/SegmentationCategoryTypeModifier-AdiposeSeg.term.json,
# written from this table by reporting/terminology.py), the DICOM SEG and the DICOM SR. SAT and muscle
# have precoordinated types; visceral and intermuscular fat are both "Adipose tissue" in SNOMED's
# body-structure hierarchy, told apart by where they lie (post-coordinated: the type modifier in Slicer
# and the SEG, also the SEG's anatomic region and the SR's finding site). README: "Codes" justifies each.
TERMINOLOGY = {
    SAT: (("85756007", "Tissue"), ("67769002", "Subcutaneous adipose tissue"), None),
    VAT: (("85756007", "Tissue"), ("55603005", "Adipose tissue"), ("52731004", "Abdominal cavity")),
    MUSCLE: (("85756007", "Tissue"), ("127954009", "Skeletal muscle"), None),
    IMAT: (("85756007", "Tissue"), ("55603005", "Adipose tissue"), ("127954009", "Skeletal muscle")),
}
TERMINOLOGY_CONTEXT = "Segmentation category and type - AdiposeSeg"

# Names users and other tools give these tissues; matched case-insensitively.
ALIASES = {
    SAT: ("sat", "subcutaneous fat", "subcutaneous_fat", "subcutaneous adipose tissue", "scat"),
    VAT: ("vat", "visceral fat", "visceral_fat", "visceral adipose tissue", "torso_fat", "torso fat"),
    MUSCLE: ("muscle", "skeletal muscle", "skeletal_muscle", "smt", "skm"),
    IMAT: ("imat", "intermuscular fat", "intermuscular adipose tissue", "intermuscular_fat"),
}


def label_for_name(name: str) -> int | None:
    """Label id for a segment name (case-insensitive, common aliases), or None."""
    key = name.strip().lower()
    for label, names in ALIASES.items():
        if key in names:
            return label
    return None


@dataclass
class HUWindows:
    """Hounsfield windows that gate the network's classes (Mitsiopoulos 1998 defaults)."""

    fat: tuple[float, float] = (-190.0, -30.0)
    muscle: tuple[float, float] = (-29.0, 150.0)

    def __post_init__(self):
        for name in ("fat", "muscle"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"HU window for {name} must have low < high, got {lo}..{hi}")
            setattr(self, name, (float(lo), float(hi)))

    def is_fat(self, hu):
        """Which voxels lie in the fat window (ends included)."""
        return (hu >= self.fat[0]) & (hu <= self.fat[1])

    def is_muscle(self, hu):
        """Which voxels lie in the muscle window (ends included)."""
        return (hu >= self.muscle[0]) & (hu <= self.muscle[1])

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SegmentOptions:
    """Everything a run can be told besides the input and the model."""

    windows: HUWindows = field(default_factory=HUWindows)
    min_island_mm2: float = 10.0   # per-slice SAT / VAT / muscle components smaller than this are removed (never IMAT)
    include_imat: bool = True
    slices: tuple[int, int] | None = None  # canonical axial slice range [start, stop)
    batch_size: int = 8
    device: str = "auto"
    find_levels: bool = True   # vertebral levels (T12..L5) from the bone; L3 indices at the level found
    claim_visceral_fat: bool = True   # unlabelled fat-range patches touching VAT (not SAT), clear of gas: VAT
    include_arms: bool = False   # False: arms lying apart beside the trunk are not measured (measuring/trunk.py)


def options_to_dict(options: SegmentOptions) -> dict:
    """Everything that changes a run's numbers, as plain JSON (recorded in results, sent to the child)."""
    return {"fat_window": list(options.windows.fat), "muscle_window": list(options.windows.muscle),
            "min_island_mm2": float(options.min_island_mm2), "include_imat": bool(options.include_imat),
            "slices": list(options.slices) if options.slices is not None else None,
            "batch_size": int(options.batch_size), "device": options.device, "find_levels": bool(options.find_levels),
            "claim_visceral_fat": bool(options.claim_visceral_fat), "include_arms": bool(options.include_arms)}


def options_from_dict(d: dict) -> SegmentOptions:
    return SegmentOptions(windows=HUWindows(fat=tuple(d["fat_window"]), muscle=tuple(d["muscle_window"])),
                          min_island_mm2=float(d["min_island_mm2"]), include_imat=bool(d["include_imat"]),
                          slices=tuple(d["slices"]) if d.get("slices") is not None else None,
                          batch_size=int(d["batch_size"]), device=d["device"], find_levels=bool(d.get("find_levels", True)),
                          claim_visceral_fat=bool(d.get("claim_visceral_fat", False)),   # (absent: a run from before the rule)
                          include_arms=bool(d.get("include_arms", True)))
