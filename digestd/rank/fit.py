"""Training readers' models from their votes, seeds, keywords and authors, many readers at once. Pure.

``fit_readers`` is the per-reader part of training (anchors, interests, the linear model, the
profile terms) for a whole batch, sharing what readers have in common: each distinct paper is
featurised and tokenised once (most votes are on papers of the background, whose vectors exist),
IDFs are looked up once for the union of terms, every reader's regression uses one sample of
background negatives and all of them are solved together (``rank.logistic``), and interests are
clustered for all readers at once (``rank.interests``). ``fit`` is a batch of one, so the daemon,
the cold pass and ``digestd eval`` share one training code; ``train`` adds the calibration.

Deterministic: a reader's model depends only on its own input, the space, the background and the
params, never on who else is in the batch (up to float rounding in the shared products).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..collector import collector_paused
from ..models import PaperText, ProfileInput
from .features import N_FEATURES, FeatureSpace, Featurized, featurize, space_dim
from .interests import cluster, gram_blocks
from .logistic import SharedNegatives, fit_logistic
from .pool import remember_row_keys, row_keys
from .profile import Anchor, Params, UserModel, params_for
from .score import calibrate
from .terms import profile_terms, text_key

CHUNK = 512               # readers whose dense intermediate arrays are held at once
LOGISTIC_BATCH = 128      # regressions solved together (sorted by size, so little padding)


class FitCache:
    """Per-paper work kept between ``fit_readers`` calls for one feature space: vectors of papers
    and keyword texts outside the background, their terms, and the terms' IDFs. Handed another
    space it starts over; past ``limit`` entries it forgets and refills (recent votes recur)."""

    def __init__(self, limit: int = 50_000):
        self.limit = limit
        self.space: FeatureSpace | None = None
        self.vectors: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.terms: dict[tuple, list[str]] = {}
        self.idf: dict[str, float] = {}

    def bind(self, space: FeatureSpace) -> "FitCache":
        if self.space is not space:
            self.space = space
            self.vectors, self.terms, self.idf = {}, {}, {}
        for d in (self.vectors, self.terms, self.idf):
            if len(d) > self.limit:
                d.clear()
        return self


def _decay(at: dt.datetime | None, now: dt.datetime, half_life: float) -> float:
    if at is None or half_life == float("inf"):      # votes do not age (the default): 0.5 ** 0
        return 1.0
    if (at.tzinfo is None) != (now.tzinfo is None):
        at = at.replace(tzinfo=now.tzinfo)
    age = max(0.0, (now - at).total_seconds() / 86400.0)
    return float(0.5 ** (age / half_life))


def _bg_index(bg: Featurized) -> dict[str, int]:
    index = bg.__dict__.get("_index")
    if index is None:
        index = bg.__dict__["_index"] = {q.key: i for i, q in enumerate(bg.papers)}
    return index


def featurize_known(space: FeatureSpace, papers: list[PaperText], known: Featurized) -> Featurized:
    """``featurize(space, papers)``, in one pass, taking the rows of the papers ``known`` already
    holds with the same text: most votes are on recent papers, which the background has featurised."""
    index = _bg_index(known)
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


class _Rows:
    """The distinct papers and pseudo-papers (keywords, authors) of a batch, featurised once:
    background rows are taken as they are, the rest come from the cache or one featurise call."""

    def __init__(self, space: FeatureSpace, bg: Featurized, cache: FitCache):
        self.space, self.bg, self.cache = space, bg, cache
        self.handle: dict[tuple, int] = {}
        self.items: list[tuple[tuple, object]] = []

    def _add(self, key: tuple, payload) -> int:
        h = self.handle.get(key)
        if h is None:
            h = self.handle[key] = len(self.items)
            self.items.append((key, payload))
        return h

    def paper(self, p: PaperText) -> int:
        return self._add(text_key(p), p)

    def keywords(self, text: str) -> int:
        return self._add(("keywords", text), text)

    def authors(self, names: Sequence[str]) -> int:
        return self._add(("authors", tuple(names)), PaperText(key="", title="", authors=list(names)))

    def build(self) -> None:
        """``self.sparse``/``self.dense``: one row per handle; ``self.nnz``: its sparse entries."""
        index, bg, cache = _bg_index(self.bg), self.bg, self.cache
        from_bg, rest = [], []
        for h, (key, payload) in enumerate(self.items):
            i = index.get(key[1]) if key[0] == "paper" else None
            if i is not None and text_key(bg.papers[i]) == key:
                from_bg.append((h, i))
            else:
                rest.append(h)
        # Local copies: another fit may trim the shared cache meanwhile.
        found = {key: v for key, v in ((self.items[h][0], cache.vectors.get(self.items[h][0])) for h in rest) if v is not None}
        todo = [h for h in rest if self.items[h][0] not in found]
        for kind in ("paper", "keywords", "authors"):
            hs = [h for h in todo if self.items[h][0][0] == kind]
            if not hs:
                continue
            payloads = [self.items[h][1] for h in hs]
            if kind == "paper":
                f = featurize(self.space, payloads)
                s, d = f.sparse, f.dense
            elif kind == "keywords":
                s, d = self.space.transform_text(payloads), self.space.dense_text(payloads)
            else:   # authors only live in the sparse view: a pseudo-paper carrying just the author tokens
                s, d = self.space.transform(payloads), np.zeros((len(hs), space_dim(self.space)))
            s = sp.csr_matrix(s)
            for j, h in enumerate(hs):
                lo, hi = s.indptr[j], s.indptr[j + 1]
                key = self.items[h][0]
                found[key] = cache.vectors[key] = (s.indices[lo:hi].copy(), s.data[lo:hi].copy(), d[j])
        vecs = [found[self.items[h][0]] for h in rest]
        lengths = np.array([len(v[0]) for v in vecs], dtype=int)
        own = sp.csr_matrix((np.concatenate([v[1] for v in vecs]) if vecs else np.zeros(0),
                             np.concatenate([v[0] for v in vecs]) if vecs else np.zeros(0, dtype=np.int32),
                             np.r_[0, np.cumsum(lengths)]), shape=(len(rest), N_FEATURES))
        bg_rows = np.array([i for _, i in from_bg], dtype=int)
        dim = bg.dense.shape[1] if len(bg) else space_dim(self.space)
        own_dense = np.vstack([v[2] for v in vecs]) if vecs else np.zeros((0, dim))
        stacked = sp.vstack([bg.sparse[bg_rows], own]).tocsr()
        order = np.empty(len(self.items), dtype=int)
        order[[h for h, _ in from_bg] + rest] = np.arange(len(self.items))
        self.sparse = stacked[order]
        self.dense = np.vstack([bg.dense[bg_rows], own_dense])[order]
        self.nnz = np.diff(self.sparse.indptr)


@dataclass
class _Plan:
    """One reader's input, resolved: anchors with their rows, thumbs-down with theirs."""

    profile: ProfileInput
    anchors: list[Anchor] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)          # one per anchor
    papers: list[int] = field(default_factory=list)        # rows of the liked/seed papers (the first anchors)
    downs: list[int] = field(default_factory=list)
    down_w: list[float] = field(default_factory=list)
    voted: set[str] = field(default_factory=set)
    extra: list[tuple[str, int]] = field(default_factory=list)   # keywords/authors rows, if not empty


def keywords_text(keywords: Sequence[str]) -> str:
    """The one text a reader's keywords are featurised (and, with the sentence encoder, encoded) as:
    whoever encodes it ahead of a pass must encode exactly this."""
    return " ; ".join(keywords)


def _plan(profile: ProfileInput, now: dt.datetime, p: Params, rows: _Rows) -> _Plan:
    """A reader's anchors (liked papers, then seeds; keywords and authors once featurised) and thumbs-down."""
    plan = _Plan(profile)
    latest: dict[str, tuple] = {}       # latest vote per paper wins (a reader may change their mind)
    for v in sorted(profile.votes, key=lambda v: (v.at, v.paper.key)):
        latest[v.paper.key] = (v.value, v.at, v.paper)
    plan.voted = set(latest)
    for value, at, paper in latest.values():
        if value > 0:
            plan.anchors.append(Anchor(paper.key, paper.title, _decay(at, now, p.half_life_days), "vote"))
            plan.rows.append(rows.paper(paper))
    for paper in profile.seed_papers:
        if paper.key in plan.voted:
            continue                    # an explicit vote overrides a config seed
        plan.anchors.append(Anchor(paper.key, paper.title, p.seed_weight, "seed"))
        plan.rows.append(rows.paper(paper))
    plan.papers = list(plan.rows)
    for value, at, paper in latest.values():
        if value < 0:
            plan.downs.append(rows.paper(paper))
            plan.down_w.append(_decay(at, now, p.half_life_days))
    if profile.keywords:
        plan.extra.append(("keywords", rows.keywords(keywords_text(profile.keywords))))
    if profile.authors:
        plan.extra.append(("authors", rows.authors(profile.authors)))
    return plan


def _negatives(bg: Featurized, p: Params) -> tuple[np.ndarray, dict[str, list[int]], SharedNegatives | None]:
    """One sample of background papers, the soft negatives of every reader (who skips those it
    voted on), memoised with the background like its neighbour graph."""
    key = ("negatives", p.seed, p.background_sample)
    memo = bg.__dict__.setdefault("_fit", {})
    if key not in memo:
        idx = np.arange(len(bg))
        if len(bg) > p.background_sample:
            idx = np.sort(np.random.default_rng(p.seed).choice(len(bg), size=p.background_sample, replace=False))
        where: dict[str, list[int]] = {}
        for j, i in enumerate(idx):
            where.setdefault(bg.papers[i].key, []).append(j)
        memo[key] = (idx, where, SharedNegatives.of(bg.dense[idx]) if len(idx) else None)
    return memo[key]


def fit_readers(profiles: Sequence[ProfileInput], space: FeatureSpace, background: Sequence[PaperText] | Featurized,
                now: dt.datetime, *, params: Params | None = None, cache: FitCache | None = None) -> list[UserModel]:
    """The per-reader part of training for many readers: anchors, interests, the linear model and
    the profile terms, one ``UserModel`` per profile, in order, not calibrated yet (``calibrate``).

    Each model depends only on its reader's votes, seeds, keywords and authors, ``params``, ``now``
    (vote ageing) and the feature space with the background it was fitted on (the pool the soft
    negatives are sampled from). ``cache``: per-paper work kept for the next call; by default one
    kept with the background (like its neighbour graph), so retraining a reader after a vote
    featurises and tokenises nothing it saw before."""
    with collector_paused():      # millions of small objects (anchors, term dicts), none of them cyclic garbage
        return _fit_readers(profiles, space, featurize(space, background), now, params or params_for(space.backend), cache)


def _fit_readers(profiles: Sequence[ProfileInput], space: FeatureSpace, bg: Featurized, now: dt.datetime,
                 p: Params, cache: FitCache | None) -> list[UserModel]:
    if cache is None:
        cache = bg.__dict__.setdefault("_fit_cache", FitCache())
    cache.bind(space)
    rows = _Rows(space, bg, cache)
    plans = [_plan(profile, now, p, rows) for profile in profiles]
    rows.build()
    for plan in plans:
        for kind, h in plan.extra:
            if rows.nnz[h]:
                names = plan.profile.keywords if kind == "keywords" else plan.profile.authors
                plan.anchors.append(Anchor(None, ", ".join(names), p.keyword_weight, kind))
                plan.rows.append(h)
    models = _bare_models(plans, rows, now, p)
    full = [i for i, plan in enumerate(plans) if plan.anchors]
    _, where, neg = _negatives(bg, p)
    rotated = neg.rotate(rows.dense) if neg is not None else None
    for lo in range(0, len(full), CHUNK):
        chunk = full[lo:lo + CHUNK]
        # The chunk's anchors, one reader after the other, gathered once for the models and the interests.
        bounds = np.r_[0, np.cumsum([len(plans[i].rows) for i in chunk])]
        flat = np.array([h for i in chunk for h in plans[i].rows], dtype=int)
        pos_sparse, pos_dense = rows.sparse[flat], rows.dense[flat]
        for i, pos in zip(chunk, _split(pos_sparse, bounds=bounds)):
            models[i].pos_sparse = pos
        _fit_chunk([plans[i] for i in chunk], [models[i] for i in chunk], pos_sparse, pos_dense, p, where, neg, rotated)
    readers = [([rows.items[h][1] for h in plans[i].papers], [a.weight for a in plans[i].anchors], plans[i].profile.keywords)
               for i in full]
    keys = [[rows.items[h][0] for h in plans[i].papers] for i in full]
    for i, terms in zip(full, profile_terms(readers, space, cache.terms, cache.idf, keys)):
        models[i].profile_terms = terms
    # Scoring shares a row between readers by its content key: hashed here once per distinct row
    # (sorted as scoring sorts them, so a model read back from the store gets the same keys).
    rows.sparse.sort_indices()
    hashed = row_keys(rows.sparse, rows.dense)
    for plan, model in zip(plans, models):
        remember_row_keys(model, [hashed[h] for h in plan.rows], [hashed[h] for h in plan.downs])
    return models


def _bare_models(plans: list[_Plan], rows: _Rows, now: dt.datetime, p: Params) -> list[UserModel]:
    """Models with anchors and thumbs-down in place (the anchors' sparse rows come with their chunk),
    interests and linear model still to come."""
    neg_sparse = _split(rows.sparse, [plan.downs for plan in plans])
    later = sp.csr_matrix((0, N_FEATURES))          # a placeholder, replaced for every reader with anchors
    dense = rows.dense.astype(np.float32)           # as models keep them: cast once, not per reader
    return [UserModel(
        user_id=plan.profile.user_id, params=p, anchors=plan.anchors,
        pos_sparse=later if plan.anchors else sp.csr_matrix((0, N_FEATURES)),
        pos_dense=dense[plan.rows],
        pos_weight=np.array([a.weight for a in plan.anchors], dtype=float),
        cluster_of=np.zeros(0, dtype=int), neg_sparse=neg, neg_dense=dense[plan.downs],
        coef_dense=None, intercept=0.0, keywords=list(plan.profile.keywords),
        known_keys=frozenset(plan.voted | {a.key for a in plan.anchors if a.key}), trained_at=now,
    ) for plan, neg in zip(plans, neg_sparse)]


def _split(m: sp.csr_matrix, groups: list[list[int]] | None = None, bounds: np.ndarray | None = None) -> list[sp.csr_matrix]:
    """The rows ``groups`` of ``m`` (or the consecutive row ranges ``bounds``), each its own CSR
    matrix: one gather for all, then built from array slices (scipy's own slicing costs 3x more)."""
    if groups is not None:
        m = m[np.concatenate([np.asarray(g, dtype=int) for g in groups])] if groups else m[:0]
        bounds = np.r_[0, np.cumsum([len(g) for g in groups])]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        a, b = m.indptr[lo], m.indptr[hi]
        out.append(sp.csr_matrix((m.data[a:b].copy(), m.indices[a:b].copy(), m.indptr[lo:hi + 1] - a),
                                 shape=(hi - lo, m.shape[1])))
    return out


def _fit_chunk(plans: list[_Plan], models: list[UserModel], pos_sparse: sp.csr_matrix, pos_dense: np.ndarray,
               p: Params, where: dict[str, list[int]], neg: SharedNegatives | None, rotated: np.ndarray | None) -> None:
    """Interests and linear models of readers who have anchors, in place; ``pos_sparse``/``pos_dense``:
    their anchors' rows, one reader after the other."""
    sizes = np.array([len(plan.rows) for plan in plans])
    width = int(sizes.max())
    weights = np.zeros((len(plans), width))
    for b, model in enumerate(models):
        weights[b, :sizes[b]] = model.pos_weight
    gs, gd = gram_blocks(pos_sparse, pos_dense, sizes, width)
    labels = cluster(gs, gd, weights, sizes, p.cluster_threshold, p.dense_mix)
    for b, model in enumerate(models):
        model.cluster_of = labels[b, :sizes[b]]
    if neg is None:
        return
    # Linear model on the topic view: liked vs disliked (heavy) + sampled unvoted (light, summing to
    # the liked weight so neither side dominates however many background papers there are).
    # Dense features keep the fit cheap; exact words already speak through the graph.
    own = []
    for plan, model in zip(plans, models):
        w = model.pos_weight
        out = sorted(j for key in plan.voted for j in where.get(key, ()))
        n_eff = len(neg.rows) - len(out)
        if n_eff <= 0:
            continue
        # A thumbs-down is a deliberate statement: worth ``down_weight`` liked papers, decayed like them.
        down = p.down_weight * np.array(plan.down_w) * w.mean()
        w_bg = w.sum() / n_eff
        mean = (2 * w.sum() + down.sum()) / (len(w) + len(down) + n_eff)    # sklearn sees weights / their mean
        own.append((model, plan.rows + plan.downs, len(w), np.r_[w, down] / mean, w_bg / mean, out))
    # Readers with as many rows side by side: the padded per-reader systems stay small.
    own.sort(key=lambda o: len(o[1]))
    for lo in range(0, len(own), LOGISTIC_BATCH):
        group = own[lo:lo + LOGISTIC_BATCH]
        q = len(group[-1][1])
        x = np.zeros((len(group), q, neg.rows.shape[1]))
        y, s = np.zeros((len(group), q)), np.zeros((len(group), q))
        keep = np.ones((len(neg.rows), len(group)))
        for j, (_, r, n_pos, sw, _, out) in enumerate(group):
            x[j, :len(r)], y[j, :n_pos], s[j, :len(r)] = rotated[r], 1.0, sw
            keep[out, j] = 0.0
        coef, intercept = fit_logistic(neg, x, y, s, np.array([o[4] for o in group]), keep, p.C)
        for j, o in enumerate(group):
            o[0].coef_dense = coef[j]
            o[0].intercept = float(intercept[j])


def fit(profile: ProfileInput, space: FeatureSpace, background: Sequence[PaperText] | Featurized,
        now: dt.datetime, *, params: Params | None = None, cache: FitCache | None = None) -> UserModel:
    """One reader's ``fit_readers``: anchors, interests, the linear model and the profile terms."""
    return fit_readers([profile], space, background, now, params=params, cache=cache)[0]


def train(profile: ProfileInput, space: FeatureSpace, background: Sequence[PaperText] | Featurized,
          now: dt.datetime, *, params: Params | None = None) -> UserModel:
    """Fit one user's model from their votes, seeds, keywords and authors, and calibrate it.

    ``background``: recent papers of the stream (unvoted ones become soft negatives and the
    reference distribution for calibration). Deterministic for a given input and ``params.seed``.
    Exactly ``calibrate(fit(...), ...)``: the daemon stores the result and reuses it until the
    user's input, the params or the space change (see ``rank.persist``).
    """
    bg = featurize(space, background)
    return calibrate(fit(profile, space, bg, now, params=params), space, bg)
