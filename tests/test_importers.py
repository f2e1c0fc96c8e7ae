"""Liked-papers files as people really have them: Google Scholar and arXiv BibTeX, Zotero CSV, id lists."""
from __future__ import annotations

from pathlib import Path

import pytest

from digestd.errors import ImportFileError
from digestd.importers import LikedRef, parse_liked_file

DATA = Path(__file__).parent / "data" / "import"


def load(name: str, as_name: str | None = None) -> list[LikedRef]:
    return parse_liked_file((DATA / name).read_bytes(), as_name or name)


def test_an_id_list_accepts_every_spelling_of_an_arxiv_id():
    refs = load("ids.txt")
    assert [r.arxiv_id for r in refs] == [
        "2505.10575", "2505.10579", "2505.10583", "2505.18291", "2505.18306", "math/0611800"]
    assert refs[0].line == 2  # the comment on line 1 is skipped, not counted as a paper


def test_google_scholar_bibtex_finds_the_id_in_the_journal_field_and_decodes_tex_accents():
    refs = load("scholar.bib")
    assert [r.arxiv_id for r in refs[:2]] == ["2505.10575", "2505.10583"]
    assert refs[1].authors == ["Diogo Freitas", "Brigt Håvardstun", "Cèsar Ferri", "Darío Garigliotti",
                               "Jan Arne Telle", "José Hernández-Orallo"]
    assert refs[0].title == "Robust Emotion Recognition via Bi-Level Self-Supervised Continual Learning"


def test_a_bibtex_entry_without_an_arxiv_id_keeps_title_and_authors():
    he = load("scholar.bib")[2]
    assert he.arxiv_id is None
    assert he.title == "Deep residual learning for image recognition"
    assert he.authors == ["Kaiming He", "Xiangyu Zhang", "Shaoqing Ren", "Jian Sun"]
    assert he.line == 15


def test_arxiv_bibtex_finds_ids_in_eprint_doi_and_pdf_url_and_keeps_the_abstract():
    refs = load("arxiv.bib")
    assert [r.arxiv_id for r in refs] == ["2505.18306", "2505.18315", "2505.18291"]
    assert refs[1].title.startswith("COLORA: Efficient Fine-Tuning")   # {COLORA} braces dropped
    assert refs[1].abstract.startswith("We introduce the Convolutional Low-Rank Adaptation (CoLoRA) method, designed explicitly")
    assert refs[2].authors[-1] == "Zihan Wang"                          # "and others" is not an author


def test_zotero_csv_finds_ids_in_url_extra_archive_location_and_doi():
    refs = load("zotero.csv")
    assert [r.arxiv_id for r in refs] == ["2505.10575", "2505.18302", "2505.18291", "2505.18306", None]
    assert refs[0].authors == ["Adnan Ahmad", "Bahareh Nakisa", "Mohammad Naim Rastgoo"]
    assert refs[0].abstract.startswith("Emotion recognition through physiological signals")
    assert refs[1].abstract == "Two sampling strategies are investigated to enhance efficiency in training a deep learning object detection model."
    assert refs[4].title == "Deep Residual Learning for Image Recognition"   # an IEEE DOI is not an arXiv id


def test_the_format_comes_from_the_content_not_the_file_name():
    assert [r.arxiv_id for r in load("arxiv.bib", "liked.txt")] == [r.arxiv_id for r in load("arxiv.bib")]
    assert [r.arxiv_id for r in load("zotero.csv", "export.bib")] == [r.arxiv_id for r in load("zotero.csv")]


def test_the_same_paper_twice_is_imported_once():
    refs = parse_liked_file(b"2505.10575v1\narXiv:2505.10575v2\nhttps://arxiv.org/abs/2505.10575\n", "l.txt")
    assert [r.arxiv_id for r in refs] == ["2505.10575"]


def test_latin1_bibtex_is_still_read():
    data = '@article{x, title={Caf\xe9 papers}, journal={arXiv preprint arXiv:2505.10575}}'.encode("latin-1")
    refs = parse_liked_file(data, "old.bib")
    assert refs[0].title == "Café papers" and refs[0].arxiv_id == "2505.10575"


def test_an_eprint_from_another_archive_is_not_taken_for_an_arxiv_id():
    bib = b"@article{x, title={A bioRxiv paper}, eprint={2505.10575}, archivePrefix={bioRxiv}}"
    [ref] = parse_liked_file(bib, "b.bib")
    assert ref.arxiv_id is None and ref.title == "A bioRxiv paper"


def test_string_macros_and_concatenation_are_expanded():
    bib = b'@string{ax = "arXiv preprint "}\n@article{x, title="Macro" # {s}, journal = ax # "arXiv:2505.18306"}'
    [ref] = parse_liked_file(bib, "m.bib")
    assert ref.title == "Macros" and ref.arxiv_id == "2505.18306"


@pytest.mark.parametrize("data, message", [
    (b"", "empty.txt: the file is empty"),
    (b"  \n\n\t\n", "empty.txt: the file is empty"),
    (b"# only a comment\n", "empty.txt, line 1: no papers recognised"),
    (b"2505.10575\nnot a paper id\n", "empty.txt, line 2: not an arXiv id: 'not a paper id'"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "empty.txt, line 1: a binary file"),
    (b"@article{x,\n  title={Never closed},\n  year={2025}\n", "empty.txt, line 1: "),
    (b"\n\n@article{x,\n  title={Broken\n", "empty.txt, line 3: unbalanced braces"),
])
def test_unreadable_files_raise_one_line_errors_naming_file_and_line(data, message):
    with pytest.raises(ImportFileError) as e:
        parse_liked_file(data, "empty.txt")
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_bibtex_with_only_comments_and_no_entries_is_an_error():
    with pytest.raises(ImportFileError, match="no papers recognised"):
        parse_liked_file(b"@comment{exported by me}\n@preamble{\"\\newcommand{\\x}{y}\"}\n", "c.bib")
