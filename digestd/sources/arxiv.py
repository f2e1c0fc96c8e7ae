"""rss.arxiv.org lists, Atom or RSS 2.0 flavour: one entry per announced paper.

Read with ElementTree rather than feedparser: the format is fixed and small, and feedparser's HTML
sanitising would touch abstracts full of ``<`` and ``$``. An empty list is normal (weekends, holidays).
"""
from __future__ import annotations

import datetime as dt
import email.utils
import logging
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable

from .. import ids
from ..config import SourceSettings
from ..errors import ParseError
from ..models import FetchedPaper, FetchResult
from ..safety import clean_text
from .clean import ParseLimits, finish, safe_datetime
from .http import HttpClient
from .text import one_line, split_authors, unwrap

log = logging.getLogger(__name__)

DEFAULT_BASE = "https://rss.arxiv.org"

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
DC = "{http://purl.org/dc/elements/1.1/}"

_ANNOUNCE_RE = re.compile(r"Announce Type:\s*(?P<type>[\w-]+)", re.IGNORECASE)
_ABSTRACT_RE = re.compile(r"\bAbstract:\s*", re.IGNORECASE)


def parse_arxiv_feed(data: bytes, announce_types: Iterable[str] = ("new", "cross"),
                     source: str = "arxiv", limits: ParseLimits | None = None) -> list[FetchedPaper]:
    """Papers of one rss.arxiv.org list, keeping only ``announce_types``.

    An entry without any announce type is kept: nothing says it is a replacement.
    """
    root = _parse_xml(data, source)
    keep = set(announce_types)
    papers = []
    dropped: Counter = Counter()
    for entry in _entries(root, source):
        paper = _paper(entry, source)
        if paper is None:
            dropped["without an arXiv id"] += 1
            continue
        if paper.announce_type is not None and paper.announce_type not in keep:
            continue
        papers.append(paper)
    return finish(papers, source, limits, dropped)


def _parse_xml(data: bytes, source: str) -> ET.Element:
    if not data or not data.strip():
        raise ParseError("empty response, expected an arXiv Atom or RSS feed", source=source)
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        raise ParseError(f"not an arXiv feed: invalid XML ({clean_text(str(e), 200, one_line=True)})",
                         source=source) from e
    except (ValueError, RecursionError) as e:   # expat refusing a document (entity amplification...)
        raise ParseError(f"not an arXiv feed: {type(e).__name__}", source=source) from e


def _entries(root: ET.Element, source: str) -> list[ET.Element]:
    if root.tag == f"{ATOM}feed":
        return root.findall(f"{ATOM}entry")
    if root.tag == "rss":
        channel = root.find("channel")
        return channel.findall("item") if channel is not None else []
    raise ParseError(f"not an arXiv feed: root element is <{_local(root.tag)}>, expected Atom <feed> or <rss>",
                     source=source)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(entry: ET.Element, *tags: str) -> str:
    for tag in tags:
        el = entry.find(tag)
        if el is not None and el.text and el.text.strip():
            return el.text.strip()
    return ""


def _paper(entry: ET.Element, source: str) -> FetchedPaper | None:
    raw_id = _text(entry, f"{ATOM}id", "guid")
    link = _link(entry)
    summary = _text(entry, f"{ATOM}summary", "description")
    parsed = ids.parse_arxiv_id(raw_id) or ids.find_arxiv_id(link) or ids.find_arxiv_id(summary[:200])
    title = one_line(_text(entry, f"{ATOM}title", "title"))
    if parsed is None:
        log.debug("arXiv entry without an arXiv id skipped: %r", clean_text(raw_id or title, 200, one_line=True),
                  extra={"source": source})
        return None
    bare, version = parsed
    return FetchedPaper(
        key=bare,
        title=title,
        abstract=_abstract(summary),
        authors=_authors(entry),
        arxiv_id=bare,
        version=version,
        url=link or ids.abs_url(bare),
        pdf_url=ids.pdf_url(bare),
        categories=_categories(entry),
        published=_published(entry),
        announce_type=_announce_type(entry, summary),
        extra=_extra(entry),
    )


def _link(entry: ET.Element) -> str:
    for el in entry.findall(f"{ATOM}link"):
        if el.get("rel", "alternate") == "alternate" and el.get("href"):
            return el.get("href").strip()
    return _text(entry, "link")


def _abstract(summary: str) -> str:
    # "arXiv:2508.13167v1 Announce Type: new \nAbstract: ..." -> what follows "Abstract:".
    m = _ABSTRACT_RE.search(summary)
    return unwrap(summary[m.end():] if m else summary)


def _announce_type(entry: ET.Element, summary: str) -> str | None:
    explicit = _text(entry, f"{ARXIV}announce_type")
    if explicit:
        return explicit.lower()
    m = _ANNOUNCE_RE.search(summary)
    return m.group("type").lower() if m else None


def _authors(entry: ET.Element) -> list[str]:
    names: list[str] = []
    for el in entry.findall(f"{DC}creator"):
        names.extend(split_authors(el.text or ""))
    if not names:  # Atom <author><name> as a fallback for arXiv-like feeds
        for el in entry.findall(f"{ATOM}author/{ATOM}name"):
            names.extend(split_authors(el.text or ""))
    return names


def _categories(entry: ET.Element) -> list[str]:
    cats = [el.get("term", "").strip() for el in entry.findall(f"{ATOM}category")]
    cats += [(el.text or "").strip() for el in entry.findall("category")]
    return list(dict.fromkeys(c for c in cats if c))


def _published(entry: ET.Element) -> dt.datetime | None:
    iso = _text(entry, f"{ATOM}published", f"{ATOM}updated")
    if iso:
        try:
            return safe_datetime(dt.datetime.fromisoformat(iso[:64]))
        except ValueError:
            return None
    rfc = _text(entry, "pubDate")
    if rfc:
        try:
            return safe_datetime(email.utils.parsedate_to_datetime(rfc[:64]))
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return None


def _extra(entry: ET.Element) -> dict:
    rights = _text(entry, f"{DC}rights")
    return {"license": rights} if rights else {}


# -- fetching --------------------------------------------------------------------------------------

def arxiv_url(settings: SourceSettings) -> str:
    """``https://rss.arxiv.org/atom/cs.LG+cs.CL``; ``settings.url`` replaces the base."""
    base = (settings.url or DEFAULT_BASE).rstrip("/")
    flavour = "rss" if settings.format == "rss" else "atom"
    return f"{base}/{flavour}/{'+'.join(settings.categories)}"


def fetch_arxiv(client: HttpClient, settings: SourceSettings, day: dt.date,
                etag: str | None = None, last_modified: str | None = None,
                limits: ParseLimits | None = None) -> FetchResult:
    """Today's announcements; rss.arxiv.org serves only the latest list, ``day`` labels the result."""
    url = arxiv_url(settings)
    r = client.get(url, etag=etag, last_modified=last_modified, source=settings.name)
    if r.not_modified:
        return FetchResult(settings.name, day, [], not_modified=True, etag=r.etag, last_modified=r.last_modified)
    try:
        papers = parse_arxiv_feed(r.content, settings.announce_types, source=settings.name, limits=limits)
    except ParseError as e:
        raise ParseError(e.message, source=settings.name, url=r.url) from e
    return FetchResult(settings.name, day, papers, etag=r.etag, last_modified=r.last_modified)
