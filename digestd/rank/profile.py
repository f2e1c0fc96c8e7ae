"""A user's interest profile, learned from what they told us. Pure: no I/O, no clock (``now`` is passed).

``fit`` turns votes, seeds, keywords and authors into a ``UserModel``: anchors (what the reader
likes), *interests* (clusters of anchors: max-over-interests keeps "retrieval + protein folding" two
peaks instead of one blurred average), a logistic regression (liked vs. disliked, heavier, and
sampled unvoted, lighter: which words separate this reader's papers from the stream) and the
thumbs-downs. ``rank.score`` turns models into scores, many readers at once.

Newer votes weigh more (exponential decay with ``half_life_days``), so the profile drifts with its owner.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize

from ..models import PaperText, ProfileInput
from .features import FeatureSpace, Featurized, compact_dense, featurize


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
    graph_k: int = 60                  # neighbours per paper in the diffusion graph (50 before the shared operator; 60 chosen on half A)
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


def _decay(at: dt.datetime | None, now: dt.datetime, half_life: float) -> float:
    if at is None:
        return 1.0
    if (at.tzinfo is None) != (now.tzinfo is None):
        at = at.replace(tzinfo=now.tzinfo)
    age = max(0.0, (now - at).total_seconds() / 86400.0)
    return float(0.5 ** (age / half_life))


def _cluster(dense: np.ndarray, sparse: sp.csr_matrix, weights: np.ndarray, threshold: float,
             mix: float) -> np.ndarray:
    """Greedy single-pass clustering, heaviest anchors first: each joins the interest whose
    centroid it is closest to if above ``threshold``, else starts a new one. Deterministic, O(n*k),
    and needs no k: a user with one topic gets one interest, a user with three gets three."""
    (xs,) = compact_dense(sparse)
    order = np.argsort(-weights, kind="stable")
    labels = np.full(len(weights), -1)
    sum_s: list[np.ndarray] = []
    sum_d: list[np.ndarray] = []
    norms: list[tuple[float, float]] = []    # of each sum, kept with it: recomputing them was most of a fit
    for i in order:
        best, best_sim = -1, threshold
        for c in range(len(sum_s)):
            cs, cd = sum_s[c], sum_d[c]
            sim = (1 - mix) * float(xs[i] @ cs) / (norms[c][0] or 1.0) \
                + mix * float(dense[i] @ cd) / (norms[c][1] or 1.0)
            if sim > best_sim:
                best, best_sim = c, sim
        if best < 0:
            sum_s.append(np.zeros(xs.shape[1]))
            sum_d.append(np.zeros(dense.shape[1]))
            norms.append((0.0, 0.0))
            best = len(sum_s) - 1
        labels[i] = best
        sum_s[best] += weights[i] * xs[i]
        sum_d[best] += weights[i] * dense[i]
        norms[best] = (float(np.linalg.norm(sum_s[best])), float(np.linalg.norm(sum_d[best])))
    return labels


def featurize_known(space: FeatureSpace, papers: list[PaperText], known: Featurized) -> Featurized:
    """``featurize(space, papers)``, in one pass, taking the rows of the papers ``known`` already
    holds with the same text: most votes are on recent papers, which the background has featurised."""
    index = known.__dict__.get("_index")
    if index is None:
        index = known.__dict__["_index"] = {q.key: i for i, q in enumerate(known.papers)}
    at = [index.get(q.key) for q in papers]
    hits = [j for j, i in enumerate(at) if i is not None and known.papers[i] == papers[j]]
    if not hits:
        return featurize(space, papers)
    missing = sorted(set(range(len(papers))) - set(hits))
    old = known.subset([at[j] for j in hits])
    if not missing:
        return Featurized(list(papers), old.sparse, old.dense)
    new = featurize(space, [papers[j] for j in missing])
    order = np.argsort(hits + missing, kind="stable")
    return Featurized(list(papers), sp.vstack([old.sparse, new.sparse]).tocsr()[order],
                      np.vstack([old.dense, new.dense])[order])


def fit(profile: ProfileInput, space: FeatureSpace, background: Sequence[PaperText] | Featurized,
        now: dt.datetime, *, params: Params = DEFAULT_PARAMS) -> UserModel:
    """The per-user part of training: anchors, interests, the linear model and the profile terms.

    Depends only on the user's votes, seeds, keywords and authors, ``params``, ``now`` (vote
    ageing) and the feature space with the background it was fitted on (the pool the soft
    negatives are sampled from). The returned model is not calibrated yet: see ``calibrate``.
    """
    p = params
    # Latest vote per paper wins (a user may change their mind).
    latest: dict[str, tuple] = {}
    for v in sorted(profile.votes, key=lambda v: (v.at, v.paper.key)):
        latest[v.paper.key] = (v.value, v.at, v.paper)
    ups = [(at, paper) for value, at, paper in latest.values() if value > 0]
    downs = [(at, paper) for value, at, paper in latest.values() if value < 0]
    voted = set(latest)

    anchors: list[Anchor] = []
    anchor_papers: list[PaperText] = []
    for at, paper in ups:
        anchors.append(Anchor(paper.key, paper.title, _decay(at, now, p.half_life_days), "vote"))
        anchor_papers.append(paper)
    for paper in profile.seed_papers:
        if paper.key in voted:
            continue                       # an explicit vote overrides a config seed
        anchors.append(Anchor(paper.key, paper.title, p.seed_weight, "seed"))
        anchor_papers.append(paper)

    # The background is both the calibration reference (all of it, graph shared with other users)
    # and, minus what the user voted on, the pool of soft negatives for the linear model.
    bg = featurize(space, background)
    both = featurize_known(space, anchor_papers + [paper for _, paper in downs], bg)
    pos, neg = both.subset(np.arange(len(anchor_papers))), both.subset(np.arange(len(anchor_papers), len(both)))
    pos_sparse, pos_dense = pos.sparse, pos.dense
    extra_texts: list[tuple[str, str]] = []
    if profile.keywords:
        extra_texts.append(("keywords", " ; ".join(profile.keywords)))
    if profile.authors:
        extra_texts.append(("authors", ""))
    for kind, text in extra_texts:
        if kind == "keywords":
            s_row = space.transform_text([text])
            d_row = space.dense_text([text])
        else:
            # Authors only live in the sparse view: a pseudo-paper carrying just the author tokens.
            s_row = space.transform([PaperText(key="", title="", authors=list(profile.authors))])
            d_row = np.zeros((1, pos_dense.shape[1] if pos_dense.size else space.dense_text(["x"]).shape[1]))
        if s_row.nnz == 0:
            continue
        anchors.append(Anchor(None, ", ".join(profile.keywords) if kind == "keywords" else ", ".join(profile.authors),
                              p.keyword_weight, kind))
        pos_sparse = sp.vstack([pos_sparse, s_row]).tocsr() if pos_sparse.shape[0] else s_row
        pos_dense = np.vstack([pos_dense, d_row]) if pos_dense.size and pos_dense.shape[0] else d_row
    weights = np.array([a.weight for a in anchors], dtype=float)

    neg_w = np.array([_decay(at, now, p.half_life_days) for at, _ in downs], dtype=float)

    keep = [i for i, q in enumerate(bg.papers) if q.key not in voted]
    rng = np.random.default_rng(p.seed)
    if len(keep) > p.background_sample:
        keep = sorted(rng.choice(keep, size=p.background_sample, replace=False).tolist())
    negatives = bg.subset(keep)

    model = UserModel(
        user_id=profile.user_id, params=p, anchors=anchors,
        pos_sparse=pos_sparse, pos_dense=pos_dense, pos_weight=weights,
        centroids_sparse=sp.csr_matrix((0, pos_sparse.shape[1])), centroids_dense=np.zeros((0, 1)),
        cluster_of=np.zeros(0, dtype=int), neg_sparse=neg.sparse, neg_dense=neg.dense,
        coef_dense=None, intercept=0.0,
        keywords=list(profile.keywords), known_keys=frozenset(voted | {a.key for a in anchors if a.key}),
        trained_at=now,
    )
    if model.empty:
        return model

    # Interests: clusters of anchors, centroid weighted by recency.
    labels = _cluster(pos_dense, pos_sparse, weights, p.cluster_threshold, p.dense_mix)
    k = labels.max() + 1
    # All clusters in one sparse product and one normalisation each (per-cluster calls cost
    # milliseconds apiece in input validation); row by row the arithmetic is the same.
    member = sp.csr_matrix((weights, (labels, np.arange(len(labels)))), shape=(k, len(labels)))
    cd = [(pos_dense[idx] * weights[idx][:, None]).sum(0) for idx in (np.flatnonzero(labels == c) for c in range(k))]
    model.centroids_sparse = normalize(member @ pos_sparse).tocsr()      # stays sparse (2^20 columns)
    model.centroids_dense = normalize(np.vstack(cd))
    model.cluster_of = labels

    # Linear model on the topic view: liked vs disliked (heavy) + sampled unvoted (light, summing to
    # the liked weight so neither side dominates however many background papers there are).
    # Dense features keep the fit in milliseconds; exact words already speak through the graph.
    if len(negatives) and len(anchors):
        xd = np.vstack([pos_dense, neg.dense, negatives.dense]) if len(neg) else np.vstack([pos_dense, negatives.dense])
        y = np.r_[np.ones(len(anchors)), np.zeros(len(neg) + len(negatives))]
        w_bg = weights.sum() / len(negatives)
        # A thumbs-down is a deliberate statement: worth ``down_weight`` liked papers, decayed like them.
        sw = np.r_[weights, p.down_weight * neg_w * weights.mean(), np.full(len(negatives), w_bg)]
        clf = LogisticRegression(C=p.C, solver="lbfgs", max_iter=300)
        clf.fit(xd, y, sample_weight=sw / sw.mean())
        model.coef_dense = clf.coef_[0]
        model.intercept = float(clf.intercept_[0])

    model.profile_terms = _profile_terms(model, space, anchor_papers, profile.keywords)
    return model


def _profile_terms(model: UserModel, space: FeatureSpace, papers: list[PaperText],
                   keywords: list[str]) -> dict[str, float]:
    """Readable terms that characterise this user (for "matches your interests: ..." reasons)."""
    terms: dict[str, float] = {}
    for a, paper in zip(model.anchors, papers):
        for t in set(space.terms(f"{paper.title} {paper.abstract}")):
            terms[t] = terms.get(t, 0.0) + a.weight
    for kw in keywords:
        for t in space.terms(kw):
            terms[t] = terms.get(t, 0.0) + 2.0
    # Weight by IDF so "protein" beats "data"; keep the profile small.
    names = sorted(terms)
    scored = dict(zip(names, (np.array([terms[t] for t in names]) * space.term_idf(names)).tolist()))
    top = sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))[:300]
    return dict(top)
