"""The import rule between layers: a lower layer never imports a higher one.

Every module of the package is parsed (``ast``; imports inside functions, ``if TYPE_CHECKING:`` blocks and relative
imports count) and each import of ``abharness.<top>`` is checked against the table below, which README's
Architecture section repeats. A module may import its own layer and the layers below it, never above:

* core (0): imports nothing of the project except the core;
* adapters (1): the core and other adapters, never a use case or a front door;
* use cases (2): the core, adapters and other use cases;
* front doors (3): anything.

The core is also checked for purity: it imports no module that does I/O, reads the clock or the environment, or
belongs to a framework, a database or FAISS (``IMPURE``).

A top-level package or module missing from the table fails the test until someone places it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

LAYER_NAMES = ("core", "adapter", "use case", "front door")
ROOT = "__root__"  # the package's own __init__.py

#: top-level name under abharness/ -> layer. Keep README's Architecture table in step with this one.
LAYERS: dict[str, int] = {
    # core: pure, no I/O, no clock, no environment. errors.py is the package's exception tree (pure, a leaf).
    "core": 0,
    "errors": 0,
    # adapters: the outside world behind small Protocols, plus the boundary schemas and file helpers they share.
    "backends": 1,  # SearchBackend: local FAISS + encoder, remote index server, build_backends
    "index": 1,  # FAISS index files
    "encoders": 1,  # sentence-transformers / ONNX encoders, embedding cache, fingerprints
    "stores": 1,  # EventStore: SQLite, PostgreSQL, Parquet/DuckDB, Spark, JetStream; the writer and spool
    "observability": 1,  # Prometheus collectors (proxy metrics, experiment-statistics gauges)
    "data": 1,  # data set loaders and the downloader
    "config": 1,  # the experiment file (pydantic, at the boundary)
    "config_layers": 1,  # its layers:/holdout: sections (several experiments at once)
    "fsutil": 1,  # atomic file writes
    # use cases: take their adapters as arguments.
    "serve": 2,  # the proxy's request handling (Service, state)
    "analysis": 2,  # analyze, and the periodic exporter (analysis/exporter.py)
    "evaluation": 2,
    "replay": 2,
    "simulate": 2,
    "finetune": 2,
    "export": 2,  # ONNX export and its agreement check
    "report": 2,  # HTML pages of the use cases' results
    # front doors: parse, call a use case, render, translate errors.
    "api": 3,  # FastAPI create_app, index server
    "cli": 3,  # typer
    "library": 3,  # the calls a notebook needs, re-exported by `import abharness`
    ROOT: 3,  # `import abharness`: the package root
    "demo": 3,  # drives the whole system as a user would, through the HTTP front door (api.create_app)
    "testing": 3,  # fakes and helpers for tests; nothing in the package imports it
}


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    source: str  # top-level name of the importing module
    target: str  # top-level name of the imported module
    source_layer: int
    target_layer: int

    def __str__(self) -> str:
        return (f"{self.path}:{self.line}: {self.source} ({LAYER_NAMES[self.source_layer]}) imports {self.target} "
                f"({LAYER_NAMES[self.target_layer]}), a higher layer: move the code, or pass it in as an argument")


def _module_name(path: Path, package_dir: Path) -> tuple[str, bool]:
    rel = path.relative_to(package_dir.parent).with_suffix("")
    parts = list(rel.parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join(parts), is_pkg


def _top(module: str, package: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def imported_modules(path: Path, package_dir: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import of the package in ``path``, wherever it sits in the file."""
    package = package_dir.name
    module, is_pkg = _module_name(path, package_dir)
    here = module.split(".") if is_pkg else module.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not (target == package or target.startswith(package + ".")):
                continue
            if target == package:  # `from abharness import data` imports the subpackage, `__version__` the root
                for alias in node.names:
                    yield node.lineno, f"{package}.{alias.name}" if (package_dir / alias.name).exists() or (
                        package_dir / f"{alias.name}.py").exists() else package
            else:
                yield node.lineno, target


def check(package_dir: Path, layers: Mapping[str, int]) -> tuple[list[Violation], set[str]]:
    """(imports that go up a layer, top-level names missing from ``layers``) for the package at ``package_dir``."""
    package = package_dir.name
    violations: list[Violation] = []
    unplaced: set[str] = set()
    for path in sorted(package_dir.rglob("*.py")):
        module, _ = _module_name(path, package_dir)
        source = _top(module, package)
        if source not in layers:
            unplaced.add(source)
            continue
        for line, target_module in imported_modules(path, package_dir):
            target = _top(target_module, package)
            if target not in layers:
                unplaced.add(target)
            elif layers[target] > layers[source]:
                violations.append(Violation(path.relative_to(package_dir.parent), line, source, target, layers[source],
                                            layers[target]))
    return violations, unplaced


def test_no_lower_layer_imports_a_higher_one() -> None:
    import abharness

    package_dir = Path(abharness.__file__).parent
    violations, unplaced = check(package_dir, LAYERS)
    assert not unplaced, (f"top-level packages/modules {sorted(unplaced)} are not in the layer table of "
                          "tests/test_layers.py (and README's Architecture section): place them")
    assert not violations, "lower layers import higher ones:\n" + "\n".join(map(str, violations))


def test_every_placed_name_exists() -> None:
    """A stale row (a package that was moved or removed) would hide a placement mistake: keep the table exact."""
    import abharness

    package_dir = Path(abharness.__file__).parent
    present = {p.name for p in package_dir.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    present |= {p.stem for p in package_dir.glob("*.py") if p.name != "__init__.py"}
    assert set(LAYERS) - {ROOT} == present


#: what the pure core may not touch: I/O, the clock, the environment, threads, frameworks, databases, FAISS, models.
IMPURE = frozenset({
    "os", "sys", "time", "datetime", "pathlib", "io", "socket", "subprocess", "threading", "asyncio", "logging",
    "sqlite3", "psycopg", "psycopg2", "faiss", "fastapi", "starlette", "uvicorn", "httpx", "requests", "anyio",
    "prometheus_client", "torch", "sentence_transformers", "onnxruntime", "typer", "rich", "pydantic",
})


def foreign_imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level module) of every absolute import of another distribution or the standard library."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.lineno, node.module.split(".")[0]


def test_core_is_pure() -> None:
    import abharness

    package_dir = Path(abharness.__file__).parent
    core = [*sorted((package_dir / "core").rglob("*.py")), package_dir / "errors.py"]
    bad = [f"{p.relative_to(package_dir.parent)}:{line}: imports {mod}" for p in core
           for line, mod in foreign_imports(p) if mod in IMPURE]
    assert not bad, "the pure core does I/O, reads the clock or the environment, or uses a framework:\n" + "\n".join(bad)


def test_purity_check_sees_nested_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import numpy as np\n\n\ndef now():\n    import time\n    from os import environ\n", encoding="utf-8")
    assert [m for _, m in foreign_imports(f) if m in IMPURE] == ["time", "os"]


def _tree(root: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        f = root / "pkg" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text, encoding="utf-8")
    for d in [root / "pkg", *(p for p in (root / "pkg").rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    return root / "pkg"


SYNTHETIC_LAYERS = {"core": 0, "errors": 0, "stores": 1, "serve": 2, "cli": 3, ROOT: 3}


def test_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, {
        "errors.py": "",
        "core/a.py": "from pkg.errors import E\nfrom . import b\n",
        "core/b.py": "",
        "stores/s.py": "from pkg.core.a import x\n",
        "serve/v.py": "import pkg.stores.s\nfrom pkg.core import a\n",
        "cli/main.py": "from pkg.serve import v\nfrom pkg import errors\nimport pkg\n",
    })
    assert check(pkg, SYNTHETIC_LAYERS) == ([], set())


@pytest.mark.parametrize(("rel", "text", "line", "source", "target"), [
    ("core/a.py", "import os\n\n\ndef f():\n    from pkg.serve import v\n", 5, "core", "serve"),  # inside a function
    ("core/a.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.stores.s\n", 3, "core", "stores"),
    ("core/a.py", "from pkg import __version__\n", 1, "core", ROOT),  # the root package is a front door
    ("stores/s.py", "from ..cli.main import app\n", 1, "stores", "cli"),  # relative import
    ("stores/s.py", "from pkg import serve\n", 1, "stores", "serve"),  # a subpackage imported by name
    ("serve/v.py", "class C:\n    def m(self):\n        import pkg.cli.main\n", 3, "serve", "cli"),
])
def test_checker_finds_an_upward_import(tmp_path: Path, rel: str, text: str, line: int, source: str,
                                        target: str) -> None:
    files = {"errors.py": "", "core/a.py": "", "stores/s.py": "", "serve/v.py": "", "cli/main.py": ""}
    pkg = _tree(tmp_path, {**files, rel: text})
    violations, unplaced = check(pkg, SYNTHETIC_LAYERS)
    assert unplaced == set()
    assert [(v.path.as_posix(), v.line, v.source, v.target) for v in violations] == [(f"pkg/{rel}", line, source,
                                                                                       target)]


def test_checker_reports_unplaced_packages(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, {"core/a.py": "", "newthing/z.py": "", "cli/main.py": "import pkg.elsewhere.q\n",
                           "elsewhere/q.py": ""})
    _, unplaced = check(pkg, SYNTHETIC_LAYERS)
    assert unplaced == {"newthing", "elsewhere"}
