"""Liked-papers files for ``digestd import USER FILE``: arXiv id lists, BibTeX, Zotero CSV.

``parse_liked_file`` takes bytes (as the sources do) and detects the format from the content,
because people save a .bib as .txt and Zotero's CSV as whatever their browser picked. Each
reference keeps its bare arXiv id when one can be found anywhere in the record; papers without
one keep title, authors and abstract so they can still seed a profile.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from .errors import ImportFileError
from .ids import find_arxiv_id, normalise_title, parse_arxiv_id

# arXiv DOIs: 10.48550/arXiv.2401.01234 (the only DOI prefix that encodes the arXiv id).
_ARXIV_DOI = re.compile(r"10\.48550/arxiv\.(\S+)", re.IGNORECASE)
# A bare new-style id inside text ("2401.01234v2 great paper"), not part of a longer number.
_BARE_NEW = re.compile(r"(?<![\d.])(\d{4}\.\d{4,5}(?:v\d+)?)(?![\d.]*\d)")


@dataclass
class LikedRef:
    """One paper a user says they like."""

    arxiv_id: str | None          # bare id ("2401.01234", "math/0611800"); None when the record has none
    title: str = ""
    authors: list[str] = field(default_factory=list)
    abstract: str = ""
    line: int = 0                 # where it starts in the file, for messages


def parse_liked_file(data: bytes, filename: str) -> list[LikedRef]:
    text = _decode(data, filename)
    if not text.strip():
        raise ImportFileError(f"{filename}: the file is empty")
    if _looks_like_bibtex(text):
        refs = _parse_bibtex(text, filename)
    elif _looks_like_csv(text):
        refs = _parse_csv(text, filename)
    else:
        refs = _parse_id_list(text, filename)
    refs = _dedupe(refs)
    if not refs:
        raise ImportFileError(f"{filename}, line 1: no papers recognised (expected arXiv ids, BibTeX or a Zotero CSV export)")
    return refs


# -- shared --------------------------------------------------------------------------------------

def _decode(data: bytes, filename: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        # Excel's "Unicode text" export.
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise ImportFileError(f"{filename}: not readable as UTF-16 text ({e.reason})") from e
    if b"\x00" in data[:4096]:
        raise ImportFileError(f"{filename}, line 1: a binary file, not a text list of papers")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        # Old BibTeX files are often Latin-1; cp1252 is its superset and leaves real garbage undecodable.
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            raise ImportFileError(f"{filename}, line {line}: not readable as UTF-8 text") from e


def arxiv_id_in(*texts: str | None) -> str | None:
    """The first bare arXiv id found in any of the texts: URLs, arXiv: prefixes, arXiv DOIs, bare ids."""
    for t in texts:
        if not t:
            continue
        t = t.strip()
        m = _ARXIV_DOI.search(t)
        found = parse_arxiv_id(m.group(1)) if m else None
        found = found or find_arxiv_id(t) or parse_arxiv_id(t)
        if found:
            return found[0]
    return None


def _dedupe(refs: list[LikedRef]) -> list[LikedRef]:
    seen: set[str] = set()
    out = []
    for r in refs:
        key = r.arxiv_id or "title:" + normalise_title(r.title)
        if key in seen:
            continue
        seen.add(key)
        out.append(r)
    return out


def _clean(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


# -- plain id lists ------------------------------------------------------------------------------

def _parse_id_list(text: str, filename: str) -> list[LikedRef]:
    refs = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "%", "//")):
            continue
        first = line.split()[0].rstrip(",;")
        bare = arxiv_id_in(first, line)
        if not bare:
            m = _BARE_NEW.search(line)
            bare = parse_arxiv_id(m.group(1))[0] if m else None
        if not bare:
            # One typo in a long list should be fixed, not silently dropped from the profile.
            raise ImportFileError(f"{filename}, line {n}: not an arXiv id: {_clean(line)[:80]!r}")
        refs.append(LikedRef(arxiv_id=bare, line=n))
    return refs


# -- BibTeX --------------------------------------------------------------------------------------

_ENTRY_START = re.compile(r"@\s*([A-Za-z]+)\s*([{(])")


def _looks_like_bibtex(text: str) -> bool:
    return bool(re.search(r"^\s*@\s*[A-Za-z]+\s*[{(]", text, re.MULTILINE))


_ACCENTS = {
    '"': "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303", "=": "\u0304",
    ".": "\u0307", "u": "\u0306", "v": "\u030c", "H": "\u030b", "c": "\u0327", "k": "\u0328", "r": "\u030a",
}
_LETTERS = {"ss": "ß", "o": "ø", "O": "Ø", "l": "ł", "L": "Ł", "ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ",
            "aa": "å", "AA": "Å", "i": "ı", "&": "&", "%": "%", "_": "_", "#": "#", "$": "$"}


def _latex_to_text(s: str) -> str:
    import unicodedata

    def accent(m: re.Match) -> str:
        mark = _ACCENTS.get(m.group(1))
        letter = m.group(2) or m.group(3)
        return unicodedata.normalize("NFC", letter + mark) if mark else letter

    # \"{o}, {\"o}, \"o, \'{\i}
    s = re.sub(r"\\([\"'`^~=.uvHckr])\s*(?:\{\\?([A-Za-z])\}|\\?([A-Za-z]))", accent, s)
    s = re.sub(r"\\(ss|ae|AE|oe|OE|aa|AA|[oOlLi])(?![A-Za-z])\s?", lambda m: _LETTERS[m.group(1)], s)
    s = re.sub(r"\\([&%_#$])", lambda m: m.group(1), s)
    s = s.replace("~", " ").replace("---", "—").replace("--", "–")
    # Drop formatting commands but keep their argument: \emph{x}, \textit{x}.
    s = re.sub(r"\\[A-Za-z]+\s*(?=\{)", "", s)
    return _clean(s.replace("{", "").replace("}", ""))


class _BibReader:
    """A small BibTeX reader: entries, fields, braces, quotes, # concatenation and @string macros."""

    def __init__(self, text: str, filename: str) -> None:
        self.s = text
        self.filename = filename
        self.macros: dict[str, str] = {}

    def line_at(self, pos: int) -> int:
        return self.s.count("\n", 0, pos) + 1

    def fail(self, pos: int, what: str) -> ImportFileError:
        return ImportFileError(f"{self.filename}, line {self.line_at(pos)}: {what}")

    def entries(self):
        pos = 0
        while True:
            m = _ENTRY_START.search(self.s, pos)
            if not m:
                return
            kind, opener = m.group(1).lower(), m.group(2)
            closer = "}" if opener == "{" else ")"
            start = m.start()
            if kind == "comment":
                pos = self._skip_balanced(m.end() - 1, start)
                continue
            if kind == "preamble":
                pos = self._skip_balanced(m.end() - 1, start)
                continue
            i = m.end()
            fields: dict[str, str] = {}
            if kind != "string":
                km = re.compile(r"\s*([^,\s{}()=]*)\s*,").match(self.s, i)
                if not km:
                    raise self.fail(start, f"@{kind} entry without a citation key")
                i = km.end()
            while True:
                i = self._skip_ws(i)
                if i >= len(self.s):
                    raise self.fail(start, f"@{kind} entry is never closed (missing '{closer}')")
                if self.s[i] == closer:
                    i += 1
                    break
                if self.s[i] == ",":
                    i += 1
                    continue
                fm = re.compile(r"([A-Za-z][\w\-:.+]*)\s*=\s*").match(self.s, i)
                if not fm:
                    raise self.fail(i, f"expected a field like 'title = {{...}}' in @{kind} entry")
                name = fm.group(1).lower()
                value, i = self._value(fm.end(), start)
                fields[name] = value
            if kind == "string":
                self.macros.update({k: v for k, v in fields.items()})
            else:
                yield kind, fields, self.line_at(start)
            pos = i

    def _skip_ws(self, i: int) -> int:
        while i < len(self.s) and self.s[i].isspace():
            i += 1
        return i

    def _skip_balanced(self, i: int, start: int) -> int:
        opener = self.s[i]
        closer = "}" if opener == "{" else ")"
        depth = 0
        for j in range(i, len(self.s)):
            if self.s[j] == opener:
                depth += 1
            elif self.s[j] == closer:
                depth -= 1
                if depth == 0:
                    return j + 1
        raise self.fail(start, "unbalanced braces")

    def _value(self, i: int, start: int) -> tuple[str, int]:
        parts = []
        while True:
            i = self._skip_ws(i)
            if i >= len(self.s):
                raise self.fail(start, "entry ends in the middle of a field value")
            c = self.s[i]
            if c == "{":
                end = self._skip_balanced(i, start)
                parts.append(self.s[i + 1:end - 1])
                i = end
            elif c == '"':
                depth, j = 0, i + 1
                while j < len(self.s):
                    ch = self.s[j]
                    if ch == "{":
                        depth += 1
                    elif ch == "}":
                        depth -= 1
                    elif ch == '"' and depth == 0 and self.s[j - 1] != "\\":
                        break
                    j += 1
                else:
                    raise self.fail(start, "a quoted field value is never closed")
                parts.append(self.s[i + 1:j])
                i = j + 1
            else:
                m = re.compile(r"[\w\-:.+]+").match(self.s, i)
                if not m:
                    raise self.fail(i, f"unexpected {c!r} in a field value")
                word = m.group(0)
                parts.append(self.macros.get(word.lower(), word))
                i = m.end()
            i = self._skip_ws(i)
            if i < len(self.s) and self.s[i] == "#":
                i += 1
                continue
            return "".join(parts), i


def _split_bib_authors(raw: str) -> list[str]:
    # Split on " and " only outside braces: {Barnes and Noble} is one corporate author.
    names, depth, cur = [], 0, ""
    tokens = re.split(r"(\{|\}|\s+and\s+)", raw, flags=re.IGNORECASE)
    for t in tokens:
        if t == "{":
            depth += 1
        elif t == "}":
            depth -= 1
        if depth == 0 and re.fullmatch(r"\s+and\s+", t or "", re.IGNORECASE):
            names.append(cur)
            cur = ""
        else:
            cur += t or ""
    names.append(cur)
    out = []
    for n in names:
        n = _latex_to_text(n)
        if not n or n.lower() == "others":
            continue
        if "," in n:
            last, _, first = n.partition(",")
            n = f"{first.strip()} {last.strip()}".strip()
        out.append(n)
    return out


def _parse_bibtex(text: str, filename: str) -> list[LikedRef]:
    reader = _BibReader(text, filename)
    refs = []
    for kind, f, line in reader.entries():
        prefix = f.get("archiveprefix", "").strip().lower()
        eprint = f.get("eprint", "")
        candidates = []
        # An eprint from another server (e.g. bioRxiv) is not an arXiv id, whatever it looks like.
        if eprint and prefix in ("", "arxiv"):
            candidates.append(eprint)
        candidates += [f.get("url", ""), f.get("doi", ""), f.get("journal", ""), f.get("note", ""),
                       f.get("howpublished", ""), f.get("booktitle", ""), f.get("number", "")]
        bare = arxiv_id_in(*candidates)
        if not bare and prefix == "arxiv" and eprint:
            raise reader.fail(reader.s.find(eprint), f"not an arXiv id in eprint: {eprint!r}")
        title = _latex_to_text(f.get("title", ""))
        if not bare and not title:
            continue
        refs.append(LikedRef(arxiv_id=bare, title=title, authors=_split_bib_authors(f.get("author", "")),
                             abstract=_latex_to_text(f.get("abstract", "")), line=line))
    return refs


# -- CSV (Zotero export) --------------------------------------------------------------------------

_ID_COLUMNS = ("url", "doi", "extra", "archive location", "archive id", "number", "publication title",
               "journal abbreviation", "link attachments", "eprint", "arxiv", "arxiv id")


def _looks_like_csv(text: str) -> bool:
    first = text.lstrip().splitlines()[0].lower()
    cells = [c.strip().strip('"') for c in first.split(",")]
    return "title" in cells and ("key" in cells or "url" in cells or "item type" in cells)


def _parse_csv(text: str, filename: str) -> list[LikedRef]:
    reader = csv.reader(io.StringIO(text))
    try:
        header: list[str] = []
        while not any(h.strip() for h in header):
            header = [h.strip().lower() for h in next(reader)]
        col = {name: i for i, name in reversed(list(enumerate(header)))}
        refs = []
        start = reader.line_num + 1
        for row in reader:
            # A quoted abstract spans several lines; report where the record starts.
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            get = lambda name: row[col[name]] if name in col and col[name] < len(row) else ""  # noqa: E731
            if get("item type").strip().lower() in ("attachment", "note", "annotation"):
                continue
            bare = arxiv_id_in(*(get(c) for c in _ID_COLUMNS))
            title = _clean(get("title"))
            if not bare and not title:
                continue
            # Zotero writes "Last, First; Last, First".
            authors = []
            for a in get("author").split(";"):
                last, sep, first = a.partition(",")
                name = f"{first.strip()} {last.strip()}" if sep else a.strip()
                if name.strip():
                    authors.append(_clean(name))
            refs.append(LikedRef(arxiv_id=bare, title=title, authors=authors,
                                 abstract=_clean(get("abstract note") or get("abstract")), line=line))
    except csv.Error as e:
        raise ImportFileError(f"{filename}, line {reader.line_num}: not a readable CSV file ({e})") from e
    return refs
