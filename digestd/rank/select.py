"""Choose a digest from the day's candidates. Pure: scores in, picks out."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ..models import Pick, PaperText
from .explain import explain
from .features import FeatureSpace, Featurized, compact_dense, featurize, normalise_text
from .profile import UserModel, blend, component_scores

DUPLICATE_COSINE = 0.85        # two rows this close are the same work (two sources, two versions)
NOTHING_TODAY = "Nothing relevant today"


@dataclass
class Selection:
    picks: list[Pick] = field(default_factory=list)
    note: str | None = None


def _title_key(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", normalise_text(title)).strip()


def rank_scores(model: UserModel, space: FeatureSpace, candidates: Sequence[PaperText] | Featurized) -> np.ndarray:
    """Calibrated scores for every candidate: 0 is the user's relevance threshold."""
    f = featurize(space, candidates)
    if model.empty or len(f) == 0:
        return np.zeros(len(f))
    return blend(model, component_scores(model, f)) - model.threshold


def select(model: UserModel, space: FeatureSpace, candidates: Sequence[PaperText] | Featurized, size: int, *,
           exclude: Iterable[str] = frozenset(), explore: bool = True, min_score: float | None = None,
           now: dt.datetime | None = None, explain_picks: bool = True) -> Selection:
    """Up to ``size`` picks, best first, never a key in ``exclude`` nor a paper the user voted on.

    ``min_score``: None = the user's calibrated threshold (0); ``float("-inf")`` = no cut (full ranking).
    ``explore``: reserve one slot for a clearly marked exploration pick outside the known interests.
    ``now`` seeds the exploration draw, so one user's digest for one day is reproducible.
    """
    f = featurize(space, candidates)
    exclude = set(exclude) | set(model.known_keys)
    # Score the whole pool (its neighbour graph is shared with other users), then drop exclusions.
    scores_all = rank_scores(model, space, f)
    keep = [i for i, p in enumerate(f.papers) if p.key not in exclude]
    f = f.subset(keep)
    scores = scores_all[keep]
    if size <= 0 or len(f) == 0:
        return Selection([], NOTHING_TODAY if size > 0 else None)
    cut = 0.0 if min_score is None else min_score
    cold = model.empty
    if cold:
        # Nothing known about the user yet: no relevance, only exploration can be offered.
        cut = float("inf") if min_score is None else min_score
    n_exploit = size - 1 if (explore and size > 1) else size
    order = np.argsort(-scores, kind="stable")

    chosen: list[int] = []
    seen_titles: set[str] = set()
    # Cosines among the head of the ranking in one product, so the duplicate check is a lookup.
    head = order[: min(len(order), 2 * n_exploit + 20)]
    (hd,) = compact_dense(f.sparse[head])
    gram = hd @ hd.T
    at = {int(i): r for r, i in enumerate(head)}
    for i in order:
        if len(chosen) >= n_exploit or scores[i] < cut:
            break
        if i in at and all(c in at for c in chosen):
            dup = _title_key(f.papers[i].title) in seen_titles or \
                bool(chosen and gram[at[int(i)], [at[c] for c in chosen]].max() >= DUPLICATE_COSINE)
        else:
            dup = _is_duplicate(f, i, chosen, seen_titles)
        if dup:
            continue
        chosen.append(int(i))
        seen_titles.add(_title_key(f.papers[i].title))

    flags = [False] * len(chosen)
    if explore:
        j = _explore_pick(model, f, scores, chosen, seen_titles, now)
        if j is not None:
            chosen.append(j)
            flags.append(True)

    picked = f.subset(chosen)
    if explain_picks:
        picks = explain(model, space, picked, scores[chosen], flags)
    else:
        picks = [Pick(key=p.key, score=float(scores[i]), reason="", explore=fl)
                 for p, i, fl in zip(picked.papers, chosen, flags)]
    note = None if any(not fl for fl in flags) else NOTHING_TODAY
    return Selection(picks, note)


def _is_duplicate(f: Featurized, i: int, chosen: list[int], seen_titles: set[str]) -> bool:
    if _title_key(f.papers[i].title) in seen_titles:
        return True
    if not chosen:
        return False
    # Dense over just the columns these few rows use: scipy's elementwise ops on 2^20 columns
    # allocate full-width index arrays, which made this check most of the selection time.
    rows, row = compact_dense(f.sparse[chosen], f.sparse[[i]])
    return bool((rows @ row[0]).max() >= DUPLICATE_COSINE)


def _explore_pick(model: UserModel, f: Featurized, scores: np.ndarray, chosen: list[int],
                  seen_titles: set[str], now: dt.datetime | None) -> int | None:
    """A reasonably good paper outside the user's known interests.

    "Outside": not close to any interest centroid. "Reasonably good": from the upper part of the
    remaining ranking, where the linear model still sees something, rather than a random paper.
    The draw is seeded by user and day, so a re-render shows the same digest.
    """
    taken = set(chosen)
    rest = [i for i in range(len(f)) if i not in taken]
    if not rest:
        return None
    rest_arr = np.array(rest)
    if not model.empty and model.centroids_dense.shape[0]:
        mix = model.params.dense_mix
        sub = f.subset(rest_arr)
        csim = ((1 - mix) * sub.sparse_dot(model.centroids_sparse)
                + mix * (sub.dense @ model.centroids_dense.T)).max(axis=1)
        outside = rest_arr[csim < model.params.cluster_threshold]
        if len(outside):
            rest_arr = outside
    # Upper fifth of what is left, by score: good enough to be worth a look.
    ranked = rest_arr[np.argsort(-scores[rest_arr], kind="stable")]
    pool = ranked[: max(1, len(ranked) // 5)]
    pool = [int(i) for i in pool if not _is_duplicate(f, int(i), chosen, seen_titles)]
    if not pool:
        return None
    day = now.date().isoformat() if now is not None else ""
    h = int(hashlib.sha256(f"{model.user_id}|{day}".encode()).hexdigest()[:8], 16)
    return pool[h % min(len(pool), 10)]
