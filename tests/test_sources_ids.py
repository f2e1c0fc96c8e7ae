from __future__ import annotations

import pytest

from digestd import ids
from digestd.sources.feed import parse_feed
from digestd.sources.hf_daily import parse_hf_daily

SPELLINGS = [
    ("2401.01234v2", ("2401.01234", 2)),
    ("2401.01234", ("2401.01234", None)),
    ("arXiv:2401.01234", ("2401.01234", None)),
    ("arXiv:2401.01234v3", ("2401.01234", 3)),
    ("https://arxiv.org/abs/2401.01234v1", ("2401.01234", 1)),
    ("https://arxiv.org/pdf/2401.01234.pdf", ("2401.01234", None)),
    ("https://arxiv.org/pdf/2401.01234v2.pdf", ("2401.01234", 2)),
    ("http://export.arxiv.org/abs/2401.01234", ("2401.01234", None)),
    ("oai:arXiv.org:2508.13167v1", ("2508.13167", 1)),
    ("math.CA/0611800v2", ("math/0611800", 2)),
    ("math/0611800", ("math/0611800", None)),
    ("https://arxiv.org/abs/hep-th/9901001v1", ("hep-th/9901001", 1)),
    ("0704.0001", ("0704.0001", None)),
]


@pytest.mark.parametrize("text,expected", SPELLINGS, ids=[s for s, _ in SPELLINGS])
def test_it_reduces_every_spelling_of_an_arxiv_id_to_the_bare_id_and_version(text, expected):
    assert ids.parse_arxiv_id(text) == expected


@pytest.mark.parametrize("text", ["", "hello", "1234.5678.9", "https://example.org/abs/2401.01234"])
def test_it_finds_no_arxiv_id_where_there_is_none(text):
    assert ids.parse_arxiv_id(text) is None


def test_it_keys_the_same_paper_from_hugging_face_and_an_arxiv_linking_feed_alike():
    hf = parse_hf_daily(b'[{"paper": {"id": "2401.01234", "title": "T", "summary": "s"}}]')
    rss = parse_feed(b"""<rss version="2.0"><channel><title>x</title>
        <item><title>T</title><link>https://arxiv.org/pdf/2401.01234v2.pdf</link></item></channel></rss>""")
    assert hf[0].key == rss[0].key == "2401.01234"
    assert (hf[0].version, rss[0].version) == (None, 2)
