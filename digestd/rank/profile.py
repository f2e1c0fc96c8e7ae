"""A reader's interest profile: the knobs, and the model learned from what the reader told us.

Training is ``rank.fit`` (anchors, interests, the linear model, the profile terms); scoring and
calibration against the background are ``rank.score``. Pure: no I/O, no clock (``now`` is passed).

The score of a paper blends views, each standardised against the reader's own background
(unvoted papers), so a score means "how many background standard deviations above a typical paper",
comparable from one day to the next:

* ``diffusion``: relevance spread from the liked papers through the day's neighbour graph;
* ``interest``: similarity to the nearest *interest* (a cluster of liked papers);
* ``linear``: a logistic regression, liked vs. (disliked, heavier) + (sampled unvoted, lighter):
  it learns which words separate this reader's papers from the stream, not just what they contain;
* ``dislike``: similarity to thumbs-downed papers, subtracted.

Newer votes weigh more (exponential decay with ``half_life_days``), so the profile drifts with its owner.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Params:
    """Knobs, tuned on half the citeulike-dev users and confirmed on the other half (see evaluate.py)."""

    # Votes do not age: on citeulike-dev every half-life tried (30 days to 2 years) ranked a reader's
    # later likes worse than none (K=5, embeddings: 0.2564 at 30 days, 0.2788 at 730, 0.2804 without).
    half_life_days: float = float("inf")
    seed_weight: float = 1.0           # config seed papers / imports count like a fresh thumbs-up
    keyword_weight: float = 1.0        # the keywords pseudo-paper
    down_weight: float = 3.0           # one thumbs-down counts like this many liked papers (vs sampled unvoted)
    background_sample: int = 500       # unvoted papers used as soft negatives (more: slower fit, no gain)
    C: float = 1.0                     # logistic regression: inverse regularisation
    cluster_threshold: float = 0.35    # cosine above which two liked papers share one interest
    dense_mix: float = 0.5             # weight of the topic (dense) view vs exact words in similarities
    graph_k: int = 80                  # neighbours per paper in the diffusion graph (50 before the shared operator; 80 chosen on half A)
    alpha: float = 0.8                 # diffusion: probability of following an edge vs jumping back home
    iterations: int = 20
    w_diffusion: float = 1.0
    w_interest: float = 0.0            # measured: the diffusion already keeps interests apart; kept for A/B runs
    w_linear: float = 0.1              # light: on citeulike-dev it helps little, but it carries thumbs-down vs stream
    w_hub: float = 0.1                 # hubness correction: generic papers near everything rank less
    w_dislike: float = 0.5
    threshold_quantile: float = 0.97   # only the top 3% of the background counts as "relevant"
    seed: int = 0


DEFAULT_PARAMS = Params()            # the tfidf backend's
# The embeddings backend links each paper to fewer, closer neighbours and leans on the dense view
# (sentence embeddings joined to the topics) less in the blend, its dense cosines being higher across
# the board: citeulike-dev K=5 recall@20 0.2724 with the tfidf knobs, 0.2804 with these (chosen on
# half A, confirmed on half B). The tfidf backend loses with them (0.2440 -> 0.2360), so it keeps its own.
EMBEDDINGS_PARAMS = dataclasses.replace(DEFAULT_PARAMS, graph_k=40, dense_mix=0.4)


def params_for(backend: str | None) -> Params:
    """The ranking knobs of a feature space's backend."""
    return EMBEDDINGS_PARAMS if backend == "embeddings" else DEFAULT_PARAMS


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
    # Dense views are kept in float32, as scoring computes with them: the float64 rows were most of
    # a stored model's bytes (98 of 160 KB) and of the time to write and read them. Training itself
    # (interests, the regression) runs on the float64 rows before they are kept.
    pos_dense: np.ndarray
    pos_weight: np.ndarray
    cluster_of: np.ndarray             # anchor -> interest cluster (see ``centroids``)
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

    @property
    def n_interests(self) -> int:
        """How many interest clusters the anchors form."""
        return int(self.cluster_of.max()) + 1 if len(self.cluster_of) and not self.empty else 0

    def centroids(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """The interests' centroids (weighted sums of their anchors, normalised), one row each, in
        the sparse and the dense view. Computed when asked, never kept: scoring reads an interest's
        similarity to a paper as the weighted sum of its anchors' similarities (``rank.closeness``),
        which is the same number, and most interests hold a single paper, so keeping them nearly
        doubled a model's memory (measured: 126 KB of a 300 KB model) and its loading time."""
        from .interests import centroids

        if not self.n_interests:
            return sp.csr_matrix((0, self.pos_sparse.shape[1])), np.zeros((0, self.pos_dense.shape[1]))
        c_sparse, c_dense, _ = centroids(self.pos_sparse, self.pos_dense, [self.cluster_of], [self.pos_weight])
        return c_sparse, c_dense
