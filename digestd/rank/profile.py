"""A user's interest profile, learned from what they told us. Pure: no I/O, no clock (``now`` is passed).

The score of a paper blends three views, each standardised against the user's own background
(unvoted papers), so a score means "how many background standard deviations above a typical paper",
comparable from one day to the next:

* ``interest``: similarity to the nearest *interest* (a cluster of liked papers) and to the nearest
  individual liked papers. Max-over-interests is what keeps "retrieval + protein folding" two peaks
  instead of one blurred average that matches neither.
* ``linear``: a logistic regression, liked vs. (disliked, heavier) + (sampled unvoted, lighter):
  it learns which words separate this reader's papers from the stream, not just what they contain.
* ``dislike``: similarity to thumbs-downed papers, subtracted.

Newer votes weigh more (exponential decay with ``half_life_days``), so the profile drifts with its owner.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..models import PaperText
from .features import FeatureSpace, Featurized, featurize, knn_graph


@dataclass(frozen=True)
class Params:
    """Knobs, tuned on half the citeulike-dev users and confirmed on the other half (see evaluate.py)."""

    half_life_days: float = 180.0      # a vote loses half its weight in six months
    seed_weight: float = 1.0           # config seed papers / imports count like a fresh thumbs-up
    keyword_weight: float = 1.0        # the keywords pseudo-paper
    down_weight: float = 3.0           # one thumbs-down counts like this many liked papers (vs sampled unvoted)
    background_sample: int = 500       # unvoted papers used as soft negatives (more: slower fit, no gain)
    C: float = 1.0                     # logistic regression: inverse regularisation
    cluster_threshold: float = 0.35    # cosine above which two liked papers share one interest
    dense_mix: float = 0.5             # weight of the topic (dense) view vs exact words in similarities
    graph_k: int = 50                  # neighbours per paper in the diffusion graph
    alpha: float = 0.8                 # diffusion: probability of following an edge vs jumping back home
    iterations: int = 20
    w_diffusion: float = 1.0
    w_interest: float = 0.0            # measured: the diffusion already keeps interests apart; kept for A/B runs
    w_linear: float = 0.1              # light: on citeulike-dev it helps little, but it carries thumbs-down vs stream
    w_hub: float = 0.1                 # hubness correction: generic papers near everything rank less
    w_dislike: float = 0.5
    threshold_quantile: float = 0.97   # only the top 3% of the background counts as "relevant"
    seed: int = 0


DEFAULT_PARAMS = Params()


@dataclass
class Anchor:
    """Something the user told us they like: a liked/seed paper, or their keywords."""

    key: str | None
    title: str
    weight: float
    kind: str                          # "vote" | "seed" | "keywords" | "authors"


@dataclass
class UserModel:
    """Everything needed to score papers for one user. Picklable, no reference to other users."""

    user_id: str
    params: Params
    anchors: list[Anchor]
    pos_sparse: sp.csr_matrix          # one row per anchor
    pos_dense: np.ndarray
    pos_weight: np.ndarray
    centroids_sparse: sp.csr_matrix    # one row per interest cluster
    centroids_dense: np.ndarray
    cluster_of: np.ndarray             # anchor -> cluster
    neg_sparse: sp.csr_matrix          # thumbs-downed papers
    neg_dense: np.ndarray
    coef_dense: np.ndarray | None      # linear model over the topic view
    intercept: float
    # per-component standardisation against the background, and the relevance threshold
    mu: dict[str, float] = field(default_factory=dict)
    sd: dict[str, float] = field(default_factory=dict)
    threshold: float = 0.0
    keywords: list[str] = field(default_factory=list)
    profile_terms: dict[str, float] = field(default_factory=dict)   # term -> weight, for reasons
    known_keys: frozenset[str] = frozenset()                         # voted / seed papers
    trained_at: dt.datetime | None = None

    @property
    def empty(self) -> bool:
        return len(self.anchors) == 0


def calibrate(model: UserModel, space: FeatureSpace, background: Sequence[PaperText] | Featurized) -> UserModel:
    """The per-background part of training, in place: standardise each score component on the
    background, then put the relevance threshold at a high quantile of the background's blended
    score. A thin day thus yields few picks. The background's neighbour graph is memoised on a
    shared ``Featurized``, so calibrating many users against one background pays for it once."""
    if model.empty:
        return model
    bg = featurize(space, background)
    if len(bg):
        model.mu, model.sd = {}, {}
        raw = component_scores(model, bg)
        for name, v in raw.items():
            model.mu[name] = float(np.mean(v))
            model.sd[name] = float(np.std(v)) or 1.0
        total = blend(model, raw)
        model.threshold = float(np.quantile(total, model.params.threshold_quantile))
    return model


def component_scores(model: UserModel, pool: Featurized) -> dict[str, np.ndarray]:
    """Raw (unstandardised) score components for every paper of ``pool``.

    ``diffusion`` is a personalised PageRank on the pool's k-nearest-neighbour graph with the
    user's anchors added as nodes: relevance flows from liked papers to their neighbours and on
    to *their* neighbours, so a paper that shares no words with a liked one but sits in the same
    neighbourhood still surfaces. With five likes, this beats any single similarity.
    """
    p = model.params
    n = len(pool)
    if model.empty or n == 0:
        return {"interest": np.zeros(n)}
    mix = p.dense_mix
    out: dict[str, np.ndarray] = {}
    sims = (1 - mix) * pool.sparse_dot(model.pos_sparse) + mix * (pool.dense @ model.pos_dense.T)
    out["diffusion"] = _diffuse(model, pool, sims)
    csims = (1 - mix) * pool.sparse_dot(model.centroids_sparse) + mix * (pool.dense @ model.centroids_dense.T)
    out["interest"] = csims.max(axis=1)          # nearest interest, not the blur of all of them
    if model.coef_dense is not None:
        out["linear"] = pool.dense @ model.coef_dense + model.intercept
    out["hub"] = _pool_graph(pool, p)[2]
    if model.neg_sparse.shape[0]:
        nsims = (1 - mix) * pool.sparse_dot(model.neg_sparse) + mix * (pool.dense @ model.neg_dense.T)
        out["dislike"] = nsims.max(axis=1)
    return out


def _diffuse(model: UserModel, pool: Featurized, sims: np.ndarray) -> np.ndarray:
    """Personalised PageRank on the pool graph augmented with the anchors as extra nodes.

    Same walk as building the (n+m)-node graph explicitly, but solved block-wise: the anchors only
    touch the pool, so adding them rescales the pool's symmetric normalisation by a per-node factor
    and contributes one dense (n, m) block. The pool's normalised graph is memoised with the pool,
    so a user costs ``iterations`` sparse mat-vecs, a few milliseconds for thousands of papers.
    """
    p = model.params
    n, m = sims.shape                              # pool size, anchors
    graph, kth, deg = _pool_graph(pool, p)
    k = min(p.graph_k, n)
    # Anchor edges: an anchor links to its k nearest pool papers, and a pool paper links to an
    # anchor that is closer than its own k-th neighbour (the kNN rule, seen from both ends).
    if k < n:
        top = np.argpartition(-sims, k - 1, axis=0)[:k]
        mask = np.zeros_like(sims, dtype=bool)
        np.put_along_axis(mask, top, True, axis=0)
    else:
        mask = np.ones_like(sims, dtype=bool)
    mask |= sims >= kth[:, None]
    e = np.where(mask, np.maximum(sims, 0.0), 0.0)                    # (n, m)
    deg_pool = deg + e.sum(axis=1)
    deg_anchor = e.sum(axis=0)
    inv_p = 1.0 / np.sqrt(np.where(deg_pool > 0, deg_pool, 1.0))
    inv_a = 1.0 / np.sqrt(np.where(deg_anchor > 0, deg_anchor, 1.0))
    e_norm = e * inv_p[:, None] * inv_a[None, :]                      # D_p^-1/2 E D_a^-1/2
    w = model.pos_weight / model.pos_weight.sum()
    fp = np.zeros(n)
    fa = w.copy()
    a = p.alpha
    for _ in range(p.iterations):
        # graph @ (inv_p * fp) * inv_p is the pool block of D^-1/2 A D^-1/2 with the new degrees
        fp_new = a * (inv_p * (graph @ (inv_p * fp)) + e_norm @ fa)
        fa = (1 - a) * w + a * (e_norm.T @ fp)
        fp = fp_new
    # Scaled by the pool size, so a paper's score does not shrink just because the day is busy.
    return fp * n


def _pool_graph(pool: Featurized, p: Params):
    key = ("deg", p.graph_k, p.dense_mix)
    cache = pool.__dict__.setdefault("_graphs", {})
    if key not in cache:
        graph, kth = knn_graph(pool, p.graph_k, p.dense_mix)
        cache[key] = (graph, kth, np.asarray(graph.sum(axis=1)).ravel())
    return cache[key]


def blend(model: UserModel, raw: dict[str, np.ndarray]) -> np.ndarray:
    p = model.params
    weights = {"diffusion": p.w_diffusion, "interest": p.w_interest, "linear": p.w_linear,
               "hub": -p.w_hub, "dislike": -p.w_dislike}
    total = None
    for name, v in raw.items():
        z = (v - model.mu.get(name, 0.0)) / model.sd.get(name, 1.0)
        part = weights[name] * z
        total = part if total is None else total + part
    return total


def score(model: UserModel, space: FeatureSpace, papers: Sequence[PaperText] | Featurized) -> np.ndarray:
    """Calibrated scores (0 = the user's relevance threshold; higher is better)."""
    f = featurize(space, papers)
    if model.empty or len(f) == 0:
        return np.zeros(len(f))
    return blend(model, component_scores(model, f)) - model.threshold

