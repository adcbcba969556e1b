"""Imports every Python file of the extension under the running interpreter (Slicer 5.8: Python 3.9).

Packages this interpreter lacks (torch, slicer, qt, vtk, ctk ... the ones Slicer or its PyTorch
extension provide) are replaced by permissive stubs, so what is checked is our own code: syntax,
and every annotation, default, decorator and class body that Python evaluates at import time.
A PEP 604 union (`str | None`) in a signature without `from __future__ import annotations`, a
`match` statement or `zip(strict=...)` fails here on 3.9. Run: python Testing/py39/import_all.py
"""
from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUBBED = ("torch", "slicer", "qt", "vtk", "ctk", "PyTorchUtils", "SampleData", "slicer_core", "tensorboard",
           "slicerio", "ScriptedLoadableModule")


class _StubMeta(type):
    def __getattr__(cls, name):
        return _stub_class(name)

    def __getitem__(cls, item):
        return cls

    def __or__(cls, other):
        return cls

    __ror__ = __or__


def _stub_class(name: str):
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return args[0] if len(args) == 1 and isinstance(args[0], type) else _stub_class("result")()

    def __getattr__(self, attr):
        return _stub_class(attr)()

    return _StubMeta(name, (), {"__init__": __init__, "__call__": __call__, "__getattr__": __getattr__})


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _stub_class(name)
        setattr(self, name, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def _not_on_39(tree: ast.AST, path: Path) -> list[str]:
    """Calls that parse on 3.9 but fail when they run: zip(strict=), dataclass(slots= / kw_only=)."""
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            keywords = {k.arg for k in node.keywords}
            if name == "zip" and "strict" in keywords or name == "dataclass" and keywords & {"slots", "kw_only"}:
                problems.append(f"{path}:{node.lineno}: {name}({', '.join(sorted(k for k in keywords if k))}) needs Python 3.10")
    return problems


def files() -> list[Path]:
    out = [ROOT / "AdiposeSeg" / "AdiposeSeg.py"]
    for folder in ("AdiposeSeg/AdiposeSegLib", "AdiposeSeg/AdiposeSegSlicer", "training"):
        out += sorted((ROOT / folder).rglob("*.py"))
    return out


def main() -> int:
    sys.meta_path.insert(0, _StubFinder())
    sys.path[:0] = [str(ROOT / "AdiposeSeg"), str(ROOT)]
    problems = []
    for path in files():
        source = path.read_text()
        try:
            tree = ast.parse(source, str(path), feature_version=(3, 9))
        except SyntaxError as exc:
            problems.append(f"{path}:{exc.lineno}: not Python 3.9 syntax: {exc.msg}")
            continue
        problems += _not_on_39(tree, path)
        if path.stem == "__main__":
            continue  # importing it would run the command line; parsing it is the check
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "AdiposeSeg" and relative.parts[1] not in ("AdiposeSegLib", "AdiposeSegSlicer"):
            name = path.stem
        else:
            parts = relative.with_suffix("").parts[1:] if relative.parts[0] == "AdiposeSeg" else relative.with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        try:
            importlib.import_module(name)
        except Exception as exc:  # report every file, not just the first
            problems.append(f"{path}: import fails on Python {sys.version.split()[0]}: {exc.__class__.__name__}: {exc}")
    for line in problems:
        print(line)
    print(f"{len(files())} files imported on Python {sys.version.split()[0]}: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
