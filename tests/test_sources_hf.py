from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import httpx
import pytest

from digestd.config import SourceSettings
from digestd.errors import ParseError
from digestd.sources import HttpClient, fetch_source, parse_hf_daily

DATA = Path(__file__).parent / "data"
SAMPLE = (DATA / "hf-paper-2509.04664.json").read_bytes()
DAY = dt.date(2025, 9, 8)


def test_it_reads_the_list_shape_and_the_bare_paper_shape_alike():
    bare = parse_hf_daily(SAMPLE)
    wrapped = parse_hf_daily(json.dumps([{"paper": p, "title": p["title"]} for p in json.loads(SAMPLE)]).encode())
    assert bare == wrapped
    p = bare[0]
    assert (p.key, p.upvotes, p.authors[0]) == ("2509.04664", 26, "Adam Tauman Kalai")
    assert "\n" not in p.abstract and p.abstract.startswith("Like students facing hard exam questions, large language models sometimes guess")
    assert p.extra["ai_keywords"][0] == "hallucinations" and "ai_summary" in p.extra
    assert p.published == dt.datetime(2025, 9, 4, 21, 26, 31, tzinfo=dt.timezone.utc)


def test_it_keeps_the_github_repo_in_extra():
    [p] = parse_hf_daily(b'[{"paper": {"id": "2401.01234", "title": "T", "githubRepo": "https://github.com/a/b"}}]')
    assert p.extra["githubRepo"] == "https://github.com/a/b"


@pytest.mark.parametrize("garbage,says", [
    (b"<!DOCTYPE html><html>", "invalid JSON"),
    (b'{"error": "Invalid date"}', "Invalid date"),
    (b'{"papers": []}', "expected a JSON array"),
    (b"[1, 2]", "items must be objects"),
])
def test_it_rejects_garbage_with_a_clear_parse_error(garbage, says):
    with pytest.raises(ParseError) as e:
        parse_hf_daily(garbage, source="hf")
    assert says in str(e.value) and "source=hf" in str(e.value)


def _page(start: int, n: int) -> bytes:
    # Deliberately not arXiv-shaped: paging tests must not invent arXiv ids.
    return json.dumps([{"paper": {"id": f"paging-test-{start + i}", "title": f"Paper {start + i}"}} for i in range(n)]).encode()


def test_it_pages_until_a_short_page():
    pages = {"0": _page(0, 3), "1": _page(3, 3), "2": _page(6, 1)}
    asked = []

    def handler(request):
        asked.append(dict(request.url.params))
        return httpx.Response(200, content=pages[request.url.params["p"]])

    settings = SourceSettings(name="hf", type="hf_daily", limit=3)
    result = fetch_source(settings, DAY, HttpClient(httpx.MockTransport(handler)))
    assert [a["p"] for a in asked] == ["0", "1", "2"]
    assert asked[0] == {"date": "2025-09-08", "limit": "3", "p": "0"}
    assert len(result.papers) == 7 and result.source == "hf" and result.day == DAY


def test_it_stops_paging_at_max_pages():
    asked = []

    def handler(request):
        asked.append(request.url.params["p"])
        return httpx.Response(200, content=_page(int(request.url.params["p"]) * 2, 2))

    settings = SourceSettings(name="hf", type="hf_daily", limit=2, max_pages=3)
    result = fetch_source(settings, DAY, HttpClient(httpx.MockTransport(handler)))
    assert asked == ["0", "1", "2"] and len(result.papers) == 6


def test_it_stops_when_the_api_ignores_the_page_parameter():
    asked = []

    def handler(request):
        asked.append(request.url.params["p"])
        return httpx.Response(200, content=_page(0, 2))

    settings = SourceSettings(name="hf", type="hf_daily", limit=2, max_pages=10)
    result = fetch_source(settings, DAY, HttpClient(httpx.MockTransport(handler)))
    assert asked == ["0", "1"] and len(result.papers) == 2


def test_a_full_page_with_a_skipped_record_still_pages_on():
    broken_first = json.dumps([{"paper": {"id": "paging-test-x", "title": 7}}] + json.loads(_page(0, 2))).encode()
    pages = {"0": broken_first, "1": _page(2, 1)}
    asked = []

    def handler(request):
        asked.append(request.url.params["p"])
        return httpx.Response(200, content=pages[request.url.params["p"]])

    settings = SourceSettings(name="hf", type="hf_daily", limit=3)
    result = fetch_source(settings, DAY, HttpClient(httpx.MockTransport(handler)))
    assert asked == ["0", "1"] and len(result.papers) == 3
