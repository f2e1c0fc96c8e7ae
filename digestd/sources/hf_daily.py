"""Hugging Face Daily Papers: ``GET /api/daily_papers?date=YYYY-MM-DD&limit=100&p=PAGE``, a JSON array.

The list API wraps each paper (``[{"paper": {...}, "title": ..., ...}]``); the single-paper API
(``/api/papers/ID``, and the captured sample) serves the paper object itself. Both are accepted.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from urllib.parse import quote

from .. import ids
from ..config import SourceSettings
from ..errors import ParseError
from ..models import FetchedPaper, FetchResult
from ..safety import clean_text, safe_url
from .clean import ParseLimits, finish, safe_datetime
from .http import HttpClient
from .text import one_line, unwrap

log = logging.getLogger(__name__)

DEFAULT_URL = "https://huggingface.co/api/daily_papers"

# Copied into FetchedPaper.extra when present: useful to rank and to show, not part of the core shape.
_EXTRA_KEYS = ("ai_summary", "ai_keywords", "githubRepo", "githubStars", "projectPage", "submittedOnDailyAt")


def parse_hf_daily(data: bytes, source: str = "hf", limits: ParseLimits | None = None) -> list[FetchedPaper]:
    return _parse_page(data, source, limits)[0]


def _parse_page(data: bytes, source: str, limits: ParseLimits | None) -> tuple[list[FetchedPaper], int]:
    """The papers of one answer, and how many items it had (skipped ones included: paging counts them)."""
    items = _load(data, source)
    papers = []
    dropped: Counter = Counter()
    for item in items:
        paper = _paper(item) if isinstance(item, dict) else None
        if paper is None:
            dropped["without an id or title"] += 1
            continue
        papers.append(paper)
    return finish(papers, source, limits, dropped), len(items)


def _load(data: bytes, source: str) -> list:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ParseError(f"not a Hugging Face papers list: invalid JSON ({one_line(str(e))[:200]})", source=source) from e
    except RecursionError as e:
        raise ParseError("not a Hugging Face papers list: JSON nested too deeply", source=source) from e
    if isinstance(doc, dict) and "error" in doc:
        raise ParseError(f"Hugging Face API error: {clean_text(str(doc['error']), 300, one_line=True)}", source=source)
    if not isinstance(doc, list):
        raise ParseError(f"not a Hugging Face papers list: expected a JSON array, got {type(doc).__name__}",
                         source=source)
    if doc and not any(isinstance(item, dict) for item in doc):
        raise ParseError("not a Hugging Face papers list: array items must be objects", source=source)
    return doc


def _str(value: object) -> str:
    # A number or a list where text belongs is a broken record: treated as missing, never str()-ed.
    return value.strip() if isinstance(value, str) else ""


def _paper(item: dict) -> FetchedPaper | None:
    # The list API nests the paper; the item's own title/summary are copies, used only as fallbacks.
    p = item["paper"] if isinstance(item.get("paper"), dict) else item
    hf_id = clean_text(_str(p.get("id")), 200, one_line=True)
    title = one_line(_str(p.get("title")) or _str(item.get("title")))
    if not hf_id or not title:
        return None
    parsed = ids.parse_arxiv_id(hf_id)
    bare, version = parsed if parsed else (None, None)
    hf_url = safe_url(f"https://huggingface.co/papers/{quote(hf_id, safe='./')}")
    extra = {k: p[k] for k in _EXTRA_KEYS if p.get(k) not in (None, "", [])}
    if hf_url:
        extra["hf_url"] = hf_url
    return FetchedPaper(
        key=ids.paper_key(bare, hf_url, title),
        title=title,
        abstract=unwrap(_str(p.get("summary")) or _str(item.get("summary"))),
        authors=_authors(p.get("authors")),
        arxiv_id=bare,
        version=version,
        url=ids.abs_url(bare) if bare else hf_url,
        pdf_url=ids.pdf_url(bare) if bare else None,
        published=_datetime(p.get("publishedAt") or item.get("publishedAt")),
        upvotes=_int(p.get("upvotes")),
        extra=extra,
    )


def _authors(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    names = []
    for a in value:
        name = a.get("name") if isinstance(a, dict) else a
        if isinstance(name, str) and name.strip():
            names.append(one_line(name))
    return names


def _datetime(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        return safe_datetime(dt.datetime.fromisoformat(value))
    except ValueError:
        return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# -- fetching --------------------------------------------------------------------------------------

def fetch_hf_daily(client: HttpClient, settings: SourceSettings, day: dt.date,
                   limits: ParseLimits | None = None) -> FetchResult:
    """Every paper submitted to Daily Papers on ``day``: pages of ``limit`` until a short page."""
    url = settings.url or DEFAULT_URL
    seen: dict[str, FetchedPaper] = {}
    for page in range(settings.max_pages):
        params = {"date": day.isoformat(), "limit": settings.limit, "p": page}
        r = client.get(url, params=params, source=settings.name)
        try:
            batch, items = _parse_page(r.content, settings.name, limits)
        except ParseError as e:
            raise ParseError(e.message, source=settings.name, url=r.url) from e
        new = [p for p in batch if p.key not in seen]
        for p in new:
            seen[p.key] = p
        # A short page is the last; a page with nothing new means the API ignores `p`: stop, don't loop.
        if items < settings.limit or not new:
            break
    else:
        log.warning("stopped after max_pages=%d pages; the list may be longer", settings.max_pages,
                    extra={"source": settings.name})
    return FetchResult(settings.name, day, list(seen.values()))
