"""Where the Jinja templates are: ``templates/`` at the top of a source checkout, or the copy the
wheel ships as ``digestd/templates``."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).parent


def templates_dir() -> Path:
    # In a wheel the templates sit inside the package; in a checkout (and an editable install) they
    # are the top-level folder beside it, so editing a template needs no reinstall.
    for candidate in (_PACKAGE / "templates", _PACKAGE.parent / "templates"):
        if (candidate / "email").is_dir():
            return candidate
    raise FileNotFoundError(f"digestd's templates are missing: looked in {_PACKAGE / 'templates'} and {_PACKAGE.parent / 'templates'}")
