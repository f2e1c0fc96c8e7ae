from __future__ import annotations

import pytest

from digestd.sources.text import decode_tex, html_to_text, split_authors, unwrap

ACCENTS = [
    (r'J\"org Deigm\"oller', "Jörg Deigmöller"),
    (r"Nikola Milovi\'c", "Nikola Milović"),
    (r"In\`es Blin", "Inès Blin"),
    (r"{\"u}ber", "über"),
    (r"Pe\~na", "Peña"),
    (r"Fran\c{c}ois", "François"),
    (r"Fran\c cois", "François"),
    (r"Mikol\'a\v{s} Janota", "Mikoláš Janota"),
    (r"Jan Jakub\r{u}v", "Jan Jakubův"),
    (r"Hendrik Kra{\ss}", "Hendrik Kraß"),
    (r"Anders S{\o}gaard", "Anders Søgaard"),
    (r"S\o ren", "Søren"),
    (r"Erd\H{o}s", "Erdős"),
    (r"\L{}ukasz", "Łukasz"),
    (r"Rodr\'iguez", "Rodríguez"),
    (r"Rodr\'{\i}guez", "Rodríguez"),
    (r"Y{\i}lmaz", "Yılmaz"),
    (r"Ka\u{g}an \c{C}ET\.IN", "Kağan ÇETİN"),
    ("Plain Name", "Plain Name"),
]


@pytest.mark.parametrize("tex,expected", ACCENTS, ids=[t for t, _ in ACCENTS])
def test_it_decodes_tex_accents_in_author_names(tex, expected):
    assert decode_tex(tex) == expected


def test_it_splits_one_creator_string_on_commas_and_and():
    assert split_authors(r"A. One, B\"o Two, and C Three") == ["A. One", "Bö Two", "C Three"]
    assert split_authors("A One and B Two") == ["A One", "B Two"]
    assert split_authors("  ") == []


def test_it_unwraps_hard_line_breaks_but_keeps_paragraphs():
    assert unwrap("one\ntwo  three\n\nfour\nfive\n") == "one two three\n\nfour five"


def test_it_strips_html_to_text_and_drops_scripts():
    assert html_to_text("<p>We <b>propose</b> &amp; test.</p><script>x()</script><p>Second</p>") == \
        "We propose & test.\n\nSecond"
