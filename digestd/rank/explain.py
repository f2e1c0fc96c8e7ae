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
from .features import N_FEATURES, tokenize
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
    views = [pool.view(row, with_dense=model.coef_dense is not None) for row in rows]
    nearest = [int(np.argmax(sims[i])) if sims.shape[1] else -1 for i in range(len(rows))]
    highlights = _highlights(model, views, nearest)
    said = _Said()
    for i, row in enumerate(rows):
        paper = pool.papers[row]
        view = views[i]
        words = view.words
        matched = sorted(words & terms.keys(), key=rank.__getitem__)[:MAX_TERMS]
        because_of = because_title = None
        anchor_idx = nearest[i]
        anchor = model.anchors[anchor_idx] if anchor_idx >= 0 else None
        kw_hits = [kw for kw in model.keywords if _keyword_words(kw) and _keyword_words(kw) <= words]
        if anchor is not None and anchor.kind in ("vote", "seed"):
            because_of, because_title = anchor.key, anchor.title
        if explore_flags[i]:
            reason = "To explore: outside your usual topics, so your digest can learn what else you like"
        else:
            size = int(np.sum(np.asarray(model.cluster_of) == model.cluster_of[anchor_idx])) \
                if anchor is not None and len(model.cluster_of) == len(model.anchors) else 1
            reason = said.reason(anchor, size, kw_hits, matched)
        out.append(Pick(
            key=paper.key, score=float(scores[i]), reason=reason, matched_terms=matched,
            because_of=because_of, because_title=because_title,
            highlight=highlights[i], explore=bool(explore_flags[i]),
        ))
    return out


MAX_NAMED = 2                 # a liked paper is named in at most this many reasons of one digest


def _quoted(items: Sequence[str]) -> str:
    q = [f"“{t}”" for t in items]
    return q[0] if len(q) == 1 else f"{', '.join(q[:-1])} and {q[-1]}"


class _Said:
    """What one digest's reasons have said already, so ten reasons are not one phrase ten times:
    a liked paper is named at most ``MAX_NAMED`` times, a keyword once, and the matched terms
    shown are the ones this digest has not shown yet (the distinctive ones of each paper)."""

    def __init__(self) -> None:
        self.named: dict[str, int] = {}
        self.keywords: set[str] = set()
        self.terms: set[str] = set()

    def _fresh(self, matched: Sequence[str], n: int) -> list[str]:
        out = [t for t in matched if t not in self.terms][:n]
        self.terms.update(out)
        return out

    def reason(self, anchor, cluster_size: int, kw_hits: Sequence[str], matched: Sequence[str]) -> str:
        liked = anchor is not None and anchor.kind in ("vote", "seed")
        verb = "liked" if anchor is None or anchor.kind == "vote" else "listed"
        if liked and self.named.get(anchor.key, 0) < MAX_NAMED:
            self.named[anchor.key] = self.named.get(anchor.key, 0) + 1
            terms = self._fresh(matched, 2)
            reason = f"Because you {verb} “{_short(anchor.title)}”"
            return reason + (f": both on {_quoted(terms)}" if terms else "")
        new_kw = [kw for kw in kw_hits if kw not in self.keywords][:2]
        if new_kw:
            self.keywords.update(new_kw)
            return f"On your keyword{'s' if len(new_kw) > 1 else ''} {_quoted(new_kw)}"
        if anchor is not None and anchor.kind == "authors":
            return f"By an author you follow: {anchor.title}"
        terms = self._fresh(matched, 3)
        if liked and cluster_size > 1:
            what = f" on {_quoted(terms)}" if terms else ""
            return f"From one of your interests{what} ({cluster_size} papers you {verb})"
        if terms:
            return f"On {_quoted(terms)}, words of the papers you {verb}"
        if liked:
            return f"Near a paper you {verb}"
        if kw_hits:
            return f"On your keywords {_quoted(kw_hits[:2])}"
        return "Close to your interests"


def _highlights(model: UserModel, views: list, nearest: list[int]) -> list[str | None]:
    """Per pick, the abstract sentence closest to what this reader liked (the nearest anchor, plus
    the profile's linear weights), so the mail can show *why* in the paper's own words.

    All of a reader's picks in one pass: each sentence's TF-IDF entries looked up in its anchor's
    row (one bisection over the reader's anchors), summed per sentence."""
    out: list[str | None] = [v.sentences[0] if v.sentences else None for v in views]
    todo = [i for i, v in enumerate(views) if len(v.sentences) > 1] if not model.empty else []
    if not todo:
        return out
    lens = np.array([len(views[i].sentences) for i in todo])
    starts = np.r_[0, np.cumsum(lens)[:-1]]
    total = np.zeros(int(lens.sum()))
    with_anchor = [(j, i) for j, i in enumerate(todo) if nearest[i] >= 0]
    if with_anchor:
        pos = model.pos_sparse
        anchor_keys = np.repeat(np.arange(pos.shape[0], dtype=np.int64), np.diff(pos.indptr)) * N_FEATURES \
            + pos.indices
        sent = np.concatenate([views[i].sent_of + starts[j] for j, i in with_anchor])
        query = np.concatenate([nearest[i] * N_FEATURES + views[i].sent_col for _, i in with_anchor])
        value = np.concatenate([views[i].sent_val for _, i in with_anchor])
        at = np.minimum(np.searchsorted(anchor_keys, query), max(len(anchor_keys) - 1, 0))
        hit = anchor_keys[at] == query if len(anchor_keys) else np.zeros(len(query), bool)
        total += np.bincount(sent, weights=np.where(hit, value * pos.data[at] if len(anchor_keys) else 0.0, 0.0),
                             minlength=len(total))
    if model.coef_dense is not None and all(views[i].sent_dense is not None for i in todo):
        lin = np.vstack([views[i].sent_dense for i in todo]) @ model.coef_dense
        peak = np.maximum.reduceat(np.abs(lin), starts)
        total += 0.1 * lin / np.repeat(np.where(peak > 0, peak, 1.0), lens)
    # What the paper does over the field's background (the generic opener), a sentence with substance
    # over a fragment that happens to share one word; with no match at all, still what it does.
    role = np.concatenate([views[i].sent_role for i in todo])
    total = total * role + 0.01 * (role - 1.0)
    total += np.concatenate([views[i].sent_length for i in todo])
    for j, i in enumerate(todo):
        out[i] = views[i].sentences[int(np.argmax(total[starts[j]:starts[j] + lens[j]]))]
    return out
