"""Reasons a person can check: the liked paper a pick is closest to, the words that matched, and the
one sentence of the abstract that speaks to this reader. Pure.

Only the picks are explained, and what a paper needs for it (its words, its sentences and their
vectors) is computed once per pass on the pool, however many readers it is picked for.
"""
from __future__ import annotations

import weakref
from functools import lru_cache
from typing import Sequence

import numpy as np

from ..models import Pick
from .features import tokenize
from .pool import PassPool, sentences
from .profile import UserModel

MAX_TERMS = 5

__all__ = ["MAX_TERMS", "explain_picks", "sentences"]


@lru_cache(maxsize=65536)
def _keyword_words(keyword: str) -> frozenset[str]:
    return frozenset(tokenize(keyword))


_TERM_RANK: dict[int, tuple] = {}


def _term_rank(model: UserModel) -> dict[str, int]:
    """Profile terms by weight (heaviest first, then alphabetical), once per model object."""
    entry = _TERM_RANK.get(id(model))
    if entry is None or entry[0]() is not model or entry[1] is not model.profile_terms:
        terms = model.profile_terms
        order = sorted(terms, key=lambda t: (-terms[t], t))
        key = id(model)
        entry = (weakref.ref(model, lambda _r, key=key: _TERM_RANK.pop(key, None)), terms,
                 {t: i for i, t in enumerate(order)})
        _TERM_RANK[key] = entry
    return entry[2]


def _short(title: str, limit: int = 90) -> str:
    title = " ".join(title.split())
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


def _anchor_sims(model: UserModel, pool: PassPool, rows: Sequence[int]) -> np.ndarray:
    """(picks, anchors): blended similarity of each pick to each of the reader's anchors, read from
    the similarities scoring computed (the pool keeps them by anchor content)."""
    if model.empty or not len(rows):
        return np.zeros((len(rows), 0))
    mix = model.params.dense_mix
    keys, _ = pool.reader_rows(model)
    s_sparse = pool.sparse_sims_at(keys, model.pos_sparse, rows)
    dense = model.pos_dense
    s_dense = dense @ pool.feats.dense[rows].T if dense.shape[1] == pool.feats.dense.shape[1] else 0.0
    return ((1 - mix) * s_sparse + mix * s_dense).T


def explain_picks(model: UserModel, pool: PassPool, rows: Sequence[int], scores: np.ndarray,
                  explore_flags: Sequence[bool]) -> list[Pick]:
    """One ``Pick`` per pool row in ``rows``, with reason, matched terms, closest anchor and highlight."""
    out: list[Pick] = []
    if not len(rows):
        return out
    sims = _anchor_sims(model, pool, rows)
    terms = model.profile_terms
    rank = _term_rank(model)
    for i, row in enumerate(rows):
        paper = pool.papers[row]
        view = pool.view(row, with_dense=model.coef_dense is not None)
        words = view.words
        matched = sorted(words & terms.keys(), key=rank.__getitem__)[:MAX_TERMS]
        because_of = because_title = None
        anchor_idx = int(np.argmax(sims[i])) if sims.shape[1] else -1
        anchor = model.anchors[anchor_idx] if anchor_idx >= 0 else None
        kw_hits = [kw for kw in model.keywords if _keyword_words(kw) and _keyword_words(kw) <= words]
        if explore_flags[i]:
            reason = "To explore: outside your usual topics, so your digest can learn what else you like"
        elif anchor is not None and anchor.kind in ("vote", "seed"):
            because_of, because_title = anchor.key, anchor.title
            verb = "liked" if anchor.kind == "vote" else "listed"
            reason = f"Because you {verb} “{_short(anchor.title)}”"
            if kw_hits:
                reason += f"; matches your keywords: {', '.join(kw_hits[:3])}"
        elif kw_hits:
            reason = f"Matches your keywords: {', '.join(kw_hits[:3])}"
        elif anchor is not None and anchor.kind == "authors":
            reason = f"By an author you follow: {anchor.title}"
        elif matched:
            reason = f"Matches your interests: {', '.join(matched[:3])}"
        else:
            reason = "Close to your interests"
        out.append(Pick(
            key=paper.key, score=float(scores[i]), reason=reason, matched_terms=matched,
            because_of=because_of, because_title=because_title,
            highlight=_highlight(model, view, anchor_idx), explore=bool(explore_flags[i]),
        ))
    return out


def _highlight(model: UserModel, view, anchor_idx: int) -> str | None:
    """The abstract sentence closest to what this reader liked (the nearest anchor, plus the
    profile's linear weights), so the mail can show *why* in the paper's own words."""
    sents = view.sentences
    if not sents:
        return None
    if len(sents) == 1 or model.empty:
        return sents[0]
    score = np.zeros(len(sents))
    if anchor_idx >= 0:
        row = model.pos_sparse
        lo, hi = row.indptr[anchor_idx], row.indptr[anchor_idx + 1]
        cols, vals = row.indices[lo:hi], row.data[lo:hi]
        # The anchor's weights on the columns the sentences use (its indices are sorted).
        at = np.searchsorted(cols, view.sent_cols)
        at_ok = np.minimum(at, max(len(cols) - 1, 0))
        hit = (at < len(cols)) & (cols[at_ok] == view.sent_cols) if len(cols) else np.zeros(len(view.sent_cols), bool)
        v = np.where(hit, vals[at_ok] if len(cols) else 0.0, 0.0)
        score += view.sent_sparse @ v
    if model.coef_dense is not None and view.sent_dense is not None:
        lin = view.sent_dense @ model.coef_dense
        score += 0.1 * lin / (np.abs(lin).max() or 1.0)
    # Prefer a sentence with substance over a fragment that happens to share one word.
    score += view.sent_length
    return sents[int(np.argmax(score))]
