"""Look papers up by arXiv id (seed papers, imported ids) in the arXiv API.

`GET https://export.arxiv.org/api/query?id_list=ID,ID&max_results=N` answers an Atom feed with one
entry per paper (`<id>http://arxiv.org/abs/ID vN</id>`, title, summary, authors). It is parsed by
the generic feed parser, which already recognises arXiv ids in entry links.
"""
from __future__ import annotations

from collections.abc import Iterable

from ..models import FetchedPaper
from .feed import parse_feed
from .http import HttpClient

API_URL = "https://export.arxiv.org/api/query"
BATCH = 50  # the API serves id_list lookups of this size comfortably in one answer


def parse_arxiv_api(data: bytes) -> list[FetchedPaper]:
    papers = parse_feed(data, source="arxiv-api")
    # The API answers an unknown id with an entry titled "Error"; it is not a paper.
    return [p for p in papers if p.arxiv_id and p.title.strip().lower() != "error"]


def lookup_arxiv(client: HttpClient, bare_ids: Iterable[str], *, url: str = API_URL) -> list[FetchedPaper]:
    """Title, abstract and authors of the given papers. Raises FetchError / ParseError."""
    wanted = list(dict.fromkeys(bare_ids))
    out: list[FetchedPaper] = []
    for i in range(0, len(wanted), BATCH):
        chunk = wanted[i:i + BATCH]
        r = client.get(url, params={"id_list": ",".join(chunk), "max_results": str(len(chunk))}, source="arxiv-api")
        out.extend(parse_arxiv_api(r.content))
    return out
