"""Where paper lists come from. One module per list type; ``fetch_source`` picks the right one.

Parsers take bytes and return ``FetchedPaper``s (no I/O); ``fetch_*`` functions do the I/O through
the one shared ``HttpClient`` (or the file system, for replay).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from ..config import SourceSettings
from ..errors import ConfigError
from ..models import FetchResult
from .arxiv import fetch_arxiv, parse_arxiv_feed
from .clean import ParseLimits
from .detect import detect_format, parse_any
from .feed import fetch_feed, parse_feed
from .hf_daily import fetch_hf_daily, parse_hf_daily
from .http import HttpClient, HttpResponse
from .replay import fetch_replay, list_days

__all__ = [
    "HttpClient", "HttpResponse", "ParseLimits", "detect_format", "fetch_arxiv", "fetch_feed", "fetch_hf_daily",
    "fetch_replay", "fetch_source", "list_days", "parse_any", "parse_arxiv_feed", "parse_feed",
    "parse_hf_daily",
]


def fetch_source(settings: SourceSettings, day: dt.date, client: HttpClient, *,
                 etag: str | None = None, last_modified: str | None = None,
                 base_dir: Path | None = None, limits: ParseLimits | None = None) -> FetchResult:
    """Fetch one source for one day. Raises FetchError / ParseError naming the source.

    ``etag`` / ``last_modified`` are what the last fetch of this source returned (conditional GET);
    ``base_dir`` (the config file's directory) resolves a relative replay path; ``limits`` caps
    the entries and fields of what is parsed.
    Whether the source is enabled is the caller's decision.
    """
    if settings.type == "hf_daily":
        return fetch_hf_daily(client, settings, day, limits)
    if settings.type == "arxiv":
        return fetch_arxiv(client, settings, day, etag, last_modified, limits)
    if settings.type == "feed":
        return fetch_feed(client, settings, day, etag, last_modified, limits)
    if settings.type == "replay":
        return fetch_replay(settings, day, base_dir=base_dir, limits=limits)
    raise ConfigError(f"source {settings.name!r}: unknown type {settings.type!r}",
                      [(f"sources.{settings.name}.type", f"unknown source type {settings.type!r}")])
