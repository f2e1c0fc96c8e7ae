"""Ranking: pure functions from (profiles, papers) to digests. No I/O, no database, no clock.

    space = fit_space(corpus)                              # when new papers arrive
    model = train(profile, space, background, now)         # per reader: calibrate(fit(...)), see below
    pool = prepare_pool(space, candidates)                 # once per pass, shared by every reader
    scores = score_readers(models, pool)                   # (readers, papers), one set of products
    sels = select_readers(models, pool, scores, eligible, sizes, explore=..., min_scores=..., now=now)

``train`` is ``fit`` (the per-reader part: anchors, interests, linear model) followed by
``calibrate`` (against the background; ``calibrate_readers`` for many). The single-reader calls
(``select``, ``rank_scores``, ``calibrate``, ``rank_for_user``) are batches of one, so ``digest USER``,
the daemon and ``digestd eval`` share one ranker. ``rank_for_user`` does everything for one reader.
The daemon keeps trained models in the database and passes one in (``model=``) while
``persist.fingerprint`` says it is still valid, so a reader is retrained only when their votes,
seeds, keywords or authors, the params or the space change.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterable, Sequence

from ..models import PaperText, ProfileInput
from .features import FeatureSpace, Featurized, featurize
from .pool import DUPLICATE_COSINE, PassPool, prepare_pool
from .profile import DEFAULT_PARAMS, Params, UserModel, featurize_known, fit
from .score import calibrate, calibrate_readers, rank_scores, reader_interest, score_readers
from .select import NOTHING_TODAY, Selection, select, select_readers

DEFAULT_BACKEND = "tfidf"
BACKENDS = ("tfidf", "embeddings")


def fit_space(corpus: Sequence[PaperText], backend: str | None = None, *, encoder: object | None = None) -> FeatureSpace:
    """``encoder``: the embeddings backend's ``PaperEncoder``, built by the caller around its cache."""
    return FeatureSpace.fit(corpus, backend=backend or DEFAULT_BACKEND, encoder=encoder)


def train(profile: ProfileInput, space: FeatureSpace, background: Sequence[PaperText] | Featurized,
          now: dt.datetime, *, params: Params = DEFAULT_PARAMS) -> UserModel:
    """Fit one user's model from their votes, seeds, keywords and authors, and calibrate it.

    ``background``: recent papers of the stream (unvoted ones become soft negatives and the
    reference distribution for calibration). Deterministic for a given input and ``params.seed``.
    Exactly ``calibrate(fit(...), ...)``: the daemon stores the result and reuses it until the
    user's input, the params or the space change (see ``rank.persist``).
    """
    bg = featurize(space, background)
    return calibrate(fit(profile, space, bg, now, params=params), space, bg)


def rank_for_user(profile: ProfileInput, candidates: Sequence[PaperText], background: Sequence[PaperText],
                  size: int, *, exclude: Iterable[str] = (), explore: bool = True,
                  min_score: float | None = None, now: dt.datetime, backend: str | None = None,
                  space: FeatureSpace | None = None, model: UserModel | None = None) -> Selection:
    """Fit the feature space (unless given), train the user's model (unless given: a stored model
    trained on this ``space``), select the digest."""
    if space is None:
        corpus = _unique([*candidates, *background, *profile.seed_papers, *(v.paper for v in profile.votes)])
        space = fit_space(corpus, backend)
    if model is None:
        model = train(profile, space, background, now)
    return select(model, space, candidates, size, exclude=set(exclude), explore=explore,
                  min_score=min_score, now=now)


def _unique(papers: Iterable[PaperText]) -> list[PaperText]:
    seen: dict[str, PaperText] = {}
    for p in papers:
        seen.setdefault(p.key, p)
    return list(seen.values())


__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "DEFAULT_PARAMS", "DUPLICATE_COSINE", "FeatureSpace", "Featurized",
    "NOTHING_TODAY", "Params", "PassPool", "Selection", "UserModel", "calibrate", "calibrate_readers", "featurize",
    "featurize_known", "fit", "fit_space", "prepare_pool", "rank_for_user", "rank_scores", "reader_interest",
    "score_readers", "select", "select_readers", "train",
]
