"""Text clean-up shared by the parsers: paragraphs, TeX accents in names, author lists, HTML to text."""
from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser

# -- paragraphs ------------------------------------------------------------------------------------

def unwrap(text: str) -> str:
    """Join hard-wrapped lines into paragraphs; a blank line stays a paragraph break.

    arXiv and Hugging Face wrap abstracts at ~80 columns; those breaks are not the author's.
    """
    paragraphs = re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip())
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def one_line(text: str) -> str:
    return " ".join(text.split())


# -- TeX accents -----------------------------------------------------------------------------------

# The accent commands arXiv metadata uses, as Unicode combining marks (NFC composes them afterwards).
_ACCENTS = {
    '"': "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303", "=": "\u0304",
    ".": "\u0307", "u": "\u0306", "v": "\u030c", "H": "\u030b", "c": "\u0327", "k": "\u0328",
    "r": "\u030a", "d": "\u0323", "b": "\u0331",
}
_LETTERS = {
    "ss": "ß", "aa": "å", "AA": "Å", "ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ",
    "o": "ø", "O": "Ø", "l": "ł", "L": "Ł", "i": "ı", "j": "ȷ",
}
# The argument of an accent: a letter, or \i / \j (dotless, which take the accent as plain i / j).
_ARG = r"(?:\\(?P<dotless{n}>[ij])(?![A-Za-z])|(?P<letter{n}>[A-Za-z]))"
_SYMBOL_ACCENT = re.compile(
    r"\\(?P<cmd1>[\"'`^~=.])\s*(?:\{\s*" + _ARG.format(n=1) + r"\s*\}|" + _ARG.format(n=2) + ")"
)
# Letter-named accents need braces or a space before their argument (\v{z}, \c c).
_WORD_ACCENT = re.compile(
    r"\\(?P<cmd1>[uvHckrdb])(?:\s*\{\s*" + _ARG.format(n=1) + r"\s*\}|\s+" + _ARG.format(n=2) + ")"
)
# TeX eats the space that ends a control word: "S\o ren" is one word.
_LETTER_CMD = re.compile(r"\\(ss|aa|AA|ae|AE|oe|OE|o|O|l|L|i|j)(?![A-Za-z])(?:\{\}|[ \t])?")
_ESCAPED = re.compile(r"\\([&%$#_{}])")


def _accent(m: re.Match) -> str:
    letter = m.group("letter1") or m.group("letter2") or m.group("dotless1") or m.group("dotless2")
    return letter + _ACCENTS[m.group("cmd1")]


def decode_tex(text: str) -> str:
    """Decode the TeX accents arXiv keeps in author names: ``J\\"org`` -> Jörg, ``\\c{c}`` -> ç."""
    if "\\" not in text and "{" not in text:
        return text
    s = _SYMBOL_ACCENT.sub(_accent, text)
    s = _WORD_ACCENT.sub(_accent, s)
    s = _LETTER_CMD.sub(lambda m: _LETTERS[m.group(1)], s)
    s = _ESCAPED.sub(r"\1", s)
    # Braces left over only grouped letters ({\"u} -> {ü}); they are not part of the name.
    s = re.sub(r"(?<!\\)[{}]", "", s)
    return unicodedata.normalize("NFC", s)


# -- authors ---------------------------------------------------------------------------------------

def split_authors(creator: str) -> list[str]:
    """Split arXiv's one ``dc:creator`` string: ``A, B, and C`` / ``A and B`` -> names, TeX decoded."""
    text = one_line(html.unescape(creator))
    if not text:
        return []
    parts = re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", text)
    return [decode_tex(p).strip() for p in parts if p.strip()]


def looks_like_name_list(text: str) -> bool:
    """True for ``First Last, First Last``; False for one ``Last, First`` name."""
    parts = [p.strip() for p in text.split(",")]
    return len(parts) > 1 and all(" " in p for p in parts if p)


# -- HTML ------------------------------------------------------------------------------------------

_BLOCKS = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "tr", "table"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment, block elements as paragraph breaks."""
    if "<" not in markup and "&" not in markup:
        return unwrap(markup)
    p = _TextExtractor()
    p.feed(markup)
    p.close()
    return unwrap("".join(p.parts))
