import pytest

from digestd.ids import find_arxiv_id, paper_key, parse_arxiv_id


@pytest.mark.parametrize("spelling,expected", [
    ("2401.01234", ("2401.01234", None)),
    ("2401.01234v2", ("2401.01234", 2)),
    ("arXiv:2401.01234", ("2401.01234", None)),
    ("https://arxiv.org/abs/2401.01234v1", ("2401.01234", 1)),
    ("https://arxiv.org/pdf/2401.01234.pdf", ("2401.01234", None)),
    ("http://arxiv.org/pdf/2401.01234v3", ("2401.01234", 3)),
    ("oai:arXiv.org:2508.13167v1", ("2508.13167", 1)),
    ("math.CA/0611800v2", ("math/0611800", 2)),
    ("math/0611800", ("math/0611800", None)),
    ("https://arxiv.org/abs/hep-th/9901001", ("hep-th/9901001", None)),
    ("0704.0001", ("0704.0001", None)),
])
def test_every_spelling_of_an_arxiv_id_comes_down_to_one_bare_id(spelling, expected):
    assert parse_arxiv_id(spelling) == expected


@pytest.mark.parametrize("text", ["", "hello", "12345", "2401.123", "https://example.org/paper"])
def test_text_without_an_arxiv_id_gives_none(text):
    assert parse_arxiv_id(text) is None


def test_ids_are_found_inside_links_and_summaries():
    assert find_arxiv_id("see https://arxiv.org/abs/2505.10575v2 for details") == ("2505.10575", 2)
    assert find_arxiv_id("arXiv:2508.13167v1 Announce Type: new") == ("2508.13167", 1)


def test_papers_without_an_id_are_keyed_by_link_then_normalised_title():
    assert paper_key(None, "https://blog.example.org/p/1", "T") == "https://blog.example.org/p/1"
    assert paper_key(None, None, "  Attention Is  All You Need! ") == "title:attention is all you need"
