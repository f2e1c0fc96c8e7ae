from __future__ import annotations

import datetime as dt

import httpx
import pytest

from digestd.config import SourceSettings
from digestd.errors import ParseError
from digestd.sources import HttpClient, fetch_source, parse_feed

BLOG = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Reading group</title><link>https://example.org/</link>
<item>
  <title>Why Language Models Hallucinate</title>
  <link>https://arxiv.org/abs/2509.04664v1</link>
  <description>&lt;p&gt;We &lt;b&gt;argue&lt;/b&gt; that models guess.&lt;/p&gt;&lt;p&gt;Second &amp;amp; last.&lt;/p&gt;</description>
  <author>Adam Tauman Kalai, Ofir Nachum</author>
  <pubDate>Mon, 08 Sep 2025 02:44:20 GMT</pubDate>
</item>
<item>
  <title>Notes from the meeting</title>
  <link>https://example.org/notes/42</link>
  <guid>https://example.org/notes/42</guid>
  <description>No paper here.</description>
</item>
<item>
  <title>  A Talk   With No Link!  </title>
</item>
</channel></rss>"""

ATOM_WITH_ARXIV_ID = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>x</title>
<entry><id>oai:arXiv.org:2508.13167v1</id><title>Chain-of-Agents</title>
<link href="https://example.org/review/chain-of-agents"/>
<author><name>Doe, Jane</name></author>
<content type="html">&lt;div&gt;Review text&lt;/div&gt;</content></entry></feed>"""


def test_it_recognises_arxiv_ids_in_links_and_keys_other_items_by_link_then_title():
    papers = parse_feed(BLOG, source="blog")
    assert [p.key for p in papers] == ["2509.04664", "https://example.org/notes/42", "title:a talk with no link"]
    assert papers[0].version == 1 and papers[0].pdf_url == "https://arxiv.org/pdf/2509.04664"
    assert papers[1].arxiv_id is None and papers[1].pdf_url is None


def test_it_strips_html_from_summaries():
    p = parse_feed(BLOG)[0]
    assert p.abstract == "We argue that models guess.\n\nSecond & last."
    assert p.authors == ["Adam Tauman Kalai", "Ofir Nachum"]
    assert p.published == dt.datetime(2025, 9, 8, 2, 44, 20, tzinfo=dt.timezone.utc)


def test_it_finds_arxiv_ids_in_entry_ids_and_keeps_a_last_first_author_whole():
    [p] = parse_feed(ATOM_WITH_ARXIV_ID)
    assert p.key == "2508.13167" and p.url == "https://example.org/review/chain-of-agents"
    assert p.authors == ["Doe, Jane"] and p.abstract == "Review text"


@pytest.mark.parametrize("garbage", [b"", b"this is not a feed", b"\x89PNG\r\n\x1a\n\x00\x00", b'{"json": true}'])
def test_it_rejects_garbage_with_a_clear_parse_error(garbage):
    with pytest.raises(ParseError) as e:
        parse_feed(garbage, source="blog")
    assert "RSS or Atom" in str(e.value) and "source=blog" in str(e.value)


def test_it_fetches_a_feed_and_reports_304_as_not_modified():
    def handler(request):
        if request.headers.get("if-modified-since"):
            return httpx.Response(304)
        return httpx.Response(200, content=BLOG, headers={"Last-Modified": "Mon, 08 Sep 2025 03:00:00 GMT"})

    settings = SourceSettings(name="blog", type="feed", url="https://example.org/feed.xml")
    client = HttpClient(httpx.MockTransport(handler))
    first = fetch_source(settings, dt.date(2025, 9, 8), client)
    again = fetch_source(settings, dt.date(2025, 9, 8), client, last_modified=first.last_modified)
    assert len(first.papers) == 3 and first.last_modified == "Mon, 08 Sep 2025 03:00:00 GMT"
    assert again.not_modified and again.papers == []


@pytest.mark.parametrize("cut", [60, 120, 171, -12, -7])
def test_a_truncated_feed_is_a_parse_error_not_a_shorter_list(cut):
    whole = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>b</title>'
             b'<item><title>One</title><link>https://e.org/1</link><description>Full.</description></item>'
             b'<item><title>Two</title><link>https://e.org/2</link><description>Cut here</description></item>'
             b'</channel></rss>')
    assert len(parse_feed(whole)) == 2
    with pytest.raises(ParseError, match="truncated|malformed|not an RSS"):
        parse_feed(whole[:cut], source="blog")


def test_a_complete_feed_with_an_html_entity_and_a_trailing_comment_is_read_leniently():
    doc = (b'<rss version="2.0"><channel><item><title>A&nbsp;b</title><link>https://e.org/a</link></item>'
           b'</channel></rss>\n<!-- cached -->\n')
    assert [p.title for p in parse_feed(doc)] == ["A b"]
