from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest

from digestd.config import SourceSettings
from digestd.errors import FetchError, ParseError
from digestd.sources import HttpClient, fetch_source, parse_arxiv_feed

DATA = Path(__file__).parent / "data"
ATOM = (DATA / "arxiv-cs.AI-2025-08-20.atom.xml").read_bytes()
RSS = (DATA / "arxiv-cs.AI-2025-08-20.rss.xml").read_bytes()
DAY = dt.date(2025, 8, 20)


def test_it_keys_arxiv_entries_on_the_bare_id_and_keeps_the_version_apart():
    p = parse_arxiv_feed(ATOM)[0]
    assert (p.key, p.arxiv_id, p.version) == ("2508.13167", "2508.13167", 1)
    assert p.abstract.startswith("Recent advances in large language models")
    assert "Announce Type" not in p.abstract
    assert p.pdf_url == "https://arxiv.org/pdf/2508.13167"


def test_it_keeps_only_the_configured_announce_types():
    everything = parse_arxiv_feed(ATOM, ("new", "cross", "replace", "replace-cross"))
    new_only = parse_arxiv_feed(ATOM, ("new",))
    cross_only = parse_arxiv_feed(ATOM, ("cross",))
    assert {p.announce_type for p in new_only} == {"new"}
    assert {p.announce_type for p in cross_only} == {"cross"}
    assert len(new_only) == 41 and len(cross_only) == 45 and len(everything) == 86


def test_it_reads_the_rss_flavour_exactly_like_the_atom_one():
    from_rss = parse_arxiv_feed(RSS, ("new", "cross"))
    by_key = {p.key: p for p in parse_arxiv_feed(ATOM, ("new", "cross"))}
    assert len(from_rss) == 5
    for p in from_rss:
        a = by_key[p.key]
        assert (p.title, p.abstract, p.authors, p.categories, p.announce_type, p.version, p.url) == \
               (a.title, a.abstract, a.authors, a.categories, a.announce_type, a.version, a.url)
        assert p.published == a.published
    assert any("Nikola Pižurica" in p.authors for p in from_rss)


def test_it_takes_the_announce_type_from_the_summary_when_the_element_is_missing():
    feed = ATOM.replace(b"<arxiv:announce_type>new</arxiv:announce_type>", b"")
    papers = parse_arxiv_feed(feed, ("new",))
    assert len(papers) == 41 and all(p.announce_type == "new" for p in papers)


def test_it_reads_replacements_only_when_asked():
    entry = b"""<?xml version='1.0'?><feed xmlns="http://www.w3.org/2005/Atom"><entry>
      <id>oai:arXiv.org:2508.13167v2</id><title>T</title>
      <summary>arXiv:2508.13167v2 Announce Type: replace
Abstract: Wrapped
abstract.</summary></entry></feed>"""
    assert parse_arxiv_feed(entry) == []
    [p] = parse_arxiv_feed(entry, ("replace",))
    assert (p.version, p.announce_type, p.abstract) == (2, "replace", "Wrapped abstract.")


def test_an_empty_list_on_a_holiday_is_no_papers_not_an_error():
    empty = b"""<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns="http://www.w3.org/2005/Atom"><id>http://rss.arxiv.org/atom/cs.AI</id><title>cs.AI updates on arXiv.org</title></feed>"""
    assert parse_arxiv_feed(empty) == []
    assert parse_arxiv_feed(b"<rss version='2.0'><channel><title>x</title></channel></rss>") == []


@pytest.mark.parametrize("garbage,says", [
    (b"", "empty"),
    (b"<html><body>503 Service Unavailable</body></html>", "root element is <html>"),
    (b"<feed><entry>", "invalid XML"),
])
def test_it_rejects_garbage_with_a_clear_parse_error(garbage, says):
    with pytest.raises(ParseError) as e:
        parse_arxiv_feed(garbage, source="arxiv")
    assert says in str(e.value) and "source=arxiv" in str(e.value)


def _settings(**kw) -> SourceSettings:
    return SourceSettings(name="arxiv", type="arxiv", categories=["cs.LG", "cs.CL"], **kw)


def test_it_fetches_the_category_list_with_a_conditional_get():
    requests = []

    def handler(request):
        requests.append(request)
        if request.headers.get("if-none-match") == '"e1"':
            return httpx.Response(304)
        return httpx.Response(200, content=ATOM, headers={"ETag": '"e1"'})

    clock = iter(range(0, 1000, 10))
    client = HttpClient(httpx.MockTransport(handler), clock=lambda: next(clock), sleep=lambda s: None)
    first = fetch_source(_settings(), DAY, client)
    second = fetch_source(_settings(), DAY, client, etag=first.etag)
    assert str(requests[0].url) == "https://rss.arxiv.org/atom/cs.LG+cs.CL"
    assert len(first.papers) == 86 and first.etag == '"e1"' and not first.not_modified
    assert second.not_modified and second.papers == [] and second.etag == '"e1"'


def test_it_fetches_the_rss_flavour_from_an_overridden_base():
    seen = []
    client = HttpClient(httpx.MockTransport(lambda r: seen.append(str(r.url)) or httpx.Response(200, content=RSS)))
    result = fetch_source(_settings(format="rss", url="https://mirror.example.org/"), DAY, client)
    assert seen == ["https://mirror.example.org/rss/cs.LG+cs.CL"] and len(result.papers) == 5


def test_it_reports_a_garbage_answer_as_a_parse_error_naming_source_and_url():
    client = HttpClient(httpx.MockTransport(lambda r: httpx.Response(200, content=b"<html>oops</html>")))
    with pytest.raises(ParseError) as e:
        fetch_source(_settings(), DAY, client)
    assert "source=arxiv" in str(e.value) and "rss.arxiv.org" in str(e.value)


def test_it_passes_a_server_error_on_as_a_fetch_error():
    client = HttpClient(httpx.MockTransport(lambda r: httpx.Response(503, headers={"Retry-After": "30"})))
    with pytest.raises(FetchError) as e:
        fetch_source(_settings(), DAY, client)
    assert e.value.retry_after == 30 and e.value.source == "arxiv"
