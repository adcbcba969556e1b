"""The module's contracts: the engine never imports slicer (except scene.py, which never imports qt),
and every slicer.util / MRML name the module and SceneLogic use exists in Slicer's own Python
(the slicer-core wheel ships Slicer's slicer/util.py and MRML classes)."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "AdiposeSeg" / "AdiposeSegLib"
MODULE = ROOT / "AdiposeSeg" / "AdiposeSeg.py"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(ENGINE.rglob("*.py")), ids=lambda p: str(p.relative_to(ENGINE)))
def test_engine_does_not_import_slicer_or_qt(path):
    imported = _imports(path)
    assert not imported & {"qt", "ctk", "slicer", "vtk"} or path.name == "scene.py"
    assert not imported & {"qt", "ctk"}


def test_slicer_util_and_mrml_names_exist():
    slicer = pytest.importorskip("slicer")
    sources = MODULE.read_text() + (ENGINE / "scene.py").read_text()
    for name in sorted(set(re.findall(r"slicer\.util\.(\w+)", sources))):
        assert hasattr(slicer.util, name), f"slicer.util.{name}"
    for name in sorted(set(re.findall(r"slicer\.(vtk\w+)", sources))):
        assert hasattr(slicer, name), f"slicer.{name}"
    assert hasattr(slicer.vtkMRMLLayoutNode, "SlicerLayoutFourUpPlotTableView")
    assert hasattr(slicer.vtkMRMLPlotSeriesNode, "PlotTypeScatter")
