"""The last step of every parser: each field of each paper checked, coerced or dropped, and capped.

Parsers turn a format into ``FetchedPaper``s; this turns whatever a hostile or broken server put
into them into values every column can hold and every output can show. An entry that cannot be a
paper (no title, no key) is counted and logged, never returned.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
from collections import Counter
from dataclasses import dataclass, replace

from .. import ids
from ..models import FetchedPaper
from ..safety import clean_text, safe_url

log = logging.getLogger(__name__)

UTC = dt.timezone.utc
# Dates outside these years are a broken feed, not a paper (and some overflow on conversion).
FIRST_YEAR, LAST_YEAR = 1980, 2200
MAX_CATEGORIES = 100
MAX_EXTRA_ITEMS = 50
# Column lengths in store/tables.py.
MAX_ARXIV_ID = 64
MAX_ANNOUNCE_TYPE = 32


@dataclass(frozen=True)
class ParseLimits:
    """Caps on what one list may put into the store (the ``[fetch]`` settings)."""

    max_entries: int = 2000
    max_title_chars: int = 1000
    max_abstract_chars: int = 20000
    max_field_chars: int = 500      # one author name, one category, one extra value
    max_authors: int = 500


DEFAULT_LIMITS = ParseLimits()


def finish(papers: list[FetchedPaper], source: str, limits: ParseLimits | None = None,
           dropped: Counter | None = None) -> list[FetchedPaper]:
    """``papers`` with every field made safe; ones that cannot be a paper dropped, counted, logged.

    ``dropped`` carries what the parser itself already refused (reason -> count)."""
    limits = limits or DEFAULT_LIMITS
    dropped = Counter(dropped or {})
    out: list[FetchedPaper] = []
    for p in papers:
        clean, reason = _clean(p, limits)
        if clean is None:
            dropped[reason] += 1
        else:
            out.append(clean)
    if len(out) > limits.max_entries:
        dropped[f"over max_entries={limits.max_entries}"] += len(out) - limits.max_entries
        out = out[:limits.max_entries]
    if dropped:
        log.warning("%d entries skipped: %s", sum(dropped.values()),
                    ", ".join(f"{n} {why}" for why, n in dropped.most_common()), extra={"source": source})
    return out


def _clean(p: FetchedPaper, limits: ParseLimits) -> tuple[FetchedPaper | None, str]:
    title = clean_text(p.title, limits.max_title_chars, one_line=True)
    if not title:
        return None, "without a title"
    arxiv_id = p.arxiv_id if isinstance(p.arxiv_id, str) and ids.is_arxiv_key(p.arxiv_id) else None
    url = safe_url(p.url) or (ids.abs_url(arxiv_id) if arxiv_id else None)
    key = p.key if isinstance(p.key, str) else ""
    if not key or len(key) > ids.MAX_KEY_CHARS or key != clean_text(key, one_line=True):
        # A key made of a hostile link: rebuild it from what survived the checks.
        key = ids.paper_key(arxiv_id, url, title)
    return replace(
        p,
        key=key,
        title=title,
        abstract=clean_text(p.abstract, limits.max_abstract_chars),
        authors=_names(p.authors, limits.max_field_chars, limits.max_authors),
        arxiv_id=arxiv_id,
        version=_int(p.version, 1, 100_000),
        url=url,
        pdf_url=safe_url(p.pdf_url) or (ids.pdf_url(arxiv_id) if arxiv_id else None),
        categories=_names(p.categories, limits.max_field_chars, MAX_CATEGORIES),
        published=safe_datetime(p.published),
        announce_type=clean_text(p.announce_type, MAX_ANNOUNCE_TYPE, one_line=True).lower() or None,
        upvotes=_int(p.upvotes, 0, 2**31 - 1),
        extra=_extra(p.extra, limits.max_field_chars),
    ), ""


def safe_datetime(value: object) -> dt.datetime | None:
    """An aware datetime (naive is UTC; the offset it was given is kept) whose UTC time lies between
    FIRST_YEAR and LAST_YEAR, else None (9999-12-31T23:00-05:00 and 0001-01-01T00:00+01:00
    overflow when the store converts them to UTC)."""
    if not isinstance(value, dt.datetime):
        return None
    try:
        aware = value if value.utcoffset() is not None else value.replace(tzinfo=UTC)
        utc = aware.astimezone(UTC)
    except (OverflowError, ValueError, TypeError):
        return None
    return aware if FIRST_YEAR <= utc.year <= LAST_YEAR else None


def _int(value: object, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if low <= value <= high else None


def _names(values: object, max_chars: int, max_items: int) -> list[str]:
    if not isinstance(values, (list, tuple)):
        return []
    out = []
    for v in values:
        s = clean_text(v, max_chars, one_line=True)
        if s:
            out.append(s)
            if len(out) == max_items:
                break
    return list(dict.fromkeys(out))


def _extra(extra: object, max_chars: int) -> dict:
    """Only flat values: strings (links checked), finite numbers, booleans and short string lists."""
    if not isinstance(extra, dict):
        return {}
    out: dict = {}
    for k, v in extra.items():
        if not isinstance(k, str) or not clean_text(k, 64, one_line=True) == k:
            continue
        if isinstance(v, str):
            s = safe_url(v) if (k.endswith("_url") or k in ("githubRepo", "projectPage")) else clean_text(v, 4 * max_chars)
            if s:
                out[k] = s
        elif isinstance(v, bool) or (isinstance(v, int) and abs(v) < 2**53):
            out[k] = v
        elif isinstance(v, float) and math.isfinite(v):
            out[k] = v
        elif isinstance(v, list):
            items = [clean_text(x, max_chars, one_line=True) for x in v[:MAX_EXTRA_ITEMS] if isinstance(x, str)]
            if any(items):
                out[k] = [x for x in items if x]
    return out
