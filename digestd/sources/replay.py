"""Saved lists replayed from a directory: ``YYYY-MM-DD.<json|xml|atom|rss>``, any supported format.

This is how the demo and the tests run offline. A day without a file is a day with no papers.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path

from ..config import SourceSettings
from ..errors import FetchError, ParseError
from ..models import FetchedPaper, FetchResult
from .clean import ParseLimits
from .detect import parse_any

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^(?P<day>\d{4}-\d{2}-\d{2})\.(?:json|xml|atom|rss)$", re.IGNORECASE)


def _files(path: Path) -> dict[dt.date, list[Path]]:
    by_day: dict[dt.date, list[Path]] = {}
    for f in sorted(path.iterdir()):
        m = _NAME_RE.match(f.name)
        if not m or not f.is_file():
            continue
        try:
            day = dt.date.fromisoformat(m.group("day"))
        except ValueError:  # 2025-02-30.json: a name that looks like a day but is not one
            continue
        by_day.setdefault(day, []).append(f)
    return by_day


def list_days(path: Path | str) -> list[dt.date]:
    """The days a replay directory has lists for, oldest first."""
    path = Path(path)
    if not path.is_dir():
        return []
    return sorted(_files(path))


def replay_dir(settings: SourceSettings, base_dir: Path | None = None) -> Path:
    path = Path(settings.path).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path


def fetch_replay(settings: SourceSettings, day: dt.date, *, base_dir: Path | None = None,
                 limits: ParseLimits | None = None) -> FetchResult:
    """The saved list(s) of ``day``; several files for one day are merged, first file wins a key.
    A directory that does not exist is an error, never an empty day."""
    path = replay_dir(settings, base_dir)
    if not path.exists():
        raise FetchError(f"replay directory not found: {path}", source=settings.name, url=str(path))
    if not path.is_dir():
        raise FetchError(f"replay path is not a directory: {path}", source=settings.name, url=str(path))
    papers: dict[str, FetchedPaper] = {}
    for f in _files(path).get(day, []):
        try:
            data = f.read_bytes()
        except OSError as e:
            raise FetchError(f"cannot read {f}: {e.strerror or e}", source=settings.name, url=str(f)) from e
        try:
            parsed = parse_any(data, settings.announce_types, source=settings.name, limits=limits)
        except ParseError as e:
            raise ParseError(e.message, source=settings.name, url=str(f)) from e
        for p in parsed:
            papers.setdefault(p.key, p)
    if not papers:
        log.info("no saved list for %s in %s", day, path, extra={"source": settings.name})
    return FetchResult(settings.name, day, list(papers.values()))
