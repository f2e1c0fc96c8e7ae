"""The papers of one pass, prepared once and shared by every reader scored against them. Pure.

``prepare_pool`` does the per-pool work that used to be repeated for every reader: the vectors,
the k-nearest-neighbour graph and its hub degrees, the diffusion operator, the near-duplicate
structure, and (filled lazily) what explanations read per paper: its words, its sentences and
their vectors. A paper picked by 3,000 readers is split and vectorised once.

It also keeps the sparse (exact words) similarities of anchor rows (liked papers, keywords,
thumbs-downs) to the pool, keyed by the row's content: readers who liked the same paper share one
row, and selection and explanations read back what scoring computed.
"""
from __future__ import annotations

import hashlib
import re
import threading
import weakref
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ..models import PaperText
from .features import FeatureSpace, Featurized, featurize, normalise_text, tokenize
from .profile import Params, UserModel, params_for

DUPLICATE_COSINE = 0.85        # two rows this close are the same work (two sources, two versions)
NEAR_SHARE = 0.04              # a liked paper among a paper's nearest 4% of the pool: that paper is on a known topic
DENSE_OPERATOR_MAX = 4000      # above this many papers the (n, n) operator costs more than iterating
SERIES_TOLERANCE = 1e-6        # the sparse path sums the series until alpha^t is below this
SIMS_CACHE_BYTES = 256 << 20   # anchor-row similarities kept for selection and explanations
EDGES_CACHE_ROWS = 200_000    # anchor rows whose edges are kept (a few hundred entries each)
_SIMS_CHUNK = 2048             # anchor rows per sparse product: bounds the product's temporary


def title_key(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", normalise_text(title)).strip()


@dataclass(eq=False)
class Diffusion:
    """The pool's neighbour graph for one (graph_k, dense_mix, alpha) and the walk on it."""

    graph: sp.csr_matrix               # symmetric kNN graph, cosine weights
    kth: np.ndarray                    # each paper's k-th neighbour similarity (the kNN rule for anchors)
    near: np.ndarray                   # each paper's NEAR_SHARE-th neighbour similarity: closer is "inside" an interest
    deg: np.ndarray                    # graph degree: the hub component, and the walk's normalisation
    k: int                             # neighbours per paper (and per anchor)
    alpha: float
    operator: np.ndarray | None        # alpha (I - alpha S)^-1, float32, when the pool is small enough
    norm_graph: sp.csr_matrix          # S = D^-1/2 A D^-1/2
    _edges: dict = field(default_factory=dict, repr=False)   # anchor row key -> (columns, weights) of its edges
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def known_edges(self, keys: Sequence[bytes]) -> list:
        """Per anchor row key, its edges (columns, weights) if an earlier batch found them, else None:
        readers of every batch like the same recent papers, and an anchor's edges depend on its row only."""
        with self._lock:
            return [self._edges.get(k) for k in keys]

    def remember_edges(self, keys: Sequence[bytes], edges: np.ndarray) -> None:
        with self._lock:
            if len(self._edges) + len(keys) > EDGES_CACHE_ROWS:
                self._edges.clear()
            for k, row in zip(keys, edges):
                cols = np.flatnonzero(row)
                self._edges[k] = (cols, row[cols])

    def apply(self, r: np.ndarray) -> np.ndarray:
        """``r @ alpha (I - alpha S)^-1`` for restart rows ``r`` (B, n): one product when dense."""
        if self.operator is not None:
            return r @ self.operator       # symmetric, so the row form needs no transpose
        # Block iteration x <- alpha (S x + r), summed until alpha^t is negligible.
        steps = int(np.ceil(np.log(SERIES_TOLERANCE) / np.log(self.alpha))) if 0 < self.alpha < 1 else 1
        rt = np.ascontiguousarray(r.T)
        x = self.alpha * rt
        for _ in range(steps - 1):
            x = self.alpha * (self.norm_graph @ x + rt)
        return np.ascontiguousarray(x.T, dtype=np.float32)


@dataclass(eq=False)
class PaperView:
    """What an explanation reads of one paper, computed the first time it is picked."""

    words: frozenset[str]
    sentences: list[str]
    sent_of: np.ndarray                # the sentences' TF-IDF entries: sentence, hashed column, value
    sent_col: np.ndarray
    sent_val: np.ndarray
    sent_dense: np.ndarray | None      # (sentences, d) topic vectors, for the linear model's words
    sent_length: np.ndarray            # the "substance" bonus of each sentence
    sent_role: np.ndarray | None = None   # its match counts this many times: says what the paper does, or background


@dataclass(eq=False)
class PassPool:
    """One pass's papers and everything shared by the readers scored against them.

    ``index`` maps a paper key to its row; every (B, n) matrix of scores uses these rows."""

    space: FeatureSpace
    feats: Featurized
    params: Params
    dense: np.ndarray                  # (n, d) float32
    sparse_t: sp.csr_matrix            # (columns, n): anchor rows @ this is their similarity to the pool
    sparse_gram: np.ndarray            # (n, n) cosine in the exact-words view
    index: dict[str, int]
    title_ids: np.ndarray              # papers with equal ids have the same normalised title
    duplicates: list[tuple[int, ...]]  # per paper: the papers it is a near-duplicate of
    _diffusions: dict = field(default_factory=dict, repr=False)
    _views: dict = field(default_factory=dict, repr=False)
    _sims_slot: dict = field(default_factory=dict, repr=False)
    _sims: np.ndarray | None = field(default=None, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def papers(self) -> list[PaperText]:
        return self.feats.papers

    @property
    def n(self) -> int:
        return len(self.feats)

    # -- the graph -------------------------------------------------------------------------
    def diffusion(self, params: Params) -> Diffusion:
        key = (params.graph_k, params.dense_mix, params.alpha)
        with self._lock:
            if key not in self._diffusions:
                self._diffusions[key] = _build_diffusion(self, *key)
            return self._diffusions[key]

    # -- anchor rows -----------------------------------------------------------------------
    def sparse_sims(self, keys: Sequence[bytes], rows: sp.csr_matrix) -> np.ndarray:
        """(len(keys), n) float32: each row's exact-words cosine to every paper, computed once per
        distinct row while the cache has room."""
        n = self.n
        out = np.empty((len(keys), n), dtype=np.float32)
        with self._lock:
            slots = [self._sims_slot.get(k) for k in keys]
            have = [i for i, s in enumerate(slots) if s is not None]
            if have:
                out[have] = self._sims[[slots[i] for i in have]]
        missing = [i for i, s in enumerate(slots) if s is None]
        for start in range(0, len(missing), _SIMS_CHUNK):
            part = missing[start:start + _SIMS_CHUNK]
            out[part] = (rows[part] @ self.sparse_t).toarray()
        if missing:
            self._remember(keys, missing, out)
        return out

    def _remember(self, keys, missing, sims) -> None:
        n = max(self.n, 1)
        with self._lock:
            used = len(self._sims_slot)
            capacity = SIMS_CACHE_BYTES // (4 * n)
            room = capacity - used
            new = [i for i in missing if keys[i] not in self._sims_slot][:max(0, room)]
            if not new:
                return
            if self._sims is None:
                # Reserved whole, written row by row: the system backs only the rows written, and
                # the cache never doubles (a doubling held old and new, 400 MB, for a moment).
                self._sims = np.empty((capacity, self.n), dtype=np.float32)
            self._sims[used:used + len(new)] = sims[new]
            for j, i in enumerate(new):
                self._sims_slot[keys[i]] = used + j

    def reader_rows(self, model: UserModel) -> tuple[list[bytes], list[bytes]]:
        """Content keys of a model's anchor rows and thumbs-down rows."""
        return reader_rows(model)

    def sparse_sims_at(self, keys: Sequence[bytes], rows: sp.csr_matrix, cols: Sequence[int]) -> np.ndarray:
        """``sparse_sims(keys, rows)[:, cols]``, reading only those columns when the rows are kept."""
        with self._lock:
            slots = [self._sims_slot.get(k) for k in keys]
            if all(s is not None for s in slots):
                return self._sims[np.ix_(slots, np.asarray(cols))]
        return self.sparse_sims(keys, rows)[:, cols]

    # -- per-paper caches for explanations ---------------------------------------------------
    def view(self, row: int, *, with_dense: bool) -> PaperView:
        v = self._views.get(row)
        if v is None or (with_dense and v.sent_dense is None and len(v.sentences) > 1):
            self.prepare_views([row], with_dense=with_dense)
            v = self._views[row]
        return v

    def prepare_views(self, rows: Sequence[int], *, with_dense: bool) -> None:
        """The views of ``rows`` not made yet, every sentence of them vectorised in one call."""
        todo = [r for r in dict.fromkeys(rows) if r not in self._views or
                (with_dense and self._views[r].sent_dense is None and len(self._views[r].sentences) > 1)]
        if not todo:
            return
        split = [sentences(self.papers[r].abstract) for r in todo]
        multi = [i for i, sents in enumerate(split) if len(sents) > 1]
        flat = [s for i in multi for s in split[i]]
        counts = self.space.text_counts(flat) if flat else None      # hashed once for both views
        xs = sp.csr_matrix(self.space.transform_text(flat, counts)) if flat else None
        dense = self.space.dense_text_lexical(flat, counts) if (flat and with_dense) else None
        at = dict(zip(multi, np.cumsum([0] + [len(split[i]) for i in multi])[:-1].tolist()))
        for i, r in enumerate(todo):
            paper, sents = self.papers[r], split[i]
            words = frozenset(tokenize(f"{paper.title} {paper.abstract}"))
            length = 0.02 * np.minimum(np.array([len(s.split()) for s in sents], dtype=float), 25) / 25
            if i in at:
                lo, hi = at[i], at[i] + len(sents)
                part = xs[lo:hi]
                view = PaperView(words, sents, np.repeat(np.arange(len(sents)), np.diff(part.indptr)),
                                 part.indices.astype(np.int64), part.data,
                                 dense[lo:hi] if dense is not None else None, length, sentence_role(sents))
            else:
                empty = np.zeros(0, dtype=np.int64)
                view = PaperView(words, sents, empty, empty, np.zeros(0), None, length, sentence_role(sents))
            self._views[r] = view


_ROW_KEYS: dict[int, tuple] = {}


def reader_rows(model: UserModel) -> tuple[list[bytes], list[bytes]]:
    """Content keys of a model's anchor and thumbs-down rows, computed once per model object (a
    model is not changed after training; calibration only sets mu, sd and threshold)."""
    entry = _ROW_KEYS.get(id(model))
    if entry is None or entry[0]() is not model:
        _sort_rows(model)                  # before hashing: a row's key reads its column order
        remember_row_keys(model, row_keys(model.pos_sparse, model.pos_dense),
                          row_keys(model.neg_sparse, model.neg_dense))
        entry = _ROW_KEYS[id(model)]
    return entry[1], entry[2]


def remember_row_keys(model: UserModel, pos_keys: list[bytes], neg_keys: list[bytes]) -> None:
    """``reader_rows(model)``, given: training knows which of its readers' rows are one row and
    hashes each once, where hashing every reader's copy took a third of a millisecond a reader."""
    _sort_rows(model)
    key = id(model)
    ref = weakref.ref(model, lambda _r, key=key: _ROW_KEYS.pop(key, None))
    _ROW_KEYS[key] = (ref, pos_keys, neg_keys)


def _sort_rows(model: UserModel) -> None:
    for m in (model.pos_sparse, model.neg_sparse):
        if not m.has_sorted_indices:
            m.sort_indices()           # explanations look columns up by bisection


def row_keys(sparse: sp.csr_matrix, dense: np.ndarray) -> list[bytes]:
    """A content hash per row (sparse and dense views): equal rows score equally, so readers who
    liked the same paper share one similarity row."""
    sparse = sp.csr_matrix(sparse)
    dense = np.ascontiguousarray(dense, dtype=np.float32)     # as models keep them
    ip, ind, dat = sparse.indptr, sparse.indices, sparse.data
    out = []
    for i in range(sparse.shape[0]):
        h = hashlib.blake2b(digest_size=16)
        h.update(ind[ip[i]:ip[i + 1]].tobytes())
        h.update(dat[ip[i]:ip[i + 1]].tobytes())
        if i < dense.shape[0]:
            h.update(dense[i].tobytes())
        out.append(h.digest())
    return out


def prepare_pool(space: FeatureSpace, papers: Sequence[PaperText] | Featurized,
                 params: Params | None = None) -> PassPool:
    """Everything per pool, once per pass. Memoised on a ``Featurized``: the single-reader calls
    (``select``, ``calibrate``) with the same papers share one pool."""
    params = params or params_for(space.backend)
    f = featurize(space, papers)
    memo = f.__dict__.setdefault("_pass_pools", [])
    for pool in memo:
        if pool.space is space:
            return pool
    pool = _build_pool(space, f, params)
    pool.diffusion(params)             # the graph and operator are per pass too, not per first reader
    memo.append(pool)
    return pool


def _build_pool(space: FeatureSpace, f: Featurized, params: Params) -> PassPool:
    n = len(f)
    sparse_t = f.sparse.T.tocsr()
    gram = (f.sparse @ sparse_t).toarray() if n else np.zeros((0, 0))
    index: dict[str, int] = {}
    for i, p in enumerate(f.papers):
        index.setdefault(p.key, i)
    titles: dict[str, int] = {}
    title_ids = np.array([titles.setdefault(title_key(p.title), len(titles)) for p in f.papers], dtype=np.int64)
    near = gram >= DUPLICATE_COSINE
    near |= title_ids[:, None] == title_ids[None, :]
    np.fill_diagonal(near, False)
    rows, cols = np.nonzero(near)
    duplicates: list[tuple[int, ...]] = [()] * n
    for r, group in zip(*_groups(rows, cols)):
        duplicates[r] = group
    return PassPool(space=space, feats=f, params=params, dense=np.ascontiguousarray(f.dense, dtype=np.float32),
                    sparse_t=sparse_t, sparse_gram=gram, index=index, title_ids=title_ids, duplicates=duplicates)


def _groups(rows: np.ndarray, cols: np.ndarray):
    if not len(rows):
        return [], []
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    ends = np.r_[starts[1:], len(rows)]
    return rows[starts].tolist(), [tuple(cols[s:e].tolist()) for s, e in zip(starts, ends)]


def _build_diffusion(pool: PassPool, k: int, mix: float, alpha: float) -> Diffusion:
    """The kNN graph (each paper to its k most similar, symmetrised) and the walk's operator."""
    n = pool.n
    if n <= 1:
        graph, kth, near = sp.csr_matrix((n, n)), np.zeros(n), np.full(n, np.inf)
    else:
        s = (1 - mix) * pool.sparse_gram + mix * (pool.feats.dense @ pool.feats.dense.T)
        np.fill_diagonal(s, -np.inf)
        kk = min(k, n - 1)
        nbr = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        vals = np.maximum(np.take_along_axis(s, nbr, axis=1), 0.0)
        a = sp.csr_matrix((vals.ravel(), (np.repeat(np.arange(n), kk), nbr.ravel())), shape=(n, n))
        graph, kth = a.maximum(a.T).tocsr(), vals.min(axis=1)
        kn = int(np.clip(round(NEAR_SHARE * n), 1, kk))
        near = np.partition(np.take_along_axis(s, nbr, axis=1), kk - kn, axis=1)[:, kk - kn]
    deg = np.asarray(graph.sum(axis=1)).ravel()
    inv = 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0))
    norm = sp.csr_matrix(sp.diags(inv) @ graph @ sp.diags(inv)).astype(np.float32)
    operator = None
    if n <= DENSE_OPERATOR_MAX:
        # I - alpha S is symmetric positive definite (S's eigenvalues lie in [-1, 1]): Cholesky.
        a_mat = np.eye(n, dtype=np.float32) - alpha * norm.toarray()
        operator = scipy.linalg.solve(a_mat, alpha * np.eye(n, dtype=np.float32), assume_a="pos",
                                      overwrite_a=True, overwrite_b=True, check_finite=False)
        operator = np.ascontiguousarray((operator + operator.T) / 2, dtype=np.float32)
    return Diffusion(graph=graph, kth=kth, near=near, deg=deg, k=k, alpha=alpha, operator=operator, norm_graph=norm)


# A sentence that says what the paper does ("We propose ...", "In this paper ...", "Here we show ..."),
# rather than the field's background ("Graphs are everywhere.") that abstracts open with.
_DOES = re.compile(r"\b(?:we|our (?:method|approach|model|framework|results?|work|analysis)|this (?:paper|work|study|"
                   r"article|letter|thesis|note)|here,? we)\b", re.IGNORECASE)
DOES_FACTOR = 2.0                  # its match with the reader counts double
OPENER_FACTOR = 0.5                # a first sentence that does not: the field's background, counts half


def sentence_role(sents: Sequence[str]) -> np.ndarray:
    """Per sentence, how much its match with the reader counts: ``DOES_FACTOR`` when it says what the
    paper does, ``OPENER_FACTOR`` for a first sentence that does not, 1 for the rest."""
    does = np.array([bool(_DOES.search(s)) for s in sents], dtype=bool)
    out = np.where(does, DOES_FACTOR, 1.0)
    if len(sents) > 1 and not does[0]:
        out[0] = OPENER_FACTOR
    return out


_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|et al|vs|Fig|Eq|cf|approx)\.)$", re.IGNORECASE)


def sentences(text: str) -> list[str]:
    """Split after . ! ? followed by a space and an uppercase letter / digit; keeps "e.g. the" together."""
    parts = [s.strip() for s in _SENT.split(" ".join((text or "").split())) if s.strip()]
    merged: list[str] = []
    for s in parts:
        if merged and _ABBREV.search(merged[-1]):
            merged[-1] = f"{merged[-1]} {s}"
        else:
            merged.append(s)
    return merged
