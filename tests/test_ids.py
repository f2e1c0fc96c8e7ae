from digestd.ids import find_arxiv_id, paper_key


def test_ids_are_found_inside_links_and_summaries():
    assert find_arxiv_id("see https://arxiv.org/abs/2505.10575v2 for details") == ("2505.10575", 2)
    assert find_arxiv_id("arXiv:2508.13167v1 Announce Type: new") == ("2508.13167", 1)


def test_papers_without_an_id_are_keyed_by_link_then_normalised_title():
    assert paper_key(None, "https://blog.example.org/p/1", "T") == "https://blog.example.org/p/1"
    assert paper_key(None, None, "  Attention Is  All You Need! ") == "title:attention is all you need"
