"""Digest -> subject, text, HTML, MIME message and Atom feed. Pure: data in, data out, no I/O.

Templates live in the top-level ``templates/`` (``email/`` and ``feed/``). The environment uses
``StrictUndefined`` so a typo in a template fails loudly in tests instead of rendering an empty
link in someone's inbox, and autoescapes ``.html``/``.xml`` because titles and abstracts come
from the internet. Everything a template needs (shortened authors, the cut abstract, the
abstract split around the highlight) is prepared here, so templates stay free of logic.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import functools
import re
import urllib.parse
from dataclasses import dataclass
from email.message import EmailMessage

import css_inline
import jinja2

from .mime import assemble
from .models import Digest, DigestPaper
from .templates_dir import templates_dir

ABSTRACT_MAX_CHARS = 600
# A mail card fits two or three to a phone screen: every text on it is short.
KEY_SENTENCE_MAX_CHARS = 180
TEASER_MAX_CHARS = 150
SUMMARY_MAX_CHARS = 240
REASON_MAX_CHARS = 110
PREVIEW_MAX_CHARS = 140
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
    rank: int = 0             # 1-based place in its digest; 0: unknown


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
    # Never fetch anything: the mail must be self-contained. At-rules (dark mode) stay in a <style>:
    # a media query cannot be inlined, and its rules use !important to win over the inline styles.
    return css_inline.CSSInliner(keep_style_tags=False, keep_at_rules=True, load_remote_stylesheets=False).inline(html)


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
    # The mail's compact card: the highlight cut short, and a teaser of the abstract without it.
    key_sentence: str = ""
    teaser: str = ""
    summary: str = ""       # Hugging Face's ai_summary, cut short
    category: str = ""
    reason: str = ""


def _paper_view(p: DigestPaper, number: int) -> _PaperView:
    abstract = cut_abstract(p.abstract)
    highlight = _one_line(p.highlight)
    before, marked, after = abstract, "", ""
    if highlight:
        i = abstract.find(highlight)
        if i >= 0:
            before, marked, after = abstract[:i], highlight, abstract[i + len(highlight):]
    summary = cut_abstract(p.ai_summary, SUMMARY_MAX_CHARS) if p.ai_summary else ""
    # A card shows the highlight once: the teaser is the abstract with that sentence taken out.
    rest = _one_line(p.abstract).replace(highlight, " ") if highlight else p.abstract
    teaser = "" if summary else cut_abstract(rest, TEASER_MAX_CHARS)
    return _PaperView(
        p=p, number=number, title=_one_line(p.title) or p.key, authors=short_authors(p.authors),
        abstract=abstract, before=before, marked=marked, after=after,
        highlight=highlight, highlight_inline=bool(marked),
        key_sentence=cut_abstract(highlight, KEY_SENTENCE_MAX_CHARS) if highlight else "",
        teaser=teaser, summary=summary, category=p.categories[0] if p.categories else "",
        reason=cut_abstract(p.reason, REASON_MAX_CHARS) if p.reason else "",
    )


def _list_names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1] if names else ""


def empty_day_line(d: Digest) -> str:
    """What an empty day says, the same in subject, header and text: nothing came, or nothing fitted."""
    if d.note and d.note.startswith("Nothing new"):
        return "no new papers on your lists"
    return "nothing relevant today"


def _header(d: Digest) -> dict:
    """The lines above the papers: how many from how many on which lists, and why so few on a thin day."""
    n = len(d.papers)
    lists = _list_names(d.lists)
    if not n:
        line = empty_day_line(d)
        # The same words as the subject; a note's own detail ("212 papers, none close ...") after them.
        _head, sep, detail = _one_line(d.note).partition(": ")
        return {"headline": line[0].upper() + line[1:] + ".", "detail": detail if sep else "", "thin": ""}
    papers = "paper" if n == 1 else "papers"
    if d.new_papers:
        headline = f"{n} {papers} picked for you from {d.new_papers} new on {lists}." if lists else \
            f"{n} {papers} picked for you from {d.new_papers} new ones."
    else:
        headline = f"{n} {papers} picked for you."
    thin = ""
    if d.digest_size and n < d.digest_size:
        if d.new_papers is not None and d.new_papers < 3 * d.digest_size:
            thin = f"A quiet day: your lists had only {d.new_papers} new papers."
        else:
            thin = "A thin day: the others were not close enough to what you like."
    return {"headline": headline, "detail": "", "thin": thin}


def _context(d: Digest) -> dict:
    papers = [_paper_view(p, i) for i, p in enumerate(d.papers, 1)]
    header = _header(d)
    preview = header["headline"]
    if papers:
        preview += " First: " + papers[0].title
    return {
        "d": d,
        "day": day_label(d.day),
        "papers": papers,
        "note": _one_line(d.note) or "Nothing relevant today.",
        "subject": render_subject(d),
        "greeting": f"Hi {_one_line(d.user_name)}," if _one_line(d.user_name) else "Hi,",
        "header": header,
        "preview": cut_abstract(preview, PREVIEW_MAX_CHARS),
        "pause_url": f"{d.profile_url}#pause" if d.profile_url else "",
    }


# -- email ---------------------------------------------------------------------------------------

def render_subject(d: Digest) -> str:
    # The template's job is wording; collapsing whitespace keeps a stray newline out of the header.
    return _one_line(_template("email/subject.txt").render(day=day_label(d.day), count=len(d.papers),
                                                           empty=empty_day_line(d)))


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
    return assemble(render_text(d, context), render_html(d, context), from_addr=from_addr, to=d.user_email,
                    subject=context["subject"], date=email.utils.format_datetime(_aware(date)),
                    message_id=message_id, list_id=list_id, unsubscribe_url=d.unsubscribe_url)


def build_message(d: Digest, *, from_addr: str, message_id: str, date: dt.datetime, list_id: str) -> EmailMessage:
    """``render_message`` as an ``EmailMessage``, for callers that want to inspect or re-send it."""
    raw = render_message(d, from_addr=from_addr, message_id=message_id, date=date, list_id=list_id)
    return email.message_from_bytes(raw, policy=email.policy.default)


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


def render_atom(user_id: str, feed_url: str, entries: list[FeedEntry], updated: dt.datetime, title: str,
                page_url: str = "") -> str:
    """The feed, newest digest first and each digest in rank order. Entries of one delivery get
    timestamps a second apart, best pick latest, so a reader that sorts by date (as most do) shows
    the digest in its order."""
    authority = _tag_authority(feed_url)
    # One entry per paper, the newest delivery winning; a stable sort keeps digest rank order within a day.
    ordered = sorted(entries, key=lambda e: _aware(e.delivered_at), reverse=True)
    newest: dict[str, FeedEntry] = {}
    for e in ordered:
        newest.setdefault(e.paper.key, e)
    fragment = _ENV.get_template("feed/entry.html")
    views = []
    place: dict[dt.datetime, int] = {}
    for e in newest.values():
        at = _aware(e.delivered_at)
        step = place[at] = place.get(at, -1) + 1
        v = _paper_view(e.paper, e.rank)
        day = day_label(e.day)
        parts = [f"#{e.rank} in your digest of {day}." if e.rank else f"In your digest of {day}."]
        if e.paper.reason:
            parts.append(f"Why: {_one_line(e.paper.reason)}")
        if v.highlight:
            parts.append(f"Key sentence: {v.highlight}")
        views.append({
            "id": entry_id(authority, user_id, e.paper.key),
            "title": _xml_text(v.title),
            "url": e.paper.url,
            "pdf_url": e.paper.pdf_url,
            "authors": [_xml_text(_one_line(a)) for a in e.paper.authors if _one_line(a)],
            "updated": _rfc3339(at - dt.timedelta(seconds=step)),
            "day": e.day.isoformat(),
            # One part per line, so a reader that shows the summary as text keeps them apart.
            "summary": _xml_text("\n".join(parts)),
            # Rendered as an HTML fragment (escaped once), then escaped again into type="html" content.
            "content": _xml_text(fragment.render(v=v, day=day, rank=e.rank)),
            "sources": e.paper.sources,
        })
    return _ENV.get_template("feed/atom.xml").render(
        feed_id=feed_id(authority, user_id), page_url=page_url,
        feed_url=feed_url, title=_xml_text(title), updated=_rfc3339(updated), entries=views,
    )
