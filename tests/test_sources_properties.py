"""Property-based: whatever bytes, JSON or XML a server sends, every parser gives a clean
ParseError or clean papers, never another exception; the arXiv id normaliser never raises and
round-trips what it finds. Example counts stay modest so the suite stays fast."""
from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digestd import ids
from digestd.errors import ParseError
from digestd.safety import clean_text, redact_url, safe_url
from digestd.sources import parse_any, parse_arxiv_feed, parse_feed, parse_hf_daily
from digestd.sources.clean import DEFAULT_LIMITS

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def assert_clean(papers) -> None:
    assert isinstance(papers, list)
    for p in papers:
        assert p.title and not UNSAFE.search(p.title) and "\n" not in p.title
        assert len(p.title) <= DEFAULT_LIMITS.max_title_chars + 1
        assert p.key and len(p.key) <= ids.MAX_KEY_CHARS and not UNSAFE.search(p.key)
        assert not UNSAFE.search(p.abstract) and len(p.abstract) <= DEFAULT_LIMITS.max_abstract_chars + 1
        assert all(a and not UNSAFE.search(a) for a in p.authors)
        for link in (p.url, p.pdf_url):
            assert link is None or safe_url(link) == link
        assert p.arxiv_id is None or ids.is_arxiv_key(p.arxiv_id)
        if p.published is not None:
            assert p.published.utcoffset() is not None and 1980 <= p.published.year <= 2200
        json.dumps(p.extra)


def parses_cleanly(parse, data: bytes) -> None:
    try:
        papers = parse(data)
    except ParseError as e:
        assert str(e) and "\n" not in e.message
        return
    assert_clean(papers)


PARSERS = {
    "hf": lambda d: parse_hf_daily(d, source="t"),
    "arxiv": lambda d: parse_arxiv_feed(d, source="t"),
    "feed": lambda d: parse_feed(d, source="t"),
    "any": lambda d: parse_any(d, source="t"),
}

# -- random bytes ------------------------------------------------------------------------------

@FAST
@given(st.binary(max_size=400))
def test_random_bytes_give_a_parse_error_or_clean_papers_for_every_parser(data):
    for parse in PARSERS.values():
        parses_cleanly(parse, data)


# -- random JSON, shaped like and unlike the Hugging Face API ------------------------------------

text = st.text(max_size=40)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | text
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4),
                           max_leaves=20)
dates = st.sampled_from(["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00", "2025-05-20T00:00:00.000Z",
                         "2025-13-45", "", "yesterday"]) | text
paper_like = st.fixed_dictionaries({}, optional={
    "id": st.sampled_from(["2401.01234", "2401.01234v99999999", "math/0611800", "٢٤٠١.٠١٢٣٤"]) | json_values,
    "title": text | json_values, "summary": text | json_values, "publishedAt": dates | json_values,
    "authors": st.lists(st.fixed_dictionaries({}, optional={"name": text | json_values}) | json_values, max_size=3)
               | json_values,
    "upvotes": json_values, "ai_keywords": json_values, "githubRepo": text | st.just("javascript:alert(1)"),
})
hf_docs = st.lists(st.fixed_dictionaries({}, optional={"paper": paper_like | json_values, "title": text}) | paper_like
                   | json_values, max_size=5)


@FAST
@given(hf_docs)
def test_random_json_gives_a_parse_error_or_clean_papers(doc):
    data = json.dumps(doc, allow_nan=True).encode()
    parses_cleanly(PARSERS["hf"], data)
    parses_cleanly(PARSERS["any"], data)


@FAST
@given(st.integers(min_value=1, max_value=100_000), st.sampled_from(["[", '{"a":']))
def test_deeply_nested_json_is_a_parse_error_or_papers(depth, opener):
    data = (opener * depth + "1" + ("]" if opener == "[" else "}") * depth).encode()
    parses_cleanly(PARSERS["hf"], data)


# -- random XML, shaped like RSS and Atom --------------------------------------------------------

xml_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="<&]"), max_size=30)
field_tags = st.sampled_from(["title", "link", "description", "guid", "pubDate", "dc:creator", "category",
                              "id", "summary", "published", "updated", "author", "arxiv:announce_type", "x"])
values = st.sampled_from(["javascript:alert(1)", "https://arxiv.org/abs/2401.01234v2", "oai:arXiv.org:2401.01234v1",
                          "9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00", "Tue, 20 May 2025 00:00:00 -0400",
                          "Mon, 99 Foo 99999 99:99:99 +9999", "\x1b[31mred", "&amp;&lt;b&gt;", "&undefined;", "&#0;",
                          "&#xD800;", "x" * 3000]) | xml_text


@st.composite
def xml_docs(draw):
    def element():
        tag = draw(field_tags)
        attrs = "".join(f' {a}="{draw(values).replace(chr(34), "")}"' for a in draw(st.lists(
            st.sampled_from(["href", "rel", "term", "type"]), max_size=2, unique=True)))
        return f"<{tag}{attrs}>{draw(values)}</{tag}>"

    entries = []
    for _ in range(draw(st.integers(0, 4))):
        item = draw(st.sampled_from(["item", "entry"]))
        entries.append(f"<{item}>" + "".join(element() for _ in range(draw(st.integers(0, 6)))) + f"</{item}>")
    root = draw(st.sampled_from(["rss", "feed", "rdf:RDF", "html"]))
    ns = ' xmlns="http://www.w3.org/2005/Atom"' if root == "feed" else ""
    ns += ' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom"'
    ns += ' xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
    body = "".join(entries)
    if root == "rss":
        body = f"<channel><title>t</title>{body}</channel>"
    doc = f'<?xml version="1.0"?><{root} version="2.0"{ns}>{body}</{root}>'
    cut = draw(st.none() | st.integers(0, len(doc)))
    return (doc if cut is None else doc[:cut]).encode("utf-8", "surrogatepass")


@FAST
@given(xml_docs())
def test_random_xml_gives_a_parse_error_or_clean_papers_for_every_parser(data):
    for parse in PARSERS.values():
        parses_cleanly(parse, data)


# -- the arXiv id normaliser and the safety helpers ----------------------------------------------

id_like = st.from_regex(r"(arXiv:|https?://arxiv\.org/(abs|pdf)/|oai:arXiv\.org:)?"
                        r"(\d{4}\.\d{4,5}|[a-z\-]{2,8}(\.[A-Z]{2})?/\d{7})(v\d{1,8})?(\.pdf)?", fullmatch=True)


@FAST
@given(st.text(max_size=80) | id_like)
def test_the_arxiv_id_normaliser_never_raises_and_its_answer_is_a_bare_id(text_):
    for found in (ids.parse_arxiv_id(text_), ids.find_arxiv_id(text_)):
        if found is not None:
            bare, version = found
            assert ids.is_arxiv_key(bare) and bare.isascii()
            assert version is None or (isinstance(version, int) and version >= 0)
            assert ids.parse_arxiv_id(bare) == (bare, None)


@FAST
@given(st.text(max_size=200), st.text(max_size=200))
def test_paper_keys_fit_the_column_and_differ_for_different_titles(a, b):
    ka, kb = ids.paper_key(None, None, a), ids.paper_key(None, None, b)
    assert len(ka) <= ids.MAX_KEY_CHARS
    if ids.normalise_title(a) != ids.normalise_title(b) or (not ids.normalise_title(a) and a.strip() != b.strip()):
        assert ka != kb


@FAST
@given(st.text(max_size=300))
def test_clean_text_leaves_nothing_unsafe_and_safe_url_only_http(value):
    assert not UNSAFE.search(clean_text(value)) and "\x1b" not in clean_text(value)
    url = safe_url(value)
    assert url is None or url.lower().startswith(("http://", "https://"))
    redact_url(value)
