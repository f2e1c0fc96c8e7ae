"""The sentence encoder's tokenizer: BERT's uncased WordPiece, read from the model's tokenizer.json.

What the Hugging Face ``tokenizers`` package does with all-MiniLM-L6-v2's ``tokenizer.json`` (its
BertNormalizer, BertPreTokenizer, WordPiece model and [CLS] ... [SEP] template), in a few lines of
Python instead of a 12 MB native package and the 30 MB of hub client it pulls in. Checked against
that package id for id on real abstracts (tests/test_embeddings.py). Pure: text in, ids out.
"""
from __future__ import annotations

import functools
import json
import re
import unicodedata
from pathlib import Path
from typing import Sequence


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_chinese(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


# ASCII text (most abstracts) in one pass: tab/newline/CR become spaces, other controls go, and every
# printable non-alphanumeric character is punctuation, a word of its own.
_ASCII_CLEAN = {i: " " if chr(i) in "\t\n\r" else None for i in [*range(32), 127]}
_ASCII_WORDS = re.compile(r"[a-z0-9]+|[^a-z0-9\s]")


def _ascii_words(text: str) -> list[str]:
    return _ASCII_WORDS.findall(text.translate(_ASCII_CLEAN).lower())


def _normalise(text: str) -> str:
    """BertNormalizer(clean_text, handle_chinese_chars, strip_accents (as lowercase), lowercase)."""
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD:
            continue
        if ch in "\t\n\r" or unicodedata.category(ch) == "Zs":
            out.append(" ")
        elif unicodedata.category(ch).startswith("C"):
            continue
        elif _is_chinese(cp):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    text = unicodedata.normalize("NFD", "".join(out))
    return "".join(ch for ch in text if unicodedata.category(ch) != "Mn").lower()


def _pre_tokenize(text: str) -> list[str]:
    """BertPreTokenizer: split on whitespace, and every punctuation character is a word of its own."""
    words: list[str] = []
    for chunk in text.split():
        start = 0
        for i, ch in enumerate(chunk):
            if _is_punctuation(ch):
                if i > start:
                    words.append(chunk[start:i])
                words.append(ch)
                start = i + 1
        if start < len(chunk):
            words.append(chunk[start:])
    return words


class WordPiece:
    """``encode(text) -> ids``: [CLS] + word pieces (truncated to ``max_length`` with the specials) + [SEP]."""

    def __init__(self, path: Path, max_length: int) -> None:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
        model = spec["model"]
        if model.get("type") != "WordPiece":
            raise ValueError(f"{path}: not a WordPiece tokenizer")
        self.vocab: dict[str, int] = model["vocab"]
        self.unk = self.vocab[model.get("unk_token", "[UNK]")]
        self.prefix = model.get("continuing_subword_prefix", "##")
        self.max_chars = int(model.get("max_input_chars_per_word", 100))
        self.cls, self.sep = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.max_length = max_length
        self._word = functools.lru_cache(maxsize=1 << 16)(self._pieces)

    def _pieces(self, word: str) -> tuple[int, ...]:
        if len(word) > self.max_chars:
            return (self.unk,)
        out, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                found = self.vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return (self.unk,)
            out.append(found)
            start = end
        return tuple(out)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        room = self.max_length - 2
        words = _ascii_words(text) if text.isascii() else _pre_tokenize(_normalise(text))
        for word in words:
            ids.extend(self._word(word))
            if len(ids) >= room:
                break
        return [self.cls, *ids[:room], self.sep]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]
