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
