"""Digest -> subject, text, HTML, MIME message and Atom feed. Pure: data in, data out, no I/O.

Templates live in ``digestd/templates`` (``email/`` and ``feed/``). The environment uses
``StrictUndefined`` so a typo in a template fails loudly in tests instead of rendering an empty
link in someone's inbox, and autoescapes ``.html``/``.xml`` because titles and abstracts come
from the internet. Everything a template needs (shortened authors, the cut abstract, the
abstract split around the highlight) is prepared here, so templates stay free of logic.
"""
from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import re
import urllib.parse
from dataclasses import dataclass
from email.message import EmailMessage

import css_inline
import jinja2

from .models import Digest, DigestPaper

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

def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("digestd", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "xml"), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


_ENV = _env()


# -- pure helpers the templates rely on -----------------------------------------------------------

def day_label(day: dt.date) -> str:
    """"Mon 19 May", independent of the process locale (a daemon's locale is rarely the reader's)."""
    return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"


def _one_line(s: str | None) -> str:
    # Sources hand us abstracts with hard line breaks (Hugging Face, arXiv JSON); headers need one line.
    return re.sub(r"\s+", " ", s or "").strip()


def short_authors(authors: list[str]) -> str:
    names = [_one_line(a) for a in authors if _one_line(a)]
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
    return _one_line(_ENV.get_template("email/subject.txt").render(day=day_label(d.day), count=len(d.papers)))


def render_text(d: Digest) -> str:
    return _ENV.get_template("email/body.txt").render(_context(d))


def render_html(d: Digest) -> str:
    html = _ENV.get_template("email/body.html").render(_context(d))
    # Many mail clients drop <style>; inline it. Never fetch anything: the mail must be self-contained.
    inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)
    return inliner.inline(html)


def build_message(d: Digest, *, from_addr: str, message_id: str, date: dt.datetime, list_id: str) -> EmailMessage:
    """The digest as ``multipart/alternative``: text first, HTML last (clients prefer the last they can show)."""
    msg = EmailMessage(policy=email.policy.default)
    msg["From"] = from_addr
    msg["To"] = d.user_email
    msg["Subject"] = render_subject(d)
    msg["Date"] = email.utils.format_datetime(_aware(date))
    msg["Message-ID"] = message_id if message_id.startswith("<") else f"<{message_id}>"
    msg["List-Id"] = list_id if "<" in list_id else f"<{list_id}>"
    if d.unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{d.unsubscribe_url}>"
        # RFC 8058: mail providers POST this body to the URL above; no confirmation page in between.
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # RFC 3834: keeps vacation auto-replies from answering every morning's digest.
    msg["Auto-Submitted"] = "auto-generated"
    # quoted-printable, not 8bit: some relays lack 8BITMIME, and inlined HTML has very long lines.
    msg.set_content(render_text(d), subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(render_html(d), subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


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
