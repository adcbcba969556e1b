"""The module's contracts: the engine never imports slicer (except SceneLogic's scene/ package, which never imports qt),
and every slicer.util / MRML name the module and SceneLogic use exists in Slicer's own Python
(the slicer-core wheel ships Slicer's slicer/util.py and MRML classes)."""
import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "AdiposeSeg" / "AdiposeSegLib"
MODULE = ROOT / "AdiposeSeg" / "AdiposeSeg.py"
SLICER_SIDE = ROOT / "AdiposeSeg" / "AdiposeSegSlicer"    # the module's Logic, parameter node, review panel, self-test


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
    assert not imported & {"qt", "ctk", "slicer", "vtk"} or path.relative_to(ENGINE).parts[0] == "scene"
    assert not imported & {"qt", "ctk"}


def test_slicer_util_and_mrml_names_exist():
    slicer = pytest.importorskip("slicer")
    sources = MODULE.read_text() + "".join(p.read_text() for p in sorted((ENGINE / "scene").glob("*.py"))) + \
        "".join(p.read_text() for p in sorted(SLICER_SIDE.glob("*.py")))
    for name in sorted(set(re.findall(r"slicer\.util\.(\w+)", sources))):
        assert hasattr(slicer.util, name), f"slicer.util.{name}"
    for name in sorted(set(re.findall(r"slicer\.(vtk\w+)", sources))):
        assert hasattr(slicer, name), f"slicer.{name}"
    assert hasattr(slicer.vtkMRMLLayoutNode, "SlicerLayoutFourUpPlotTableView")
    assert hasattr(slicer.vtkMRMLPlotSeriesNode, "PlotTypeScatter")


def _module_class(name: str) -> ast.ClassDef:
    """A class of the module, in AdiposeSeg.py or the AdiposeSegSlicer/ files it imports them from."""
    for path in [MODULE, *sorted(SLICER_SIDE.glob("*.py"))]:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return node
    raise AssertionError(f"no class {name}")


def test_the_module_file_names_every_class_slicer_looks_up():
    """Slicer finds <Module>Widget, Logic and Test as attributes of the module file: imported ones count."""
    text = MODULE.read_text()
    for name in ("AdiposeSegLogic", "AdiposeSegTest", "AdiposeSegParameterNode"):
        assert re.search(rf"^from AdiposeSegSlicer\.\w+ import .*\b{name}\b", text, re.M), name
    assert "class AdiposeSegWidget(" in text and "class AdiposeSeg(ScriptedLoadableModule)" in text
    assert len(text.splitlines()) <= 400


def test_the_slicer_side_never_reaches_the_engine_below_scene_logic():
    """The module and its Logic call SceneLogic and read-only helpers; they do not re-implement the engine."""
    for path in [MODULE, *sorted(SLICER_SIDE.glob("*.py"))]:
        for name in re.findall(r"from AdiposeSegLib\.(\w+)", path.read_text()):
            assert name in ("scene", "errors", "tissues", "model"), (path.name, name)


def test_logic_pops_no_dialogs():
    """Dialogs belong to the widget: the Logic is also the console and batch API (issue 8)."""
    source = ast.unparse(_module_class("AdiposeSegLogic"))
    for dialog in ("errorDisplay", "confirmYesNoDisplay", "confirmOkCancelDisplay", "warningDisplay", "infoDisplay",
                   "QMessageBox", "askConfirmation=True"):
        assert dialog not in source, dialog


def test_numeric_parameters_carry_the_ui_limits():
    """Slicer's parameter-node connector resets a spin box to the parameter's range: without WithinRange
    an int gets +-2^31 and the .ui limits are lost (issue 8)."""
    ui = ET.parse(ROOT / "AdiposeSeg" / "Resources" / "UI" / "AdiposeSeg.ui")
    limits = {}
    for widget in ui.iter("widget"):
        props = {p.get("name"): p for p in widget.findall("property")}
        if "SlicerParameterName" in props and "minimum" in props:
            value = lambda p: float(next(iter(p)).text)  # noqa: E731
            limits[props["SlicerParameterName"].find("string").text] = (value(props["minimum"]), value(props["maximum"]))
    fields = {}
    for node in _module_class("AdiposeSegParameterNode").body:
        if isinstance(node, ast.AnnAssign):
            fields[node.target.id] = ast.unparse(node.annotation)
    assert limits, "no spin box bound to a parameter in the .ui"
    for name, (lo, hi) in limits.items():
        annotation = fields[name]
        m = re.search(r"WithinRange\(([-\d.]+), ([-\d.]+)\)", annotation)
        assert m, f"{name}: {annotation} has no WithinRange"
        assert (float(m.group(1)), float(m.group(2))) == (lo, hi), name


def test_widget_setup_does_not_import_torch():
    setup = next(n for n in _module_class("AdiposeSegWidget").body if isinstance(n, ast.FunctionDef) and n.name == "setup")
    source = ast.unparse(setup)
    assert "import torch" not in source and "probe=False" in source


def test_every_widget_the_module_uses_is_in_the_ui_file():
    """A button the code connects but the .ui lacks fails only inside Slicer, at module load."""
    ui = ET.parse(ROOT / "AdiposeSeg" / "Resources" / "UI" / "AdiposeSeg.ui")
    names = {w.get("name") for w in ui.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", (ROOT / "AdiposeSeg" / "AdiposeSeg.py").read_text()))
    assert "exportDicomButton" in used
    assert used - names == set()


def test_the_model_card_does_not_import_the_run_identity():
    """model_card -> onnx_backend -> running.identity -> model_card was an import cycle (issue 26 C):
    the model side imports only file hashing, which lies below both."""
    for name in ("model_card.py", "onnx_backend.py", "networks.py"):
        text = (ENGINE / "model" / name).read_text()
        assert "running.identity" not in text and "..running import identity" not in text, name


def test_scene_logic_files_stay_small():
    """SceneLogic is grouped by job (issue 26 B): no file of it over 300 lines."""
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ENGINE / "scene").glob("*.py")}
    assert len(sizes) >= 8 and max(sizes.values()) <= 300, sizes
