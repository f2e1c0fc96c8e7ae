"""Any RSS or Atom feed, through feedparser. Entries that point at arXiv become that arXiv paper."""
from __future__ import annotations

import calendar
import datetime as dt
import logging
import xml.sax

import feedparser

from .. import ids
from ..config import SourceSettings
from ..errors import ParseError
from ..models import FetchedPaper, FetchResult
from .http import HttpClient
from .text import html_to_text, looks_like_name_list, one_line, split_authors

log = logging.getLogger(__name__)


def parse_feed(data: bytes, source: str = "feed") -> list[FetchedPaper]:
    if not data or not data.strip():
        raise ParseError("empty response, expected an RSS or Atom feed", source=source)
    d = feedparser.parse(data)
    if not d.get("version"):
        # feedparser accepts almost anything; no version means it found no feed at all.
        reason = one_line(str(d.get("bozo_exception") or "no <rss> or <feed> element"))
        raise ParseError(f"not an RSS or Atom feed: {reason}", source=source)
    papers = [p for p in map(_paper, d.entries) if p is not None]
    if d.get("bozo"):
        reason = one_line(str(d.get("bozo_exception")))
        if not papers and isinstance(d.get("bozo_exception"), xml.sax.SAXException):
            # Broken XML with nothing recovered is a broken file, not an empty day.
            raise ParseError(f"not an RSS or Atom feed: malformed XML ({reason})", source=source)
        log.info("feed parsed leniently: %s", reason, extra={"source": source})
    return papers


def _paper(entry) -> FetchedPaper | None:
    link = (entry.get("link") or "").strip() or None
    title = one_line(html_to_text(entry.get("title") or ""))
    if not link and not title:
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
        categories=[t.get("term") for t in entry.get("tags") or [] if t.get("term")],
        published=_published(entry),
    )


def _arxiv_id(entry) -> tuple[str, int | None] | None:
    candidates = [entry.get("id"), entry.get("link")] + [l.get("href") for l in entry.get("links") or []]
    for text in candidates:
        if text:
            found = ids.find_arxiv_id(text)
            if found:
                return found
    return None


def _pdf_link(entry) -> str | None:
    for l in entry.get("links") or []:
        if l.get("type") == "application/pdf" and l.get("href"):
            return l["href"]
    return None


def _summary(entry) -> str:
    # Atom <content> is usually the fuller text; RSS puts everything into <description>.
    contents = entry.get("content") or []
    text = contents[0].get("value") if contents else None
    return html_to_text(text or entry.get("summary") or "")


def _authors(entry) -> list[str]:
    names = [a.get("name", "") for a in entry.get("authors") or [] if a.get("name")]
    if not names and entry.get("author"):
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
    return dt.datetime.fromtimestamp(calendar.timegm(t), tz=dt.timezone.utc)


def fetch_feed(client: HttpClient, settings: SourceSettings, day: dt.date,
               etag: str | None = None, last_modified: str | None = None) -> FetchResult:
    r = client.get(settings.url, etag=etag, last_modified=last_modified, source=settings.name)
    if r.not_modified:
        return FetchResult(settings.name, day, [], not_modified=True, etag=r.etag, last_modified=r.last_modified)
    try:
        papers = parse_feed(r.content, source=settings.name)
    except ParseError as e:
        raise ParseError(e.message, source=settings.name, url=r.url) from e
    return FetchResult(settings.name, day, papers, etag=r.etag, last_modified=r.last_modified)
