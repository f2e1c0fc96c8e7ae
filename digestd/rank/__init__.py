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
from .controls import Controls
from .fit import FitCache, featurize_known, fit, fit_readers, keywords_text, train
from .pool import DUPLICATE_COSINE, PassPool, prepare_pool
from .profile import DEFAULT_PARAMS, EMBEDDINGS_PARAMS, Params, UserModel, params_for
from .score import calibrate, calibrate_readers, rank_scores, reader_interest, score_readers
from .select import NOTHING_TODAY, Selection, select, select_readers

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
                  now: dt.datetime, *, params: Params | None = None) -> list[UserModel]:
    """``train`` for many readers against one background: fitted together, then calibrated together
    against the background's pool (its graph and operator built once)."""
    models = fit_readers(profiles, space, background, now, params=params)
    return calibrate_readers(models, prepare_pool(space, background, params))


def rank_readers(models: Sequence[UserModel], space: FeatureSpace, pool: Featurized, eligible, *,
                 sizes: Sequence[int], explore: Sequence[bool], min_scores: Sequence[float | None],
                 now: dt.datetime, timings: dict | None = None, controls=None) -> list[Selection]:
    """Every reader's digest from one shared pool: ``eligible[i, j]`` says whether pool paper j may go
    to reader i (their sources and window, not sent, not voted 👎). The pool's graph and operator are
    built once (memoised on ``pool``), every reader's scores come from one batch of matrix products,
    and explanations are made for the picks only. ``timings``, if given, gains the seconds of each step.
    ``controls``: one ``rank.controls.Controls`` per reader (pins and exclusions), or None."""
    import time

    t = time.perf_counter()
    passpool = prepare_pool(space, pool)
    scores = score_readers(models, passpool)
    t1 = time.perf_counter()
    explained: dict[str, float] = {}
    out = select_readers(models, passpool, scores, eligible, sizes, explore=explore, min_scores=min_scores, now=now,
                         controls=controls, timings=explained)
    if timings is not None:
        # Explaining the picks is not ranking: it gets its own stage, and select keeps the rest.
        timings["score"] = timings.get("score", 0.0) + t1 - t
        timings["select"] = timings.get("select", 0.0) + time.perf_counter() - t1 - explained.get("explain", 0.0)
        timings["explain"] = timings.get("explain", 0.0) + explained.get("explain", 0.0)
    return out


def _unique(papers: Iterable[PaperText]) -> list[PaperText]:
    seen: dict[str, PaperText] = {}
    for p in papers:
        seen.setdefault(p.key, p)
    return list(seen.values())


__all__ = [
    "BACKENDS", "Controls", "DEFAULT_BACKEND", "DEFAULT_PARAMS", "DUPLICATE_COSINE", "EMBEDDINGS_PARAMS", "FeatureSpace", "Featurized", "FitCache",
    "NOTHING_TODAY", "Params", "PassPool", "Selection", "UserModel", "calibrate", "calibrate_readers", "featurize",
    "featurize_known", "fit", "fit_readers", "fit_space", "keywords_text", "params_for", "prepare_pool", "rank_for_user", "rank_readers", "rank_scores",
    "reader_interest", "score_readers", "select", "select_readers", "train", "train_readers",
]
