"""What readers see, end to end through the pass: the mail's header and cards, the feed's order,
LaTeX turned into text, and the empty day."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import shutil
import subprocess
from types import SimpleNamespace

import feedparser
import pytest

from digestd import accounts, feeds, pipeline
from digestd.app import build_app
from digestd.clock import FixedClock
from digestd.config import parse_config
from digestd.mathtext import latex_to_unicode
from live_site import LATEX_TITLE, hf_list
from test_daemon_support import RecordingMailer, config_text, real_papers, user_block

UTC = dt.timezone.utc
GMAIL_CLIP_BYTES = 102 * 1024

@pytest.fixture
def env(tmp_path):
    first = real_papers("2025-05-19", 20)
    first[0] = {**first[0], "title": LATEX_TITLE, "summary": r"We reach $O(n^2)$ and $\alpha$-stable rates. " + first[0]["summary"]}
    hf_list(tmp_path / "lists", "2025-05-19", first)
    hf_list(tmp_path / "lists", "2025-05-20", real_papers("2025-05-20", 20))
    users = user_block("alice", keywords=["preference optimization", "retrieval"], size=10).replace(
        'id = "alice"', 'id = "alice"\nname = "Alice"')
    settings = parse_config(config_text(users=users), config_dir=tmp_path)
    clock = FixedClock(dt.datetime(2025, 5, 19, 9, 0, tzinfo=UTC))
    sent: list = []
    app = build_app(settings, clock=clock, mailer_factory=lambda: RecordingMailer(sent))
    pipeline.fetch_all(app, day=dt.date(2025, 5, 19))
    yield SimpleNamespace(app=app, clock=clock, sent=sent, tmp=tmp_path)
    app.close()


def parts(raw: bytes) -> tuple[str, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text = next(p for p in msg.iter_parts() if p.get_content_subtype() == "plain").get_content()
    html = next(p for p in msg.iter_parts() if p.get_content_subtype() == "html").get_content()
    return text, html


def visible(html: str) -> str:
    """The text a reader sees in the opened mail: not the styles, title or hidden preview line."""
    html = re.sub(r'<div class="preview"[^>]*>.*?</div>', "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", re.sub(r"<(style|title)>.*?</\1>", "", html, flags=re.S))


def deliver_day(env, day: str) -> bytes:
    env.clock.at = dt.datetime.fromisoformat(f"{day}T09:00:00+00:00")
    pipeline.fetch_all(env.app, day=dt.date.fromisoformat(day))
    before = len(env.sent)
    assert {o.status for o in pipeline.deliver_due(env.app)} == {"sent"}
    msg, _to = env.sent[before]
    return msg if isinstance(msg, bytes) else msg.as_bytes()


def test_latex_in_titles_and_abstracts_becomes_unicode_text():
    assert latex_to_unicode(r"$8192\times 8192$ images") == "8192×8192 images"
    assert latex_to_unicode(r"\textbf{GR}ouping") == "GRouping"
    assert latex_to_unicode(r"360{\deg} view") == "360° view"
    assert latex_to_unicode("Mobi-$π$") == "Mobi-π"
    # Prose that only looks like TeX is left alone: a price, a percentage, an ampersand, a tilde in a URL.
    for plain in ("costs $5 and more", "50% faster & smaller", "https://github.com/a_b/c~d", "{braces} only"):
        assert latex_to_unicode(plain) == plain


def test_the_mail_text_html_and_feed_show_latex_as_text_not_as_source(env):
    raw = deliver_day(env, "2025-05-19")
    text, html = parts(raw)
    xml = feeds.feed_xml(env.app, "alice")
    for rendered in (text, html, xml):
        assert "Mobi-π: GRouping 8192×8192 panoramas in 360°" in rendered
        assert "O(n^2) and α-stable" in rendered or "GRouping" in rendered
        assert not re.search(r"\$[^$\s][^$]*\$", rendered), "raw $...$ left"
        assert "\\textbf" not in rendered and "\\times" not in rendered


def test_the_mail_greets_by_name_says_how_many_from_how_many_and_has_preview_text(env):
    text, html = parts(deliver_day(env, "2025-05-19"))
    assert text.startswith("Hi Alice,\n10 papers picked for you from 20 new on demo.")
    assert re.search(r'class="preview"[^>]*>10 papers picked for you from 20 new on demo\. First: ', html)
    assert "Hi Alice," in html
    subject_line = "Your papers for Mon 19 May"
    assert subject_line not in html.split("<body", 1)[1]        # the body does not repeat the subject


def test_every_card_has_a_linked_heading_badges_and_buttons_and_no_sentence_twice(env):
    text, html = parts(deliver_day(env, "2025-05-19"))
    headings = re.findall(r"<h2[^>]*>.*?</h2>", html, re.S)
    assert len(headings) == 10 and all("<a href=" in h for h in headings)
    assert len(re.findall(r'class="vote"', html)) == 20
    assert "▲ 40" in html and "https://github.com/example/repo-0" in html
    assert "A short machine summary of paper" in html and "A short machine summary of paper" in text
    # The text part, like the HTML, shows each highlighted sentence once.
    export = accounts.export_user(env.app, "alice")
    for sentence in re.findall(r"Key sentence: (.{40})", text):
        assert text.count(sentence) == 1, sentence
    assert export["profile_url"] in text and export["profile_url"] in html
    assert "Pause delivery" in text and "Pause delivery" in html


def test_the_text_part_has_the_same_papers_in_the_same_order_with_the_same_links(env):
    text, html = parts(deliver_day(env, "2025-05-19"))
    links_html = [u for u in re.findall(r'href="([^"]+)"', html) if "/f/" in u or "arxiv.org/abs" in u
                  or "huggingface.co/papers" in u]
    links_text = [u for u in re.findall(r"(https?://\S+)", text) if "/f/" in u or "arxiv.org/abs" in u
                  or "huggingface.co/papers" in u]
    assert links_text == list(dict.fromkeys(links_html)) or links_text == links_html


def test_a_ten_paper_mail_stays_under_gmails_clipping_limit(env):
    _text, html = parts(deliver_day(env, "2025-05-19"))
    assert len(html.encode("utf-8")) < GMAIL_CLIP_BYTES


def test_an_empty_day_says_one_thing_everywhere_and_asks_for_no_votes(env):
    deliver_day(env, "2025-05-19")
    env.clock.at = dt.datetime(2025, 5, 20, 9, 0, tzinfo=UTC)     # no new list fetched: nothing new
    assert {o.status for o in pipeline.deliver_due(env.app)} == {"sent"}
    msg = email.message_from_bytes(env.sent[-1][0] if isinstance(env.sent[-1][0], bytes)
                                   else env.sent[-1][0].as_bytes(), policy=email.policy.default)
    text, html = parts(msg.as_bytes())
    assert msg["Subject"] == "Your papers for Tue 20 May: no new papers on your lists"
    assert "No new papers on your lists." in text and "No new papers on your lists." in html
    for body in (text, visible(html)):
        assert "👍" not in body and "vote" not in body.lower().replace("your profile and votes", "")
        assert "Nothing relevant" not in body


def test_the_feed_lists_each_digest_in_rank_order_newest_digest_first_with_distinct_times(env):
    deliver_day(env, "2025-05-19")
    deliver_day(env, "2025-05-20")
    export = accounts.export_user(env.app, "alice")
    by_day = {d["date"]: d["papers"] for d in export["digests"]}
    xml = feeds.feed_xml(env.app, "alice")
    feed = feedparser.parse(xml)
    assert not feed.bozo, feed.get("bozo_exception")
    keys = [e.id.rsplit("/", 1)[1] for e in feed.entries]
    assert keys == by_day["2025-05-20"] + by_day["2025-05-19"]
    stamps = [e.updated for e in feed.entries]
    assert len(set(stamps)) == len(stamps) and stamps == sorted(stamps, reverse=True)
    first = feed.entries[0]
    assert first.summary.startswith("#1 in your digest of Tue 20 May.\nWhy: ")
    names = [a.name for a in first.authors]
    assert names and names[0] not in first.content[0].value          # authors once, in <author>
    assert any(link.rel == "alternate" and link.href == export["profile_url"] for link in feed.feed.links)


@pytest.mark.skipif(not shutil.which("xmllint"), reason="xmllint is not installed (apt-get install libxml2-utils)")
def test_xmllint_accepts_the_served_feed(env, tmp_path):
    deliver_day(env, "2025-05-19")
    f = tmp_path / "feed.atom"
    f.write_text(feeds.feed_xml(env.app, "alice"), encoding="utf-8")
    subprocess.run(["xmllint", "--noout", str(f)], check=True)


def test_a_day_with_nothing_close_enough_says_nothing_relevant_once_in_subject_and_body():
    from digestd.models import Digest
    from digestd.pipeline.compose import NOTHING_RELEVANT
    from digestd.render import render_html, render_subject, render_text

    d = Digest(user_id="bob", user_email="bob@example.org", day=dt.date(2025, 5, 24), papers=[],
               base_url="http://x", note=NOTHING_RELEVANT, profile_url="http://x/profile/t")
    assert render_subject(d) == "Your papers for Sat 24 May: nothing relevant today"
    for body in (render_text(d), visible(render_html(d))):
        assert body.count("Nothing relevant today.") == 1 and "Nothing relevant to you" not in body
