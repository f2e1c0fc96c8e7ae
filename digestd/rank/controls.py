"""A reader's own rules over the ranking: papers always in the digest, papers never in it. Pure.

``pin_authors`` and ``pin_keywords`` put a matching paper in the digest whatever it scores (first,
marked as pinned); ``exclude_keywords`` keep a matching paper out whatever it scores, and win over a
pin. A keyword matches a whole phrase of the title or abstract, folded like the ranker's words (case,
accents, TeX, plurals: "graph neural network" matches "Graph Neural Networks"); an author matches by
surname and first initial, as author follows do ("J. Müller" matches "Jörg Muller").

Batched: every distinct phrase and author of a batch is matched against the pool once, whoever
asked for it, and readers' masks are ORs of those columns.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..models import PaperText
from .features import _author_token, normalise_text, singular

_WORDS = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Controls:
    pin_authors: tuple[str, ...] = ()
    pin_keywords: tuple[str, ...] = ()
    exclude_keywords: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.pin_authors or self.pin_keywords or self.exclude_keywords)


NO_CONTROLS = Controls()


def phrase_form(text: str) -> str:
    """Words folded to the ranker's singular, space-joined and space-padded for whole-phrase search."""
    return " " + " ".join(singular(w) for w in _WORDS.findall(normalise_text(text))) + " "


def author_form(name: str) -> str:
    """"Jörg K. Müller" -> "author:muller_j" (empty when ``name`` has no letters)."""
    return _author_token(name) if _WORDS.search(normalise_text(name)) else ""


@dataclass
class ControlMasks:
    """(readers, papers): ``pinned`` (with ``pinned_by[u][j]``, the author or keyword that pinned
    paper j for reader u) and ``excluded``."""

    pinned: np.ndarray
    excluded: np.ndarray
    pinned_by: list[dict[int, str]]


def control_masks(controls: Sequence[Controls], papers: Sequence[PaperText]) -> ControlMasks:
    b, n = len(controls), len(papers)
    pinned = np.zeros((b, n), dtype=bool)
    excluded = np.zeros((b, n), dtype=bool)
    pinned_by: list[dict[int, str]] = [{} for _ in range(b)]
    if not n or all(c.empty for c in controls):
        return ControlMasks(pinned, excluded, pinned_by)
    texts = [phrase_form(f"{p.title} . {p.abstract or ''}") for p in papers]
    authors = [{_author_token(a) for a in (p.authors or [])} - {""} for p in papers]
    phrase_hits: dict[str, np.ndarray] = {}
    author_hits: dict[str, np.ndarray] = {}

    def phrase(kw: str) -> np.ndarray:
        form = phrase_form(kw)
        if form not in phrase_hits:
            phrase_hits[form] = np.array([form in t for t in texts], dtype=bool) if form.strip() \
                else np.zeros(n, dtype=bool)
        return phrase_hits[form]

    def author(name: str) -> np.ndarray:
        token = author_form(name)
        if token not in author_hits:
            author_hits[token] = np.array([token in a for a in authors], dtype=bool) if token \
                else np.zeros(n, dtype=bool)
        return author_hits[token]

    for u, c in enumerate(controls):
        for kw in c.exclude_keywords:
            excluded[u] |= phrase(kw)
        for label, hits in [*((f"by {a}", author(a)) for a in c.pin_authors),
                            *((f"mentions “{k}”", phrase(k)) for k in c.pin_keywords)]:
            for j in np.flatnonzero(hits & ~excluded[u] & ~pinned[u]).tolist():
                pinned_by[u][j] = label
            pinned[u] |= hits
        pinned[u] &= ~excluded[u]
    return ControlMasks(pinned, excluded, pinned_by)
