"""The package's shape, checked on its source: parts import only downwards, no circles, each
outside system's internals behind its one adapter, no module over 300 lines, and a training core
that loads neither Optuna nor MLflow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "platform" / "rnnlab"
# Parts from the top down (docs/ARCHITECTURE.md): a module imports from its own part or below.
FLOORS = {"cli": 0, "reports": 1, "dashboards": 2, "study": 3, "tracking": 4, "train": 5,
          "core": 6, "files": 7, "errors": 7, "interrupts": 7, "retrying": 7}
# Private names of Optuna and MLflow, and the one module allowed to use them.
PRIVATE = {"._storage": "study/storage.py", "._trial_id": "study/storage.py",
           "optuna.storages.journal._": "study/storage.py",
           "._tracking_client": "tracking/internals.py"}
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every rnnlab module ``path`` imports, lazily or not (``from x import y`` counts y when
    it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("rnnlab")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rnnlab"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names} & known
    return found & known


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # the package itself (lazy exports) has none


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, set(modules)) for m, p in modules.items()}


def test_every_module_belongs_to_a_part(graph):
    assert {_part(m) for m in graph} - {None, "__main__"} <= set(FLOORS)


def test_no_import_goes_up(graph):
    upward = [(m, i) for m, imports in graph.items() for i in imports
              if _part(m) in FLOORS and _part(i) in FLOORS
              and FLOORS[_part(i)] < FLOORS[_part(m)]]
    assert upward == []


def test_no_import_circle(graph):
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                return [*path, module, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, module])):
                return cycle
        state[module] = 2
        return None

    cycles = [c for m in sorted(graph) if m not in state and (c := visit(m, []))]
    assert cycles == []


def test_private_optuna_and_mlflow_names_stay_in_their_adapter():
    misplaced = [(str(path.relative_to(PACKAGE)), name)
                 for path in PACKAGE.rglob("*.py") for name, home in PRIVATE.items()
                 if name in path.read_text() and path.relative_to(PACKAGE).as_posix() != home]
    assert misplaced == []


def test_outside_tracking_nothing_touches_the_mlflow_client():
    users = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
             if "MlflowClient" in p.read_text() and p.relative_to(PACKAGE).parts[0] != "tracking"]
    assert users == []


def test_no_module_is_over_300_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_training_core_imports_neither_optuna_nor_mlflow():
    core = [m for m in _modules() if _part(m) == "core"] + ["rnnlab.train"]
    code = (f"import sys; import {', '.join(core)}; "
            "print(sorted(m for m in ('optuna', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
