"""The package's shape, checked on its source: each folder imports only the folders its
allow-list names (docs/ARCHITECTURE.md), no circles, each outside system's internals behind its
one adapter, and a training core that loads neither Optuna nor MLflow."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "platform" / "rnnlab"
BASE = ("errors", "files", "interrupts", "retrying")  # top-level modules every part may use
SERVICES = {"storage", "tracking", "train"}
# Which parts each part may import, besides itself and the base (docs/ARCHITECTURE.md).
ALLOWED = {
    "cli": {"engines", "study", "reports", "dashboards", "analysis", *SERVICES, "core"},
    "engines": {"study", "reports", *SERVICES, "core"},  # reports: confirmation runs
    "study": {*SERVICES, "core"},
    "reports": {"dashboards", "analysis", "tracking", "train", "core"},
    "dashboards": {"analysis", "core"},
    "analysis": {"storage", "tracking", "core"},
    "storage": set(),
    "tracking": {"train", "core"},
    "train": {"core"},
    "core": set(),
    "base": set(),
}
# Private names of Optuna and MLflow, and the one module allowed to use them.
PRIVATE = {"._storage": "storage/adapter.py", "._trial_id": "storage/adapter.py",
           "._replay_result": "storage/adapter.py",
           "optuna.storages.journal._": "storage/adapter.py",
           "._tracking_client": "tracking/internals.py"}


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
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
    if len(parts) == 1 or parts[1] == "__main__":
        return None  # the package itself (lazy exports) and its entry point
    return "base" if parts[1] in BASE else parts[1]


def _graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = _modules(package)
    return {m: _imports(p, set(modules)) for m, p in modules.items()}


def _forbidden(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((m, i) for m, imports in graph.items() for i in imports
                  if _part(m) and _part(i) and _part(i) != _part(m)
                  and _part(i) != "base" and _part(i) not in ALLOWED[_part(m)])


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
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

    return next((c for m in sorted(graph) if m not in state and (c := visit(m, []))), None)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return _graph()


def test_every_module_belongs_to_a_part(graph):
    assert {_part(m) for m in graph} - {None} <= set(ALLOWED)


def test_each_part_imports_only_what_its_allow_list_names(graph):
    assert _forbidden(graph) == []


def test_no_import_circle(graph):
    assert _circle(graph) is None


def test_the_checks_catch_a_forbidden_import_and_a_circle(tmp_path):
    """The same checks on a copy of the package with one import added: a dashboard that
    reaches the storage, then a storage module that imports the study's lifecycle."""
    import shutil

    copy = tmp_path / "rnnlab"
    shutil.copytree(PACKAGE, copy)
    select = copy / "dashboards" / "select.py"
    select.write_text(select.read_text() + "\nfrom rnnlab.storage.adapter import study_names\n")
    assert ("rnnlab.dashboards.select", "rnnlab.storage.adapter") in _forbidden(_graph(copy))
    keys = copy / "storage" / "keys.py"
    keys.write_text(keys.read_text() + "\nfrom rnnlab.study import status\n")
    graph = _graph(copy)
    assert ("rnnlab.storage.keys", "rnnlab.study.status") in _forbidden(graph)
    assert {"rnnlab.storage.keys", "rnnlab.study.status"} <= set(_circle(graph) or ())


def _uses(text: str, name: str) -> bool:
    """Whether ``text`` uses the private ``name`` (a whole name: ``._trial_id`` is not
    ``._trial_id_to_study_id_and_number``, an attribute of Optuna's cache of its own)."""
    return re.search(re.escape(name) + (r"(?!\w)" if name[-1] != "_" else ""), text) is not None


def test_private_optuna_and_mlflow_names_stay_in_their_adapter():
    assert _uses("frozen._trial_id)", "._trial_id")
    assert not _uses("self._trial_id_to_study_id_and_number", "._trial_id")
    assert _uses("from optuna.storages.journal._file import", "optuna.storages.journal._")
    misplaced = [(str(path.relative_to(PACKAGE)), name)
                 for path in PACKAGE.rglob("*.py") for name, home in PRIVATE.items()
                 if _uses(path.read_text(), name)
                 and path.relative_to(PACKAGE).as_posix() != home]
    assert misplaced == []


def test_outside_tracking_nothing_touches_the_mlflow_client():
    users = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
             if "MlflowClient" in p.read_text() and p.relative_to(PACKAGE).parts[0] != "tracking"]
    assert users == []


def test_the_training_core_imports_neither_optuna_nor_mlflow():
    core = [m for m in _modules() if _part(m) == "core"] + ["rnnlab.train"]
    code = (f"import sys; import {', '.join(core)}; "
            "print(sorted(m for m in ('optuna', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
