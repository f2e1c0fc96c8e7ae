"""Any RSS or Atom feed, through feedparser. Entries that point at arXiv become that arXiv paper."""
from __future__ import annotations

import calendar
import datetime as dt
import logging
import re
import xml.sax
from collections import Counter

import feedparser

from .. import ids
from ..config import SourceSettings
from ..errors import ParseError
from ..models import FetchedPaper, FetchResult
from ..safety import clean_text, safe_url
from .clean import ParseLimits, finish, safe_datetime
from .http import HttpClient
from .text import html_to_text, looks_like_name_list, one_line, split_authors

log = logging.getLogger(__name__)


# A complete feed ends with the close of its root element; a cut-off download does not.
_CLOSED = re.compile(rb"</(?:[\w.\-]+:)?(?:rss|feed|RDF)\s*>(?:[\s\x00]|<!--.*?-->|<\?.*?\?>)*$",
                     re.IGNORECASE | re.DOTALL)


def parse_feed(data: bytes, source: str = "feed", limits: ParseLimits | None = None) -> list[FetchedPaper]:
    if not data or not data.strip():
        raise ParseError("empty response, expected an RSS or Atom feed", source=source)
    try:
        d = feedparser.parse(data)
    except Exception as e:  # noqa: BLE001 - feedparser is third-party code on hostile input
        raise ParseError(f"not an RSS or Atom feed: {type(e).__name__}", source=source) from e
    if not d.get("version"):
        # feedparser accepts almost anything; no version means it found no feed at all.
        reason = clean_text(str(d.get("bozo_exception") or "no <rss> or <feed> element"), 200, one_line=True)
        raise ParseError(f"not an RSS or Atom feed: {reason}", source=source)
    if d.get("bozo"):
        reason = clean_text(str(d.get("bozo_exception")), 200, one_line=True)
        if isinstance(d.get("bozo_exception"), xml.sax.SAXException):
            if not _CLOSED.search(data[-4096:]):
                # Its last entries would be stored cut off, or missing while the day counts as done.
                raise ParseError(f"truncated feed: the document ends before its root element is closed ({reason})",
                                 source=source)
            if not d.entries:
                # Broken XML with nothing recovered is a broken file, not an empty day.
                raise ParseError(f"not an RSS or Atom feed: malformed XML ({reason})", source=source)
        log.info("feed parsed leniently: %s", reason, extra={"source": source})
    papers = []
    dropped: Counter = Counter()
    for entry in d.entries:
        try:
            paper = _paper(entry)
        except (TypeError, ValueError, AttributeError, OverflowError):   # a field of an unexpected shape
            paper = None
        if paper is None:
            dropped["without a title"] += 1
        else:
            papers.append(paper)
    return finish(papers, source, limits, dropped)


def _paper(entry) -> FetchedPaper | None:
    link = safe_url(_str(entry.get("link"))) or _alternate(entry)
    title = one_line(html_to_text(_str(entry.get("title"))))
    if not title:
        return None
    parsed = _arxiv_id(entry)
    bare, version = parsed if parsed else (None, None)
    return FetchedPaper(
        key=ids.paper_key(bare, link, title),
        title=title,
        abstract=_summary(entry),
        authors=_authors(entry),
        arxiv_id=bare,
        version=version,
        url=link or (ids.abs_url(bare) if bare else None),
        pdf_url=ids.pdf_url(bare) if bare else _pdf_link(entry),
        categories=[t.get("term") for t in entry.get("tags") or [] if isinstance(t, dict) and isinstance(t.get("term"), str)],
        published=_published(entry),
    )


def _str(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _alternate(entry) -> str | None:
    for l in entry.get("links") or []:
        if isinstance(l, dict) and l.get("rel", "alternate") == "alternate" and safe_url(l.get("href")):
            return l["href"].strip()
    return None


def _arxiv_id(entry) -> tuple[str, int | None] | None:
    candidates = [entry.get("id"), entry.get("link")] + [l.get("href") for l in entry.get("links") or []]
    for text in candidates:
        if isinstance(text, str) and text:
            found = ids.find_arxiv_id(text)
            if found:
                return found
    return None


def _pdf_link(entry) -> str | None:
    for l in entry.get("links") or []:
        if isinstance(l, dict) and l.get("type") == "application/pdf" and safe_url(l.get("href")):
            return l["href"].strip()
    return None


def _summary(entry) -> str:
    # Atom <content> is usually the fuller text; RSS puts everything into <description>.
    contents = entry.get("content") or []
    text = contents[0].get("value") if contents and isinstance(contents[0], dict) else None
    return html_to_text(_str(text) or _str(entry.get("summary")))


def _authors(entry) -> list[str]:
    names = [a["name"] for a in entry.get("authors") or [] if isinstance(a, dict) and _str(a.get("name"))]
    if not names and _str(entry.get("author")):
        names = [entry["author"]]
    out: list[str] = []
    for name in names:
        # arXiv-style feeds put every author into one string; a lone "Last, First" stays whole.
        out.extend(split_authors(name) if looks_like_name_list(name) or " and " in name else [one_line(name)])
    return [n for n in out if n]


def _published(entry) -> dt.datetime | None:
    t = entry.get("published_parsed") or entry.get("updated_parsed")
    if not t:
        return None
    try:
        return safe_datetime(dt.datetime.fromtimestamp(calendar.timegm(t), tz=dt.timezone.utc))
    except (OverflowError, OSError, ValueError, TypeError):
        return None


def fetch_feed(client: HttpClient, settings: SourceSettings, day: dt.date,
               etag: str | None = None, last_modified: str | None = None,
               limits: ParseLimits | None = None) -> FetchResult:
    r = client.get(settings.url, etag=etag, last_modified=last_modified, source=settings.name)
    if r.not_modified:
        return FetchResult(settings.name, day, [], not_modified=True, etag=r.etag, last_modified=r.last_modified)
    try:
        papers = parse_feed(r.content, source=settings.name, limits=limits)
    except ParseError as e:
        raise ParseError(e.message, source=settings.name, url=r.url) from e
    return FetchResult(settings.name, day, papers, etag=r.etag, last_modified=r.last_modified)
