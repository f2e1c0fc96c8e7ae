"""arXiv id recognition: every spelling of one paper comes down to one bare id and a version."""
from __future__ import annotations

import hashlib
import re
import unicodedata

# New style: YYMM.NNNN(N) since 2007; old style: archive(.SUBJ)/YYMMNNN.
_NEW = r"(?P<new>\d{4}\.\d{4,5})"
_OLD = r"(?P<old>(?P<archive>[a-z][a-z\-]*)(?:\.[A-Z]{2})?/(?P<num>\d{7}))"
# At most six version digits: int() of a 5,000-digit version would raise.
_VERSION = r"(?:v(?P<version>\d{1,6}))?"
# re.ASCII: \d must not match Arabic-Indic or full-width digits.
_ID_RE = re.compile(rf"^(?:{_NEW}|{_OLD}){_VERSION}$", re.ASCII)
_URL_RE = re.compile(
    rf"arxiv\.org/(?:abs|pdf|html)/(?:{_NEW}|{_OLD}){_VERSION}(?:\.pdf)?", re.IGNORECASE | re.ASCII
)
_OAI_RE = re.compile(rf"oai:arXiv\.org:(?:{_NEW}|{_OLD}){_VERSION}", re.IGNORECASE | re.ASCII)
_PREFIX_RE = re.compile(rf"arXiv:\s*(?:{_NEW}|{_OLD}){_VERSION}", re.IGNORECASE | re.ASCII)


def _from_match(m: re.Match) -> tuple[str, int | None]:
    if m.group("new"):
        bare = m.group("new")
    else:
        bare = f"{m.group('archive').lower()}/{m.group('num')}"
    version = int(m.group("version")) if m.group("version") else None
    return bare, version


def parse_arxiv_id(text: str) -> tuple[str, int | None] | None:
    """Return ``(bare id, version)`` for any spelling of an arXiv id, or ``None``.

    >>> parse_arxiv_id("https://arxiv.org/pdf/2401.01234v2.pdf")
    ('2401.01234', 2)
    >>> parse_arxiv_id("math.CA/0611800v2")
    ('math/0611800', 2)
    """
    if not text or not isinstance(text, str):
        return None
    s = text.strip()
    for rx in (_OAI_RE, _URL_RE, _PREFIX_RE):
        m = rx.search(s)
        if m:
            return _from_match(m)
    m = _ID_RE.match(s)
    if m:
        return _from_match(m)
    return None


def bare_arxiv_id(text: str) -> str | None:
    parsed = parse_arxiv_id(text)
    return parsed[0] if parsed else None


def find_arxiv_id(text: str) -> tuple[str, int | None] | None:
    """Search free text (a link, a summary) for an arXiv id in any of its URL / prefix forms."""
    if not text or not isinstance(text, str):
        return None
    for rx in (_OAI_RE, _URL_RE, _PREFIX_RE):
        m = rx.search(text)
        if m:
            return _from_match(m)
    return None


def normalise_title(title: str) -> str:
    """Lower case, accents and punctuation dropped, letters of every script kept: two titles that
    differ only in spelling details compare equal, and titles in Chinese or Greek never come out
    empty (which once merged different papers into one row)."""
    s = unicodedata.normalize("NFKD", title)
    s = "".join(c for c in s if not unicodedata.combining(c)).casefold()
    return re.sub(r"[\W_]+", " ", s).strip()


# The papers.key column holds 512 characters; longer links and titles key by a digest instead.
MAX_KEY_CHARS = 512


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def paper_key(arxiv_id: str | None, link: str | None, title: str) -> str:
    """The key of a paper: its bare arXiv id, else its link, else its normalised title.

    Always at most MAX_KEY_CHARS long: an over-long link or title keys by its SHA-256."""
    if arxiv_id:
        return arxiv_id
    if link and link.strip():
        link = link.strip()
        return link if len(link) <= MAX_KEY_CHARS else "link:" + _digest(link)
    norm = normalise_title(title)
    if not norm:  # only symbols or emoji: the exact title is all there is to tell papers apart
        return "title:#" + _digest(title.strip())
    key = "title:" + norm
    return key if len(key) <= MAX_KEY_CHARS else "title:" + norm[:400] + "#" + _digest(norm)


def abs_url(bare: str) -> str:
    return f"https://arxiv.org/abs/{bare}"


def pdf_url(bare: str) -> str:
    return f"https://arxiv.org/pdf/{bare}"


def is_arxiv_key(key: str) -> bool:
    return bool(_ID_RE.match(key))
