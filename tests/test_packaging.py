"""The wheel must carry every subpackage and the top-level templates (as ``digestd/templates``)."""
from __future__ import annotations

import tomllib
from pathlib import Path

from digestd.templates_dir import templates_dir

ROOT = Path(__file__).resolve().parent.parent


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_is_listed_for_the_wheel():
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "digestd").rglob("__init__.py")}
    listed = set(_setuptools()["packages"])
    assert found <= listed, f"missing from pyproject's packages: {sorted(found - listed)}"


def test_the_wheel_takes_its_templates_from_the_top_level_folder():
    config = _setuptools()
    assert config["package-dir"]["digestd.templates"] == "templates"
    assert "**/*" in config["package-data"]["digestd.templates"]
    for part in ("email", "feed", "web"):
        assert (ROOT / "templates" / part).is_dir()


def test_a_checkout_renders_from_the_top_level_templates():
    assert templates_dir() == ROOT / "templates"


def _imported_packages() -> set[str]:
    """Top-level names of every module digestd's own code imports (lazy imports included)."""
    import ast
    import sys

    names = set()
    for path in (ROOT / "digestd").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"digestd", "__future__"}


def test_every_library_digestd_imports_is_declared_and_none_only_for_the_tests():
    """A library that arrives only as another one's dependency disappears when that one is dropped
    (scipy did, with scikit-learn); the test extra is not installed by `pip install digestd`."""
    import importlib.metadata
    import re

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {name: deps for name, deps in project["optional-dependencies"].items() if name != "test"}

    def dist(req: str) -> str:
        return re.split(r"[\s<>=!~\[;]", req, maxsplit=1)[0].lower().replace("_", "-")

    declared = {dist(r) for r in project["dependencies"]} | {dist(r) for deps in extras.values() for r in deps}
    # SQLModel's tables are SQLAlchemy and pydantic models: it cannot come without them.
    declared |= {"sqlalchemy", "pydantic"} if "sqlmodel" in declared else set()
    by_module = importlib.metadata.packages_distributions()
    undeclared = {}
    for name in _imported_packages():
        dists = {d.lower().replace("_", "-") for d in by_module.get(name, [name])}
        if not dists & declared:
            undeclared[name] = sorted(dists)
    assert not undeclared, f"imported by digestd but not a dependency: {undeclared}"
