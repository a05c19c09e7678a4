"""The packages import one way, in the order data flows, read from the source with ``ast``."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Each package and the project packages it may import. The first four are what a Beam worker
# runs; training and scheduler sit on top, beside each other; service (the API and its console,
# which exports verified predictions through training's code) above training.
MAY_IMPORT = {
    "storage": set(),
    "model": {"storage"},
    "transforms": {"storage", "model"},
    "pipeline": {"storage", "model", "transforms"},
    "training": {"storage", "model", "transforms", "pipeline"},
    "scheduler": {"storage", "model", "transforms", "pipeline"},
    "service": {"storage", "model", "transforms", "pipeline", "training"},
    "templates": {"storage", "model", "transforms", "pipeline"},
    "bench": {"storage", "model", "transforms", "pipeline", "training", "scheduler", "service"},
}
PROJECT = set(MAY_IMPORT) | {"tests"}
WORKER_PACKAGES = ("storage", "model", "transforms", "pipeline")


def imported_packages(source: str, package: str) -> set[str]:
    """The project's top-level packages that ``source`` (a module of ``package``) imports,
    anywhere: at the top, in functions, under ``TYPE_CHECKING``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package if node.level else (node.module or "")]
        else:
            continue
        found.update(top for top in (name.split(".")[0] for name in names) if top in PROJECT)
    found.discard(package)
    return found


def _modules(package: str) -> list[pathlib.Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_packages_import_only_the_layers_below(package):
    wrong = {}
    for path in _modules(package):
        extra = imported_packages(path.read_text(encoding="utf-8"), package) - MAY_IMPORT[package]
        if extra:
            wrong[str(path.relative_to(ROOT))] = sorted(extra)
    assert not wrong, f"{package} may import only {sorted(MAY_IMPORT[package])}: {wrong}"


def test_what_workers_run_imports_nothing_of_the_tools_above():
    above = {"training", "scheduler", "service", "templates", "bench", "tests"}
    for package in WORKER_PACKAGES:
        for path in _modules(package):
            assert not imported_packages(path.read_text(encoding="utf-8"), package) & above, path


def test_the_check_sees_every_kind_of_import():
    source = (
        "import service.api\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from training.evaluate import Report\n"
        "def f():\n"
        "    from scheduler import cli\n"
        "    import numpy, pipeline.run as run\n"
        "from . import sibling\n"
        "from .other import thing\n"
    )
    assert imported_packages(source, "model") == {"service", "training", "scheduler", "pipeline"}


def test_every_package_is_installed_and_linted():
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert packages == PROJECT, "a new package needs its row in MAY_IMPORT"
    setup = (ROOT / "setup.py").read_text(encoding="utf-8")
    listed = set(re.findall(r'"(\w+)"', re.search(r"packages=\[([^\]]*)\]", setup).group(1)))
    assert listed == set(MAY_IMPORT) - {"templates", "bench"}
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    linted = set(re.search(r"ruff check (.*)", makefile).group(1).split())
    assert PROJECT <= linted
