"""Seed papers and imported ids are looked up in the arXiv API.

`tests/data/arxiv-api-query.atom.xml` is an answer in the API's Atom shape, built from two real
papers of ../shared/data/arxiv-daily (real ids, titles, abstracts, authors).
"""
from pathlib import Path

import httpx

from digestd.sources.arxiv_api import lookup_arxiv, parse_arxiv_api
from digestd.sources.http import HttpClient

DATA = Path(__file__).parent / "data" / "arxiv-api-query.atom.xml"


def test_an_api_answer_gives_each_paper_with_its_bare_id_and_abstract():
    papers = parse_arxiv_api(DATA.read_bytes())
    assert [p.key for p in papers] == ["2505.10575", "2505.10579"]
    p = papers[0]
    assert p.arxiv_id == p.key and p.version == 1
    assert p.title.startswith("Robust Emotion Recognition") and "physiological" in p.abstract
    assert p.authors[0] == "Adnan Ahmad"


def test_lookup_asks_for_every_id_in_one_request_per_batch():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params["id_list"])
        return httpx.Response(200, content=DATA.read_bytes())

    client = HttpClient(httpx.MockTransport(handler), sleep=lambda s: None)
    papers = lookup_arxiv(client, ["2505.10575", "2505.10579", "2505.10575"])
    assert seen == ["2505.10575,2505.10579"]
    assert len(papers) == 2
