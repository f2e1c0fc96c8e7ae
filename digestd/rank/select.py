"""Choose digests from the day's scores. Pure: scores in, picks out, many readers at once.

The rules, per reader: never an ineligible paper nor one the reader voted on or listed; best first
down to the threshold (0, or the reader's ``min_score``; nothing at all for a reader we know nothing
about); near-duplicates (cosine >= ``DUPLICATE_COSINE`` in the exact-words view, or the same title)
collapsed into the first; and, with ``explore``, one clearly marked pick outside the reader's
interests from the upper part of the rest, drawn with a seed of reader and day so a re-render
shows the same digest.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ..models import Pick, PaperText
from .explain import explain_picks
from .features import FeatureSpace, Featurized
from .pool import DUPLICATE_COSINE, PassPool, prepare_pool
from .profile import UserModel
from .score import interest_at, prime_interest_weights, score_readers

NOTHING_TODAY = "Nothing relevant today"
HEAD_EXTRA = 20               # candidates looked at beyond twice the digest size before sorting them all

__all__ = ["DUPLICATE_COSINE", "NOTHING_TODAY", "Selection", "select", "select_readers"]


@dataclass
class Selection:
    picks: list[Pick] = field(default_factory=list)
    note: str | None = None


def select_readers(models: Sequence[UserModel], pool: PassPool, scores: np.ndarray, eligible: np.ndarray,
                   sizes: Sequence[int], *, explore: Sequence[bool], min_scores: Sequence[float | None],
                   now: dt.datetime | None, explain: bool = True, timings: dict | None = None) -> list[Selection]:
    """One ``Selection`` per reader: up to ``sizes[u]`` picks from the papers ``eligible[u]`` allows.
    ``timings``, if given, gains the seconds spent explaining the picks (key ``explain``).

    ``scores``: ``score_readers(models, pool)``. ``min_scores[u]``: None = the reader's calibrated
    threshold (0); ``float("-inf")`` = no cut (full ranking). ``now`` seeds the exploration draw."""
    b, n = scores.shape
    allowed = np.array(eligible, dtype=bool, copy=True)
    for u, m in enumerate(models):
        voted = [pool.index[k] for k in m.known_keys if k in pool.index]
        allowed[u, voted] = False
    n_exploit = np.array([s - 1 if (e and s > 1) else s for s, e in zip(sizes, explore)])
    heads = _heads(scores, allowed, 2 * n_exploit + HEAD_EXTRA)
    prime_interest_weights([m for m, e, size in zip(models, explore, sizes) if e and size > 0])
    day = now.date().isoformat() if now is not None else ""
    chosen_of: list[tuple[list[int], list[bool]] | None] = []
    for u, m in enumerate(models):
        s = scores[u]
        if sizes[u] <= 0 or not allowed[u].any():
            chosen_of.append(None)
            continue
        cut = 0.0 if min_scores[u] is None else min_scores[u]
        if m.empty:
            # Nothing known about the reader yet: no relevance, only exploration can be offered.
            cut = float("inf") if min_scores[u] is None else min_scores[u]
        chosen, blocked = _greedy(s, heads[u], allowed[u], int(n_exploit[u]), cut, pool)
        flags = [False] * len(chosen)
        if explore[u]:
            j = _explore_pick(m, pool, s, allowed[u], chosen, blocked, day)
            if j is not None:
                chosen.append(j)
                flags.append(True)
        chosen_of.append((chosen, flags))
    explaining = 0.0
    if explain:
        t = time.perf_counter()
        # Every picked paper's sentences vectorised at once, whoever it was picked for.
        pool.prepare_views([i for c in chosen_of if c for i in c[0]],
                           with_dense=any(m.coef_dense is not None for m in models))
        explaining += time.perf_counter() - t
    out: list[Selection] = []
    for u, (m, picked) in enumerate(zip(models, chosen_of)):
        if picked is None:
            out.append(Selection([], NOTHING_TODAY if sizes[u] > 0 else None))
            continue
        chosen, flags = picked
        s = scores[u]
        if explain:
            t = time.perf_counter()
            picks = explain_picks(m, pool, chosen, s[chosen], flags)
            explaining += time.perf_counter() - t
        else:
            picks = [Pick(key=pool.papers[i].key, score=float(s[i]), reason="", explore=fl)
                     for i, fl in zip(chosen, flags)]
        out.append(Selection(picks, None if any(not fl for fl in flags) else NOTHING_TODAY))
    if timings is not None and explain:
        timings["explain"] = timings.get("explain", 0.0) + explaining
    return out


def _heads(scores: np.ndarray, allowed: np.ndarray, want: np.ndarray) -> list[np.ndarray]:
    """Per reader, the eligible papers at or above their ``want``-th best score, best first (ties
    by row): one argpartition over the batch instead of a full sort per reader."""
    b, n = scores.shape
    masked = np.where(allowed, scores, -np.inf)
    t = int(min(n, max(want.max(initial=1), 1)))
    if t < n:
        part = np.argpartition(-masked, t - 1, axis=1)[:, :t]
        floor = np.take_along_axis(masked, part, axis=1).min(axis=1)
    else:
        floor = np.full(b, -np.inf)
    rows, cols = np.nonzero((masked >= floor[:, None]) & allowed)
    order = np.lexsort((cols, -masked[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    bounds = np.searchsorted(rows, np.arange(b + 1))
    return [cols[bounds[u]:bounds[u + 1]] for u in range(b)]


def _greedy(s: np.ndarray, head: np.ndarray, allowed: np.ndarray, n_exploit: int, cut: float,
            pool: PassPool) -> tuple[list[int], set[int]]:
    """Best first, skipping duplicates of what is already chosen, until full or below the cut."""
    for candidates in (head, None):
        if candidates is None:
            # The head ran out before the digest was full: the rest, in the same order.
            idx = np.flatnonzero(allowed)
            candidates = idx[np.lexsort((idx, -s[idx]))]
        chosen: list[int] = []
        blocked: set[int] = set()
        stopped = False
        for i in candidates.tolist():
            if len(chosen) >= n_exploit or s[i] < cut:
                stopped = True
                break
            if i in blocked:
                continue
            chosen.append(i)
            blocked.update(pool.duplicates[i])
        if stopped or len(chosen) >= n_exploit or len(candidates) == int(allowed.sum()):
            return chosen, blocked
    return chosen, blocked


EXPLORE_SCAN = 200            # papers whose closeness to the reader's interests is computed first


def _explore_pick(model: UserModel, pool: PassPool, s: np.ndarray, allowed: np.ndarray, chosen: list[int],
                  blocked: set[int], day: str) -> int | None:
    """A reasonably good paper outside the reader's known interests: from the upper fifth (by score)
    of the remaining papers outside every interest (of all remaining ones if none is outside),
    where the linear model still sees something, rather than a random paper.

    Only the head of that fifth is read, so closeness to the interests is computed for the best
    ``EXPLORE_SCAN`` remaining papers first; the rest only when those do not settle the draw."""
    rest = allowed.copy()
    rest[chosen] = False
    if not rest.any():
        return None
    idx = np.flatnonzero(rest)
    need = 10 + len(blocked)                  # the draw reads the first 10 fresh papers of the fifth
    if not model.empty and model.centroids_dense.shape[0]:
        head = _ranked(idx, s, min(len(idx), EXPLORE_SCAN))
        outside = head[~(interest_at(model, pool, head) >= model.params.cluster_threshold)]
        # Settled when every paper was looked at, or when the outside ones seen already make the
        # fifth at least ``need`` long (there are at least that many outside papers).
        if len(head) < len(idx) and len(outside) // 5 < need:
            everything = _ranked(idx, s, len(idx))
            outside = everything[~(interest_at(model, pool, everything) >= model.params.cluster_threshold)]
            head = everything
        if len(outside):
            m = max(1, len(outside) // 5) if len(head) == len(idx) else len(outside) // 5
            return _draw(model, [i for i in outside[:m].tolist() if i not in blocked][:10], day)
    m = max(1, len(idx) // 5)
    ranked = _ranked(idx, s, min(m, need))
    return _draw(model, [i for i in ranked[:m].tolist() if i not in blocked][:10], day)


def _ranked(idx: np.ndarray, s: np.ndarray, want: int) -> np.ndarray:
    """The best ``want`` of ``idx`` by score (ties at the edge included), best first, ties by row."""
    if want < len(idx):
        floor = np.partition(s[idx], len(idx) - want)[len(idx) - want]
        idx = idx[s[idx] >= floor]
    return idx[np.lexsort((idx, -s[idx]))]


def _draw(model: UserModel, fresh: list[int], day: str) -> int | None:
    """Seeded by reader and day, so a re-render shows the same digest."""
    if not fresh:
        return None
    h = int(hashlib.sha256(f"{model.user_id}|{day}".encode()).hexdigest()[:8], 16)
    return fresh[h % min(len(fresh), 10)]


# -- one reader: a batch of one --------------------------------------------------------------
def select(model: UserModel, space: FeatureSpace, candidates: Sequence[PaperText] | Featurized, size: int, *,
           exclude: Iterable[str] = frozenset(), explore: bool = True, min_score: float | None = None,
           now: dt.datetime | None = None, explain_picks: bool = True) -> Selection:
    """Up to ``size`` picks, best first, never a key in ``exclude`` nor a paper the user voted on.

    ``min_score``: None = the user's calibrated threshold (0); ``float("-inf")`` = no cut (full ranking).
    ``explore``: reserve one slot for a clearly marked exploration pick outside the known interests.
    ``now`` seeds the exploration draw, so one user's digest for one day is reproducible.
    """
    pool = prepare_pool(space, candidates, model.params)
    exclude = set(exclude)
    eligible = np.array([[p.key not in exclude for p in pool.papers]], dtype=bool).reshape(1, pool.n)
    scores = score_readers([model], pool)
    return select_readers([model], pool, scores, eligible, [size], explore=[explore], min_scores=[min_score],
                          now=now, explain=explain_picks)[0]
