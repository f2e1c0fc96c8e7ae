"""LaTeX in titles and abstracts -> readable Unicode text (``$8192\\times 8192$`` -> ``8192×8192``).

Done once, where the view of a paper is built, so mail, text part, feed and pages all show the same
text. pylatexenc's latex2text does the conversion; around it, two rules keep plain prose intact:
only ``$...$`` spans and backslash macros are converted (a lone ``$5`` stays), and characters that
are special to TeX but ordinary in an abstract (``%``, ``&``, ``~``, ``#``) are escaped first, so
"50% faster" does not lose the rest of the sentence to a TeX comment.
"""
from __future__ import annotations

import functools
import re

from pylatexenc.latex2text import LatexNodes2Text, MacroTextSpec, get_default_latex_context_db

from .safety import clean_text

# $...$ (or $$...$$) on one stretch of text, not spanning another $.
_MATH = re.compile(r"\$\$?([^$]+?)\$?\$")
_MACRO = re.compile(r"\\[A-Za-z]+|\\[^A-Za-z\s]|\{\\")
_PLAIN_SPECIALS = re.compile(r"(?<!\\)([%&#])")
_TEXT_MACROS_WITHOUT_SPEC = re.compile(r"\\(texttt|textsf|textup|textnormal)\s*\{")


@functools.cache
def _converter() -> LatexNodes2Text:
    db = get_default_latex_context_db().filter_context()
    db.add_context_category("digestd", prepend=True, macros=[
        MacroTextSpec("deg", "°"), MacroTextSpec("degree", "°"), MacroTextSpec("textdegree", "°"),
    ])
    return LatexNodes2Text(latex_context=db, math_mode="text", strict_latex_spaces=True)


def _convert(fragment: str) -> str:
    fragment = _TEXT_MACROS_WITHOUT_SPEC.sub("{", fragment)
    fragment = _PLAIN_SPECIALS.sub(r"\\\1", fragment).replace("~", " ")
    try:
        return _converter().latex_to_text(fragment)
    except Exception:          # malformed TeX: the reader is better served by the source text
        return fragment


def _math(m: re.Match) -> str:
    inner = m.group(1)
    return _convert(inner).strip() if inner.strip() else m.group(0)


def latex_to_unicode(text: str | None) -> str:
    """``text`` with its LaTeX math and macros as Unicode; text without any comes back unchanged."""
    if not text or ("$" not in text and "\\" not in text and "{" not in text):
        return text or ""
    return _converted(text)


# A pass shows the same few thousand papers to every reader, batch after batch, and pylatexenc takes
# about a millisecond a field: each distinct text is converted once per process (bounded, a few MB).
@functools.lru_cache(maxsize=16384)
def _converted(text: str) -> str:
    out = []
    last = 0
    for m in _MATH.finditer(text):
        out.append(_prose(text[last:m.start()]))
        out.append(_math(m))
        last = m.end()
    out.append(_prose(text[last:]))
    return "".join(out)


def _prose(s: str) -> str:
    if not _MACRO.search(s):
        return s
    # Keep the surrounding spacing: latex2text trims what it does not see as significant.
    lead, core, trail = re.match(r"(\s*)(.*?)(\s*)$", s, re.S).groups()
    return lead + _convert(core) + trail


def readable(text: str | None, *, one_line: bool = False) -> str:
    """Stored text as a reader sees it anywhere (mail, feed, pages): TeX as Unicode, then no
    control characters (``safety.clean_text``)."""
    return clean_text(latex_to_unicode(text), one_line=one_line) if text else ""
