"""Which of the list formats some bytes are, judged from the content (saved files lie about names)."""
from __future__ import annotations

import re
from collections.abc import Iterable

from ..errors import ParseError
from ..models import FetchedPaper
from .arxiv import parse_arxiv_feed
from .clean import ParseLimits
from .feed import parse_feed
from .hf_daily import parse_hf_daily

# rss.arxiv.org marks every entry with an OAI id and an announce type; other feeds that merely
# link to arXiv go to the generic parser, which still recognises the ids.
_ARXIV_MARK = re.compile(rb"oai:arXiv\.org:|<arxiv:announce_type>", re.IGNORECASE)


def detect_format(data: bytes) -> str:
    """``"hf"``, ``"arxiv"`` or ``"feed"``; ParseError when it is none of them."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head in (b"[", b"{"):
        return "hf"
    if head == b"<":
        return "arxiv" if _ARXIV_MARK.search(data) else "feed"
    if not head:
        raise ParseError("empty file, expected a JSON papers list or an RSS/Atom feed")
    raise ParseError(f"unknown list format: starts with {data[:20]!r}, expected JSON or XML")


def parse_any(data: bytes, announce_types: Iterable[str] = ("new", "cross"), source: str = "replay",
              limits: ParseLimits | None = None) -> list[FetchedPaper]:
    """Parse a saved list of any supported format; arXiv lists keep only ``announce_types``."""
    try:
        fmt = detect_format(data)
    except ParseError as e:
        raise ParseError(e.message, source=source) from None
    if fmt == "hf":
        return parse_hf_daily(data, source=source, limits=limits)
    if fmt == "arxiv":
        return parse_arxiv_feed(data, announce_types, source=source, limits=limits)
    return parse_feed(data, source=source, limits=limits)
