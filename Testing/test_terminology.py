"""The segments' terminology codes resolve in Slicer's terminology logic once the module's context is loaded."""
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is part of the test requirements")

from AdiposeSegLib.reporting.terminology import TERM_FILE, terminology_text
from AdiposeSegLib.tissues import COLORS, DESCRIPTIONS, LABELS, TERMINOLOGY
from AdiposeSegLib.reporting.writers import terminology_tag


def test_shipped_term_file_is_current():
    assert TERM_FILE.read_text() == terminology_text()


def _resolves(logic, label) -> bool:
    """True when the loaded terminologies know the segment's type: its label and colour come back."""
    entry = slicer.vtkSlicerTerminologyEntry()
    assert logic.DeserializeTerminologyEntry(terminology_tag(label), entry)
    logic.UpdateEntryFromLoadedTerminologies(entry, [], [])
    found = entry.GetTypeModifierObject() if TERMINOLOGY[label][2] else entry.GetTypeObject()
    return found.GetSlicerLabel() == DESCRIPTIONS[label].lower() and tuple(found.GetRecommendedDisplayRGBValue()) == COLORS[label]


def test_every_segment_code_resolves_with_the_module_context():
    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    assert not any(_resolves(logic, label) for label in LABELS)  # Slicer's lists alone cannot resolve them
    assert logic.LoadTerminologyFromFile(str(TERM_FILE)) == "Segmentation category and type - AdiposeSeg"
    for label in LABELS:
        assert _resolves(logic, label), TERMINOLOGY[label]
