"""Ranking: pure functions from (profile, papers) to a digest. No I/O, no database, no clock.

    space = FeatureSpace.fit(corpus)                       # when new papers arrive
    model = train(profile, space, background, now)         # per user: calibrate(fit(...)), see below
    sel = select(model, space, candidates, size, exclude=sent | downvoted, now=now)

``rank_for_user`` does all three in one call; it is the shipped ranker exactly as the daemon and
``digestd eval`` use it. ``train`` is ``fit`` (the per-user part: anchors, interests, linear model)
followed by ``calibrate`` (against the background). The daemon keeps trained models in the
database and passes one in (``model=``) while ``persist.fingerprint`` says it is still valid, so a
user is retrained only when their votes, seeds, keywords or authors, the params or the space change.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterable, Sequence

from ..models import PaperText, ProfileInput
from .features import FeatureSpace, Featurized, featurize
from .fit import FitCache, featurize_known, fit, fit_readers, train
from .profile import DEFAULT_PARAMS, Params, UserModel, calibrate
from .select import NOTHING_TODAY, Selection, rank_scores, select

DEFAULT_BACKEND = "tfidf"
BACKENDS = ("tfidf", "embeddings")


def fit_space(corpus: Sequence[PaperText], backend: str | None = None, *, encoder: object | None = None) -> FeatureSpace:
    """``encoder``: the embeddings backend's ``PaperEncoder``, built by the caller around its cache."""
    return FeatureSpace.fit(corpus, backend=backend or DEFAULT_BACKEND, encoder=encoder)


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


def train_readers(profiles: Sequence[ProfileInput], space: FeatureSpace, background: Featurized,
                  now: dt.datetime, *, params: Params = DEFAULT_PARAMS) -> list[UserModel]:
    """``train`` for many readers against one background: fitted together, then calibrated."""
    return [calibrate(m, space, background) for m in fit_readers(profiles, space, background, now, params=params)]


def rank_readers(models: Sequence[UserModel], space: FeatureSpace, pool: Featurized, eligible, *,
                 sizes: Sequence[int], explore: Sequence[bool], min_scores: Sequence[float | None],
                 now: dt.datetime, timings: dict | None = None) -> list[Selection]:
    """Every reader's digest from one shared pool: ``eligible[i, j]`` says whether pool paper j may go
    to reader i (their sources and window, not sent, not voted 👎)."""
    keys = [p.key for p in pool.papers]
    out = []
    for model, row, size, exp, ms in zip(models, eligible, sizes, explore, min_scores):
        exclude = {k for k, ok in zip(keys, row) if not ok}
        out.append(select(model, space, pool, size, exclude=exclude, explore=exp, min_score=ms, now=now))
    return out


def _unique(papers: Iterable[PaperText]) -> list[PaperText]:
    seen: dict[str, PaperText] = {}
    for p in papers:
        seen.setdefault(p.key, p)
    return list(seen.values())


__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "DEFAULT_PARAMS", "FeatureSpace", "Featurized", "FitCache", "NOTHING_TODAY", "Params",
    "Selection", "UserModel", "calibrate", "featurize", "featurize_known", "fit", "fit_readers", "fit_space", "rank_for_user",
    "rank_readers", "rank_scores", "select", "train", "train_readers",
]
