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


def test_precompile_writes_bytecode_for_a_module_imported_only_inside_a_function(tmp_path):
    """`make venv` installs without bytecode and then compiles what digestd imports: a module named
    only in a function body must be compiled too, and that even where PYTHONDONTWRITEBYTECODE is set."""
    import importlib.util
    import os
    import subprocess
    import sys

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "top.py").write_text("def later():\n    import lazydep.inner\n    return lazydep.inner\n")
    (tmp_path / "lazydep").mkdir()
    (tmp_path / "lazydep" / "__init__.py").write_text("")
    (tmp_path / "lazydep" / "inner.py").write_text("VALUE = 1\n")
    (tmp_path / "unused.py").write_text("VALUE = 2\n")
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import precompile, pathlib; "
            "print(precompile.precompile(pathlib.Path(sys.argv[1]) / 'pkg', 'pkg'))")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(ROOT / "scripts")], env=env,
                         capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) > 0
    for module in ("pkg/top.py", "lazydep/inner.py"):
        assert Path(importlib.util.cache_from_source(str(tmp_path / module))).exists(), module
    assert not Path(importlib.util.cache_from_source(str(tmp_path / "unused.py"))).exists()
