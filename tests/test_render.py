"""Rendering a digest: subject, text, HTML, the MIME message and the Atom feed."""
from __future__ import annotations

import copy
import datetime as dt
import email
import email.policy
import email.utils
import json
import random
import re
import shutil
import subprocess
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import css_inline
import feedparser
import jinja2
import pytest

from digestd import render
from digestd.models import Digest, DigestPaper
from digestd.templates_dir import templates_dir
from digestd.render import (FeedEntry, build_message, cut_abstract, render_atom, render_html, render_message,
                            render_subject, render_text, short_authors)

DAILY = Path("/work/shared/data/arxiv-daily/2025-05-19.jsonl")
BASE = "http://127.0.0.1:8080"
UTC = dt.timezone.utc


def real_papers(n: int) -> list[dict]:
    if DAILY.exists():
        with DAILY.open() as f:
            return [json.loads(next(f)) for _ in range(n)]
    pytest.skip("shared arxiv-daily data not available")


def paper(row: dict, i: int, **kw) -> DigestPaper:
    sentences = re.split(r"(?<=\.)\s+", " ".join(row["summary"].split()))
    base = dict(key=row["id"], title=row["title"], abstract=row["summary"], authors=row["authors"],
                url=row["abs"], pdf_url=row["pdf"], score=0.9 - i / 10,
                reason=f"Close to a paper you liked: paper {i}", highlight=sentences[1],
                up_url=f"{BASE}/f/up-{row['id']}", down_url=f"{BASE}/f/down-{row['id']}", sources=["arxiv"])
    base.update(kw)
    return DigestPaper(**base)


@pytest.fixture
def digest() -> Digest:
    rows = real_papers(3)
    papers = [paper(r, i) for i, r in enumerate(rows)]
    papers[0].title = "<script>alert('x')</script> & " + papers[0].title
    papers[2].explore = True
    return Digest(user_id="alice", user_email="alice@example.org", day=dt.date(2025, 5, 19), papers=papers,
                  base_url=BASE, unsubscribe_url=f"{BASE}/u/unsub-token", feed_url=f"{BASE}/feeds/feedtok.atom")


@pytest.fixture
def empty() -> Digest:
    return Digest(user_id="bob", user_email="bob@example.org", day=dt.date(2025, 5, 24), papers=[],
                  base_url=BASE, unsubscribe_url=f"{BASE}/u/bob", feed_url=f"{BASE}/feeds/b.atom",
                  note="Nothing relevant today: 212 papers, none close to your interests.")


# -- subject and pure helpers --------------------------------------------------------------------

def test_the_subject_names_the_day_and_the_number_of_picks(digest, empty):
    assert render_subject(digest) == "Your papers for Mon 19 May: 3 picks"
    digest.papers = digest.papers[:1]
    assert render_subject(digest) == "Your papers for Mon 19 May: 1 pick"
    assert render_subject(empty) == "Your papers for Sat 24 May: nothing relevant today"


def test_long_author_lists_are_shortened_with_et_al():
    assert short_authors(["A One", "B Two", "C Three", "D Four"]) == "A One, B Two, C Three, D Four"
    assert short_authors(["A One", "B Two", "C Three", "D Four", "E Five"]) == "A One, B Two, C Three et al."


def test_a_long_abstract_is_cut_at_a_sentence_end_and_a_short_one_is_kept_whole():
    long = " ".join(f"Sentence number {i} says something about models." for i in range(40))
    cut = cut_abstract(long, 300)
    assert len(cut) <= 300 and cut.endswith("models.")
    assert cut_abstract("Short\nabstract with a hard break.") == "Short abstract with a hard break."


def test_an_abstract_without_sentence_ends_is_cut_at_a_word_with_an_ellipsis():
    cut = cut_abstract("word " * 200, 100)
    assert cut.endswith(" …") and len(cut) <= 102 and "wor …" not in cut


# -- text ------------------------------------------------------------------------------------------

def test_the_text_body_shows_every_paper_with_its_links_reason_and_votes(digest):
    text = render_text(digest)
    for p in digest.papers:
        assert p.url in text and p.pdf_url in text
        assert f"👍 More like this: {p.up_url}" in text
        assert f"👎 Less like this: {p.down_url}" in text
        assert p.reason in text
    assert "<script>alert('x')</script> &" in text            # plain text is not HTML-escaped
    assert "Germani Elodie, Selin Türk Ilayda, Zeineddine Fatima et al." in text
    assert text.count("[Exploration pick") == 1
    assert f"Unsubscribe: {digest.unsubscribe_url}" in text and digest.feed_url in text


def test_the_text_body_shows_the_highlight_plainly_and_no_line_is_wrapped_inside_a_url(digest):
    text = render_text(digest)
    assert "Key sentence: However, physiological data characterized by" in text
    assert "<mark>" not in text and "**" not in text
    for line in text.splitlines():
        if "http" not in line:
            assert len(line) <= 80, line


def test_an_empty_digest_says_what_the_subject_says_then_the_notes_detail(empty):
    for body in (render_text(empty), render_html(empty)):
        assert "Nothing relevant today." in body and "212 papers, none close to your interests." in body
        assert body.count("Nothing relevant") == 1 + ("<title>" in body)
    assert "👍" not in render_text(empty)


# -- HTML ------------------------------------------------------------------------------------------

def test_html_escapes_a_script_tag_in_a_title(digest):
    html = render_html(digest)
    assert "<script>" not in html
    # The inliner re-serialises the document, so the quote may come back as ' or &#39;.
    assert re.search(r"&lt;script&gt;alert\((&#39;|')x(&#39;|')\)&lt;/script&gt; &amp; Robust Emotion", html)


def test_html_links_title_pdf_and_votes_and_marks_the_highlight_once_and_short(digest):
    html = render_html(digest)
    for p in digest.papers:
        assert f'href="{p.url}"' in html and f'href="{p.pdf_url}"' in html
        assert f'href="{p.up_url}"' in html and f'href="{p.down_url}"' in html
        short = cut_abstract(p.highlight, render.KEY_SENTENCE_MAX_CHARS)
        assert len(short) <= render.KEY_SENTENCE_MAX_CHARS + 2
        assert re.search(r"<mark[^>]*>" + re.escape(short) + "</mark>", html), p.key
        assert html.count(p.highlight[:60]) == 1, p.key
    assert f'href="{digest.unsubscribe_url}"' in html and f'href="{digest.feed_url}"' in html
    assert html.count("Exploration pick") == 1


def test_a_highlight_outside_the_shown_abstract_is_still_marked(digest):
    digest.papers[0].highlight = "A sentence the ranker found that is not in the abstract."
    html = render_html(digest)
    assert re.search(r"<mark[^>]*>A sentence the ranker found", html)


def test_html_has_its_css_inlined_is_phone_sized_and_loads_nothing_external(digest):
    html = render_html(digest)
    # The one style block left is dark mode: a media query cannot be inlined.
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert len(styles) == 1 and styles[0].strip().startswith("@media (prefers-color-scheme: dark)")
    assert "max-width: 640px" in html
    assert re.search(r'class="vote"[^>]*style="[^"]*padding: 12px', html)   # large tap targets
    assert not re.search(r'<(img|link|script)\b|src=|@import|url\(', html)


# -- the message -----------------------------------------------------------------------------------

def _message(d: Digest):
    msg = build_message(d, from_addr="Paper digest <digest@example.org>", message_id="<d.alice.2025-05-19@127.0.0.1>",
                        date=dt.datetime(2025, 5, 19, 5, 30, tzinfo=UTC), list_id="<alice.digest.127.0.0.1>")
    return email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)


def test_the_message_is_multipart_alternative_with_text_first_then_html(digest):
    m = _message(digest)
    assert m.get_content_type() == "multipart/alternative"
    parts = list(m.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert parts[0].get_content() == render_text(digest)
    assert "👍 More like this" in parts[1].get_content()


def test_the_message_carries_the_headers_mail_clients_need(digest):
    m = _message(digest)
    assert m["To"] == "alice@example.org"
    assert m["From"] == "Paper digest <digest@example.org>"
    assert m["Subject"] == "Your papers for Mon 19 May: 3 picks"
    assert m["Message-ID"] == "<d.alice.2025-05-19@127.0.0.1>"
    assert m["Date"] == "Mon, 19 May 2025 05:30:00 +0000"
    assert m["List-Id"] == "<alice.digest.127.0.0.1>"
    assert m["List-Unsubscribe"] == f"<{BASE}/u/unsub-token>"
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_message_is_seven_bit_on_the_wire_even_with_emoji_and_accents(digest):
    raw = build_message(digest, from_addr="Paper digest <digest@example.org>", message_id="x@y",
                        date=dt.datetime(2025, 5, 19, 5, 30), list_id="l.example.org").as_bytes()
    assert max(raw) < 128
    assert max(len(line) for line in raw.splitlines()) <= 998


def test_a_naive_send_time_is_taken_as_utc(digest):
    m = build_message(digest, from_addr="digest@example.org", message_id="x@y",
                      date=dt.datetime(2025, 5, 19, 5, 30), list_id="l.example.org")
    assert m["Date"] == "Mon, 19 May 2025 05:30:00 +0000"
    assert m["Message-ID"] == "<x@y>" and m["List-Id"] == "<l.example.org>"


def test_without_an_unsubscribe_url_no_unsubscribe_headers_are_sent(digest):
    digest.unsubscribe_url = ""
    m = _message(digest)
    assert m["List-Unsubscribe"] is None and m["List-Unsubscribe-Post"] is None


# -- Atom ------------------------------------------------------------------------------------------

def _entries(digest: Digest) -> list[FeedEntry]:
    first = [FeedEntry(p, dt.datetime(2025, 5, 19, 5, 30, tzinfo=UTC), dt.date(2025, 5, 19)) for p in digest.papers[:2]]
    later = [FeedEntry(digest.papers[2], dt.datetime(2025, 5, 20, 5, 30, tzinfo=UTC), dt.date(2025, 5, 20))]
    return first + later


def _atom(digest: Digest, entries=None, url=None) -> str:
    return render_atom("alice", url or digest.feed_url, entries if entries is not None else _entries(digest),
                       dt.datetime(2025, 5, 20, 5, 30, tzinfo=UTC), "Papers for alice")


def test_the_atom_feed_parses_without_errors_one_entry_per_paper_newest_first(digest):
    xml = _atom(digest)
    root = ElementTree.fromstring(xml.encode("utf-8"))     # strict well-formedness, unlike feedparser's fallback
    assert root.tag == "{http://www.w3.org/2005/Atom}feed"
    feed = feedparser.parse(xml)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert [e.link for e in feed.entries] == [digest.papers[2].url, digest.papers[0].url, digest.papers[1].url]
    assert feed.entries[1].title.startswith("<script>alert('x')</script> & Robust")   # text, escaped once
    assert feed.feed.title == "Papers for alice"


def test_atom_entries_carry_reason_highlight_and_vote_links(digest):
    feed = feedparser.parse(_atom(digest))
    e = feed.entries[1]
    content = e.content[0].value
    assert digest.papers[0].reason in e.summary and digest.papers[0].highlight in e.summary
    assert digest.papers[0].up_url in content and digest.papers[0].down_url in content
    # feedparser (like many readers) strips <mark>; the <strong> inside it survives.
    assert f"<strong>{digest.papers[0].highlight}</strong>" in content and "<script>" not in content
    assert e.updated == "2025-05-19T05:30:00Z"


def test_atom_entry_ids_are_stable_across_renders_deliveries_and_token_rotation(digest):
    before = [e.id for e in feedparser.parse(_atom(digest)).entries]
    redelivered = [FeedEntry(e.paper, e.delivered_at + dt.timedelta(days=3), e.day) for e in _entries(digest)]
    after = [e.id for e in feedparser.parse(_atom(digest, redelivered, url=f"{BASE}/feeds/rotated.atom")).entries]
    assert sorted(before) == sorted(after)
    assert len(set(before)) == 3
    assert all(i.startswith("tag:127.0.0.1,2025:digestd/alice/") for i in before)
    assert feedparser.parse(_atom(digest)).feed.id == feedparser.parse(_atom(digest, url=f"{BASE}/feeds/rotated.atom")).feed.id


def test_a_paper_delivered_twice_appears_once_at_its_newest_delivery(digest):
    entries = _entries(digest) + [FeedEntry(digest.papers[1], dt.datetime(2025, 5, 21, tzinfo=UTC), dt.date(2025, 5, 21))]
    feed = feedparser.parse(_atom(digest, entries))
    assert [e.link for e in feed.entries][0] == digest.papers[1].url
    assert len(feed.entries) == 3


def test_control_characters_from_pdf_text_do_not_break_the_xml(digest):
    digest.papers[0].abstract = "Form\x0cfeed and \x00 null. " + digest.papers[0].abstract
    feed = feedparser.parse(_atom(digest))
    assert not feed.bozo, feed.get("bozo_exception")


def test_an_empty_feed_is_still_valid_atom(digest):
    feed = feedparser.parse(_atom(digest, []))
    assert not feed.bozo and feed.entries == []


@pytest.mark.skipif(not shutil.which("xmllint"), reason="xmllint not installed")
def test_xmllint_accepts_the_feed(digest, tmp_path):
    f = tmp_path / "feed.atom"
    f.write_text(_atom(digest), encoding="utf-8")
    subprocess.run(["xmllint", "--noout", str(f)], check=True)


# -- rendered once, built fast: the same message as the per-message way ------------------------------

def _per_message_html(d: Digest) -> str:
    """What render_html produced before: the raw template rendered, then its CSS inlined."""
    env = render._env(jinja2.FileSystemLoader(templates_dir()))
    html = env.get_template("email/body.html").render(render._context(d))
    return css_inline.CSSInliner(keep_style_tags=False, keep_at_rules=True, load_remote_stylesheets=False).inline(html)


def _reference_message(d: Digest, **kw) -> EmailMessage:
    """What build_message produced before: EmailMessage with the stdlib's encoders."""
    msg = EmailMessage(policy=email.policy.default)
    msg["From"] = kw["from_addr"]
    msg["To"] = d.user_email
    msg["Subject"] = render.render_subject(d)
    msg["Date"] = email.utils.format_datetime(kw["date"])
    msg["Message-ID"] = kw["message_id"]
    msg["List-Id"] = kw["list_id"]
    if d.unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{d.unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(render_text(d), subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(_per_message_html(d), subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


class _Elements(HTMLParser):
    """A document as the sequence of its elements (tag, attributes) and text, whatever its serialisation."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.items.append((tag, sorted(attrs)))

    def handle_endtag(self, tag):
        self.items.append(("/" + tag,))

    def handle_data(self, data):
        if data.strip():
            self.items.append(" ".join(data.split()))

    def handle_decl(self, decl):
        self.items.append(("!" + decl.lower(),))


MESSAGE_ARGS = dict(from_addr="Paper digest <digest@example.org>", message_id="<d.alice.2025-05-19@127.0.0.1>",
                    date=dt.datetime(2025, 5, 19, 5, 30, tzinfo=UTC), list_id="<alice.digest.127.0.0.1>")


def _variants(digest: Digest, empty: Digest) -> dict[str, Digest]:
    odd = copy.deepcopy(digest)
    odd.papers[0].highlight = "A sentence the ranker found that is not in the abstract."   # marked on its own
    odd.papers[1].highlight = None
    odd.papers[1].pdf_url = None
    odd.papers[1].authors = []
    odd.papers[1].reason = ""
    bare = copy.deepcopy(empty)
    bare.unsubscribe_url = bare.feed_url = ""
    return {"highlights and an explore pick": digest, "no highlight, pdf, authors or reason": odd,
            "empty day": empty, "empty day without footer links": bare}


def test_css_inlined_into_the_template_styles_every_element_as_per_message_inlining_did(digest, empty):
    for name, d in _variants(digest, empty).items():
        assert _Elements(render_html(d)).items == _Elements(_per_message_html(d)).items, name


def test_a_message_is_rendered_without_running_the_css_inliner_again(digest, monkeypatch):
    render_html(digest)
    def refuse(*a, **kw):
        raise AssertionError("CSS inlined per message")
    monkeypatch.setattr(css_inline, "CSSInliner", refuse)
    assert 'style="' in render_html(digest) and 'style="' in render_html(copy.deepcopy(digest))


def test_the_raw_message_parses_into_the_headers_and_bodies_the_email_library_built(digest, empty):
    names = ["From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
             "Auto-Submitted", "MIME-Version"]
    for name, d in _variants(digest, empty).items():
        got = email.message_from_bytes(render_message(d, **MESSAGE_ARGS), policy=email.policy.default)
        ref = email.message_from_bytes(_reference_message(d, **MESSAGE_ARGS).as_bytes(), policy=email.policy.default)
        assert [(n, got[n]) for n in names] == [(n, ref[n]) for n in names], name
        assert got.get_content_type() == ref.get_content_type() == "multipart/alternative"
        gparts, rparts = list(got.iter_parts()), list(ref.iter_parts())
        assert [(p.get_content_type(), p.get_content_charset(), p["Content-Transfer-Encoding"]) for p in gparts] == \
            [("text/plain", "utf-8", "quoted-printable"), ("text/html", "utf-8", "quoted-printable")]
        unix = lambda s: s.replace("\r\n", "\n")  # noqa: E731 - our bytes are CRLF, the reference's LF
        assert unix(gparts[0].get_content()) == rparts[0].get_content() == render_text(d), name
        assert _Elements(unix(gparts[1].get_content())).items == _Elements(rparts[1].get_content()).items, name


def test_build_message_is_the_raw_message_parsed(digest):
    msg = build_message(digest, **MESSAGE_ARGS)
    assert isinstance(msg, EmailMessage)
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Subject"] == render_subject(digest)


def test_the_raw_message_is_seven_bit_crlf_and_no_line_is_longer_than_998_octets(digest):
    digest.papers[0].title = "Ünïcödé ≠ ascii " + "x" * 3000   # an unbreakable word, longer than any line may be
    raw = render_message(digest, **MESSAGE_ARGS)
    assert max(raw) < 128
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"--\r\n")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert "x" * 500 in unix_text(email.message_from_bytes(raw, policy=email.policy.default), "html")


def unix_text(msg, subtype: str) -> str:
    return next(p for p in msg.iter_parts() if p.get_content_subtype() == subtype).get_content().replace("\r\n", "\n")


def test_a_non_ascii_subject_and_sender_name_round_trip(digest, monkeypatch):
    subject = "Deine Papiere für Mo 19 Mai: 3 Treffer — Übersicht über Größenordnungen und Maßstäbe in der Forschung"
    monkeypatch.setattr(render, "render_subject", lambda d: subject)
    raw = render_message(digest, **{**MESSAGE_ARGS, "from_addr": "Jörg's Papierdienst <digest@example.org>"})
    assert max(raw) < 128
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    m = email.message_from_bytes(raw, policy=email.policy.default)
    assert m["Subject"] == subject
    assert m["From"].addresses[0].display_name == "Jörg's Papierdienst"
    assert m["From"].addresses[0].addr_spec == "digest@example.org"


def test_a_long_ascii_subject_is_folded_and_round_trips(digest, monkeypatch):
    subject = "Your papers for Mon 19 May: " + "a long and wordy subject line " * 5
    monkeypatch.setattr(render, "render_subject", lambda d: subject.strip())
    raw = render_message(digest, **MESSAGE_ARGS)
    assert email.message_from_bytes(raw, policy=email.policy.default)["Subject"] == subject.strip()
    assert max(len(line) for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")) <= 78


def test_a_long_unsubscribe_url_is_sent_whole_not_as_encoded_words(digest):
    digest.unsubscribe_url = f"{BASE}/u/" + "T" * 200
    raw = render_message(digest, **MESSAGE_ARGS)
    assert f"List-Unsubscribe: <{digest.unsubscribe_url}>\r\n".encode() in raw


def test_a_header_value_with_a_line_break_is_refused(digest):
    with pytest.raises(ValueError):
        render_message(digest, **{**MESSAGE_ARGS, "message_id": "<x@y>\r\nBcc: victim@example.org"})
    digest.user_email = "alice@example.org\nBcc: victim@example.org"
    with pytest.raises(ValueError):
        render_message(digest, **MESSAGE_ARGS)


def test_the_fast_wordwrap_wraps_exactly_as_jinjas_textwrap_filter(digest):
    env = render._ENV
    rng = random.Random(7)
    words = " ".join(p.abstract + " " + p.title for p in digest.papers).split()
    words += ["x" * 80, "state-of-the-art", "https://arxiv.org/abs/2505.11070v1", "Türk", "a"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 60))) for _ in range(300)]
    texts += ["", "one", "x" * 100, "two  spaces", " leading", "tab\there", "non\u00a0breaking space", "line\nbreak"]
    for text in texts:
        for width in (8, 55, 64, 68, 69, 72):
            expected = jinja2.filters.do_wordwrap(env, text, width, break_long_words=False, break_on_hyphens=False)
            assert render._wordwrap(env, text, width, break_long_words=False, break_on_hyphens=False) == expected, \
                (text, width)
