"""Digest -> subject, text, HTML, MIME message and Atom feed. Pure: data in, data out, no I/O.

Templates live in the top-level ``templates/`` (``email/`` and ``feed/``). The environment uses
``StrictUndefined`` so a typo in a template fails loudly in tests instead of rendering an empty
link in someone's inbox, and autoescapes ``.html``/``.xml`` because titles and abstracts come
from the internet. Everything a template needs (shortened authors, the cut abstract, the
abstract split around the highlight) is prepared here, so templates stay free of logic.
"""
from __future__ import annotations

import binascii
import datetime as dt
import email
import email.policy
import email.utils
import functools
import re
import secrets
import urllib.parse
from dataclasses import dataclass
from email.message import EmailMessage

import css_inline
import jinja2

from .models import Digest, DigestPaper
from .templates_dir import templates_dir

ABSTRACT_MAX_CHARS = 600
AUTHORS_SHOWN = 3          # more than AUTHORS_SHOWN + 1 authors: first AUTHORS_SHOWN + "et al."
FEED_TAG_YEAR = 2025       # the date part of tag: URIs; fixed forever so entry ids never change

_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
# XML 1.0 forbids most C0 controls; PDF-extracted abstracts do contain \x0c and friends.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass
class FeedEntry:
    """One paper delivered to one user, as the Atom feed shows it."""

    paper: DigestPaper
    delivered_at: dt.datetime
    day: dt.date


# -- environment ---------------------------------------------------------------------------------

class _InlinedCssLoader(jinja2.BaseLoader):
    """Serves the HTML email templates with their ``<style>`` already turned into ``style`` attributes.

    Many mail clients drop ``<style>``, so styles must sit on the elements; doing it once on the
    template's source (at first use, then compiled) instead of on every rendered message takes a
    whole-document parse and re-serialisation out of each of the day's messages. It is the same
    result because the stylesheet only uses tag, class and descendant selectors: every element a
    message can contain is already in the template, with the classes and ancestors it will have.
    """

    def __init__(self, inner: jinja2.BaseLoader) -> None:
        self.inner = inner

    def get_source(self, environment: jinja2.Environment, template: str):
        source, filename, uptodate = self.inner.get_source(environment, template)
        if template.startswith("email/") and template.endswith(".html"):
            source = _inline_css(source)
        return source, filename, uptodate


def _inline_css(html: str) -> str:
    # Never fetch anything: the mail must be self-contained.
    return css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False).inline(html)


def _env(loader: jinja2.BaseLoader | None = None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=loader or _InlinedCssLoader(jinja2.FileSystemLoader(templates_dir())),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "xml"), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Templates ship with the package: compile each once per process, never stat it again.
        auto_reload=False,
    )
    env.filters["wordwrap"] = _wordwrap
    return env


_NOT_PLAIN_SPACING = re.compile(r"[^\S ]|  ")     # whitespace other than single spaces


@jinja2.pass_environment
def _wordwrap(environment: jinja2.Environment, s: str, width: int = 79, break_long_words: bool = True,
              wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
    """Jinja's ``wordwrap``, with a fast path for the one case the text templates use: one-line,
    single-spaced text (every field goes through _one_line), never breaking words or hyphens.
    There textwrap's algorithm is plain greedy filling; textwrap itself is most of a message's
    render time. Anything else goes to Jinja's filter."""
    if break_long_words or break_on_hyphens or s != s.strip() or _NOT_PLAIN_SPACING.search(s):
        return jinja2.filters.do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)
    return (wrapstring if wrapstring is not None else environment.newline_sequence).join(_greedy_lines(width).findall(s))


@functools.lru_cache(maxsize=16)
def _greedy_lines(width: int) -> re.Pattern:
    # The longest run of whole words that fits in ``width``; else one word longer than the width, alone.
    return re.compile(r"\S.{0,%d}(?= |$)|\S+" % max(width - 1, 0))


_ENV = _env()


@functools.cache
def _template(name: str) -> jinja2.Template:
    return _ENV.get_template(name)


# -- pure helpers the templates rely on -----------------------------------------------------------

def day_label(day: dt.date) -> str:
    """"Mon 19 May", independent of the process locale (a daemon's locale is rarely the reader's)."""
    return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"


def _one_line(s: str | None) -> str:
    # Sources hand us abstracts with hard line breaks (Hugging Face, arXiv JSON); headers need one line.
    # str.split() splits on exactly what the regex \s matches (str.isspace), several times faster.
    return " ".join(s.split()) if s else ""


def short_authors(authors: list[str]) -> str:
    names = [n for n in map(_one_line, authors) if n]
    if len(names) > AUTHORS_SHOWN + 1:
        return ", ".join(names[:AUTHORS_SHOWN]) + " et al."
    return ", ".join(names)


def cut_abstract(text: str, limit: int = ABSTRACT_MAX_CHARS) -> str:
    """Cut to at most ``limit`` characters, at a sentence end if one falls in the last part, else a word."""
    text = _one_line(text)
    if len(text) <= limit:
        return text
    head = text[:limit + 1]
    # A sentence end: ". " / "? " / "! " followed by something that looks like a new sentence.
    ends = [m.end(1) for m in re.finditer(r"([.!?])\s+(?=[A-Z0-9(\"'])", head)]
    if ends and ends[-1] >= limit * 0.5:
        return text[:ends[-1]]
    cut = head.rsplit(" ", 1)[0] if " " in head else text[:limit]
    return cut.rstrip(" ,;:-–—(") + " …"


@dataclass
class _PaperView:
    p: DigestPaper
    number: int
    title: str
    authors: str
    abstract: str
    # The cut abstract split around the highlight, so HTML can <mark> it with autoescape still on.
    before: str
    marked: str
    after: str
    highlight: str          # the highlight sentence, "" when none
    highlight_inline: bool  # True: it sits in the abstract shown; False: show it on its own


def _paper_view(p: DigestPaper, number: int) -> _PaperView:
    abstract = cut_abstract(p.abstract)
    highlight = _one_line(p.highlight)
    before, marked, after = abstract, "", ""
    if highlight:
        i = abstract.find(highlight)
        if i >= 0:
            before, marked, after = abstract[:i], highlight, abstract[i + len(highlight):]
    return _PaperView(
        p=p, number=number, title=_one_line(p.title) or p.key, authors=short_authors(p.authors),
        abstract=abstract, before=before, marked=marked, after=after,
        highlight=highlight, highlight_inline=bool(marked),
    )


def _context(d: Digest) -> dict:
    return {
        "d": d,
        "day": day_label(d.day),
        "papers": [_paper_view(p, i) for i, p in enumerate(d.papers, 1)],
        "note": _one_line(d.note) or "Nothing relevant today.",
        "subject": render_subject(d),
    }


# -- email ---------------------------------------------------------------------------------------

def render_subject(d: Digest) -> str:
    # The template's job is wording; collapsing whitespace keeps a stray newline out of the header.
    return _one_line(_template("email/subject.txt").render(day=day_label(d.day), count=len(d.papers)))


def render_text(d: Digest, context: dict | None = None) -> str:
    return _template("email/body.txt").render(context or _context(d))


def render_html(d: Digest, context: dict | None = None) -> str:
    # The template's CSS was inlined when it was loaded (see _InlinedCssLoader).
    return _template("email/body.html").render(context or _context(d))


def render_message(d: Digest, *, from_addr: str, message_id: str, date: dt.datetime, list_id: str) -> bytes:
    """The digest as RFC 5322 bytes, ready for SMTP: ``multipart/alternative``, text first, HTML
    last (clients prefer the last part they can show), UTF-8 in quoted-printable, CRLF line ends.

    Built directly rather than through ``EmailMessage``: the stdlib's pure-Python folding and
    quoted-printable cost more than rendering the digest. The body goes through the C
    ``binascii.b2a_qp``; headers are ASCII by construction, except From, To and Subject, which
    take the stdlib's RFC 2047 encoding when they need it.
    """
    context = _context(d)          # once for subject, text and HTML
    text = _qp_body(render_text(d, context))
    html = _qp_body(render_html(d, context))
    boundary = _boundary(text, html)
    headers = [
        _from_header(from_addr),
        _address_header("To", d.user_email),
        _text_header("Subject", context["subject"]),
        _ascii_header("Date", email.utils.format_datetime(_aware(date))),
        _ascii_header("Message-ID", message_id if message_id.startswith("<") else f"<{message_id}>"),
        _ascii_header("List-Id", list_id if "<" in list_id else f"<{list_id}>"),
    ]
    if d.unsubscribe_url:
        headers.append(_ascii_header("List-Unsubscribe", f"<{d.unsubscribe_url}>"))
        # RFC 8058: mail providers POST this body to the URL above; no confirmation page in between.
        headers.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    # RFC 3834: keeps vacation auto-replies from answering every morning's digest.
    headers.append(b"Auto-Submitted: auto-generated\r\n")
    headers.append(b"MIME-Version: 1.0\r\n")
    headers.append(b'Content-Type: multipart/alternative;\r\n boundary="' + boundary + b'"\r\n')
    # RFC 2046 5.1.1: the CRLF before a delimiter belongs to the delimiter, not to the part.
    return b"".join((
        *headers, b"\r\n",
        b"--", boundary, b"\r\n", _PART_HEADERS % b"plain", text,
        b"\r\n--", boundary, b"\r\n", _PART_HEADERS % b"html", html,
        b"\r\n--", boundary, b"--\r\n",
    ))


def build_message(d: Digest, *, from_addr: str, message_id: str, date: dt.datetime, list_id: str) -> EmailMessage:
    """``render_message`` as an ``EmailMessage``, for callers that want to inspect or re-send it."""
    raw = render_message(d, from_addr=from_addr, message_id=message_id, date=date, list_id=list_id)
    return email.message_from_bytes(raw, policy=email.policy.default)


# quoted-printable, not 8bit: some relays lack 8BITMIME, and inlined HTML has very long lines.
_PART_HEADERS = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
_SMTP_POLICY = email.policy.SMTP
_MAX_LINE = 998            # RFC 5322 2.1.1, octets before CRLF
_FOLD_AT = 78              # RFC 5322 2.1.1: lines SHOULD be no longer


def _qp_body(s: str) -> bytes:
    # One CRLF after every line, the last one included, as EmailMessage.set_content does.
    data = b"\r\n".join(s.encode("utf-8").splitlines()) + b"\r\n"
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)


def _boundary(*parts: bytes) -> bytes:
    while True:
        b = b"=_digestd_" + secrets.token_hex(12).encode()
        if not any(b in p for p in parts):     # quoted-printable output could in principle contain it
            return b


def _one_line_value(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"the {name} header must be one line: {value!r}")
    return value


def _ascii_header(name: str, value: str) -> bytes:
    """A header whose value is ASCII by construction (dates, ids, our own URLs); never folded,
    because a URL has no place to fold and RFC 2047 words are not allowed inside <...>."""
    line = f"{name}: {_one_line_value(name, value)}"
    if not line.isascii() or len(line) > _MAX_LINE:
        raise ValueError(f"the {name} header must be ASCII and at most {_MAX_LINE} octets: {value!r}")
    return line.encode("ascii") + b"\r\n"


def _folded(name: str, value: str) -> bytes:
    # The stdlib's header classes: RFC 2047 for non-ASCII words and display names, folding at 78.
    return _SMTP_POLICY.header_factory(name, _one_line_value(name, value)).fold(policy=_SMTP_POLICY).encode("ascii")


def _text_header(name: str, value: str) -> bytes:
    line = f"{name}: {_one_line_value(name, value)}"
    if line.isascii() and len(line) <= _FOLD_AT:
        return line.encode("ascii") + b"\r\n"
    return _folded(name, value)


def _address_header(name: str, value: str) -> bytes:
    if value.isascii() and not any(c in value for c in ' ,;:"()<>[]\\'):
        return _ascii_header(name, value)        # a bare address: nothing to quote or encode
    return _folded(name, value)


@functools.lru_cache(maxsize=8)
def _from_header(from_addr: str) -> bytes:
    return _address_header("From", from_addr)


# -- Atom ----------------------------------------------------------------------------------------

def _aware(t: dt.datetime) -> dt.datetime:
    # The store keeps UTC; a naive time here means UTC, never the server's local zone.
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def _rfc3339(t: dt.datetime) -> str:
    return _aware(t).astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _xml_text(s: str | None) -> str:
    return _XML_INVALID.sub("", s or "")


def _tag_authority(feed_url: str) -> str:
    host = urllib.parse.urlsplit(feed_url).hostname or ""
    return host or "digestd.invalid"


def feed_id(authority: str, user_id: str) -> str:
    """tag: URI from the user only: the feed token rotates, the feed's identity must not."""
    return f"tag:{authority},{FEED_TAG_YEAR}:digestd/{urllib.parse.quote(user_id, safe='')}"


def entry_id(authority: str, user_id: str, paper_key: str) -> str:
    """tag: URI from user and paper only: stable across renders, token rotation and redeliveries."""
    # Keys may be links or "title:..." for papers without an arXiv id; quote so the URI stays valid.
    return f"{feed_id(authority, user_id)}/{urllib.parse.quote(paper_key, safe=':.-_~')}"


def render_atom(user_id: str, feed_url: str, entries: list[FeedEntry], updated: dt.datetime, title: str) -> str:
    authority = _tag_authority(feed_url)
    # One entry per paper, the newest delivery winning; a stable sort keeps digest rank order within a day.
    newest: dict[str, FeedEntry] = {}
    for e in sorted(entries, key=lambda e: _aware(e.delivered_at), reverse=True):
        newest.setdefault(e.paper.key, e)
    fragment = _ENV.get_template("feed/entry.html")
    views = []
    for e in newest.values():
        v = _paper_view(e.paper, 0)
        views.append({
            "id": entry_id(authority, user_id, e.paper.key),
            "title": _xml_text(v.title),
            "url": e.paper.url,
            "pdf_url": e.paper.pdf_url,
            "authors": [_xml_text(_one_line(a)) for a in e.paper.authors if _one_line(a)],
            "updated": _rfc3339(e.delivered_at),
            "day": e.day.isoformat(),
            "summary": _xml_text(" ".join(x for x in (e.paper.reason, v.highlight) if x)),
            # Rendered as an HTML fragment (escaped once), then escaped again into type="html" content.
            "content": _xml_text(fragment.render(v=v, day=day_label(e.day))),
            "sources": e.paper.sources,
        })
    return _ENV.get_template("feed/atom.xml").render(
        feed_id=feed_id(authority, user_id),
        feed_url=feed_url, title=_xml_text(title), updated=_rfc3339(updated), entries=views,
    )
