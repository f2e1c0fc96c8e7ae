"""Scores of many readers against one pool, as matrix products. Pure: models and a pool in, (B, n) out.

A score blends components, each standardised against the reader's own background (so a score
means "how many background standard deviations above a typical paper", comparable day to day):

* ``diffusion``: personalised PageRank on the pool's kNN graph. A reader's restart mass enters the
  pool through their anchors' edges (an anchor links to its k nearest papers, and a paper to an
  anchor closer than its own k-th neighbour) and spreads along one operator shared by every reader,
  ``alpha (I - alpha S)^-1``: relevance flows from liked papers to their neighbours and on to
  *theirs*, so a paper sharing no word with a liked one but sitting in its neighbourhood surfaces.
  Every reader's scores are then one float32 product (see ``_diffusion`` for how this relates to
  the per-reader walk it replaces).
* ``interest``: similarity to the nearest interest (a cluster of anchors); weight 0 by default,
  still what the exploration pick keeps away from.
* ``linear``: a logistic model over the topic view; ``hub``: the graph degree (generic papers near
  everything rank less); ``dislike``: similarity to the nearest thumbs-down.

Readers are processed in chunks; within one, every product is over the whole chunk.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..models import PaperText
from .features import FeatureSpace, Featurized
from .pool import Diffusion, PassPool, prepare_pool
from .profile import Params, UserModel

CHUNK = 1000                  # readers per product: (chunk, n) float32 matrices stay around 10 MB
TIE_TOLERANCE = 1e-5          # similarities closer than this are equal (float32 products)


def _component_weights(p: Params) -> dict[str, float]:
    return {"diffusion": p.w_diffusion, "interest": p.w_interest, "linear": p.w_linear,
            "hub": -p.w_hub, "dislike": -p.w_dislike}


@dataclass
class _Rows:
    """A chunk of readers, flattened: their anchor and thumbs-down rows deduplicated into one table."""

    sparse: sp.csr_matrix            # (U, columns) the distinct rows
    dense: np.ndarray                # (U, d) float32
    keys: list[bytes]
    anchor_row: np.ndarray           # (O,) table row of each anchor, reader by reader
    anchor_reader: np.ndarray        # (O,) position of its reader in the chunk
    anchor_weight: np.ndarray        # (O,) the anchor's weight, normalised per reader
    anchor_ptr: np.ndarray           # (B + 1,) a reader's anchors are anchor_row[ptr[u]:ptr[u + 1]]
    neg_row: np.ndarray
    neg_ptr: np.ndarray


def _flatten(models: Sequence[UserModel], pool: PassPool) -> _Rows:
    slot: dict[bytes, int] = {}
    src: list[tuple[UserModel, int, int]] = []         # (model, kind, row) of each distinct row
    a_row: list[int] = []
    n_rows: list[int] = []
    a_ptr, n_ptr = [0], [0]
    for m in models:
        pos_keys, neg_keys = pool.reader_rows(m)
        for kind, keys, out in ((0, pos_keys, a_row), (1, neg_keys, n_rows)):
            for i, k in enumerate(keys):
                s = slot.get(k)
                if s is None:
                    s = slot[k] = len(src)
                    src.append((m, kind, i))
                out.append(s)
        a_ptr.append(len(a_row))
        n_ptr.append(len(n_rows))
    d = pool.dense.shape[1]
    # The distinct rows as one CSR matrix, assembled from the models' arrays (row slicing a scipy
    # matrix costs tens of microseconds a row).
    indptr = np.zeros(len(src) + 1, dtype=np.int64)
    parts_i, parts_d = [], []
    dense = np.zeros((len(src), d), dtype=np.float32)
    for j, (m, kind, i) in enumerate(src):
        mat = m.pos_sparse if kind == 0 else m.neg_sparse
        lo, hi = mat.indptr[i], mat.indptr[i + 1]
        parts_i.append(mat.indices[lo:hi])
        parts_d.append(mat.data[lo:hi])
        indptr[j + 1] = indptr[j] + (hi - lo)
        row = (m.pos_dense if kind == 0 else m.neg_dense)
        if row.shape[1] == d:                # an authors-only reader has no topic vector
            dense[j] = row[i]
    sparse = sp.csr_matrix((np.concatenate(parts_d) if parts_d else np.zeros(0),
                            np.concatenate(parts_i) if parts_i else np.zeros(0, dtype=np.int32), indptr),
                           shape=(len(src), pool.sparse_t.shape[0]))
    a_ptr_arr = np.array(a_ptr)
    weights = np.concatenate([m.pos_weight / m.pos_weight.sum() for m in models if len(m.pos_weight)] or [np.zeros(0)])
    return _Rows(sparse, dense, list(slot), np.array(a_row, dtype=np.int64),
                 np.repeat(np.arange(len(models)), np.diff(a_ptr_arr)), weights.astype(np.float64), a_ptr_arr,
                 np.array(n_rows, dtype=np.int64), np.array(n_ptr))


def _components(models: Sequence[UserModel], pool: PassPool, *, interest: bool) -> tuple[dict, dict]:
    """Raw components for a chunk of non-empty readers sharing graph params: name -> (B, n)
    float32 (``hub``: (n,)), and name -> (B,) bool, which readers have that component."""
    p = models[0].params
    mix = p.dense_mix
    view = pool.diffusion(p)
    rows = _flatten(models, pool)
    b = len(models)
    used, local = np.unique(rows.anchor_row, return_inverse=True)
    known = view.known_edges([rows.keys[i] for i in used.tolist()])
    # Similarities to the pool only for the rows that need them: anchors whose edges an earlier
    # batch did not find (most liked papers recur from batch to batch), thumbs-down, and every
    # row when the interest component is on. Each row's similarities are the same whichever rows
    # are computed with it.
    need = np.arange(len(rows.keys)) if interest else \
        np.union1d(used[[e is None for e in known]], rows.neg_row).astype(np.int64)
    at = np.full(len(rows.keys), -1)
    at[need] = np.arange(len(need))
    s_sparse = pool.sparse_sims([rows.keys[i] for i in need.tolist()], rows.sparse[need])
    s_dense = rows.dense[need] @ pool.dense.T
    sims = (1 - mix) * s_sparse + mix * s_dense
    out = {"diffusion": _diffusion(rows, local, _edges(rows, used, known, sims, at, view), view, b, pool.n)}
    has = {"diffusion": np.ones(b, bool), "hub": np.ones(b, bool)}
    if interest:
        out["interest"], has["interest"] = _interest(models, rows, s_sparse, s_dense, mix), np.ones(b, bool)
    has["linear"] = np.array([m.coef_dense is not None for m in models])
    if has["linear"].any():
        d = pool.dense.shape[1]
        coef = np.zeros((d, b), dtype=np.float32)
        icpt = np.zeros(b, dtype=np.float32)
        for u, m in enumerate(models):
            if m.coef_dense is not None:
                coef[:, u], icpt[u] = m.coef_dense, m.intercept
        out["linear"] = (pool.dense @ coef).T + icpt[:, None]
    out["hub"] = view.deg.astype(np.float32)
    has["dislike"] = np.diff(rows.neg_ptr) > 0
    if has["dislike"].any():
        out["dislike"] = _segment_max(sims[at[rows.neg_row]], rows.neg_ptr, pool.n)
    return out, has


def _segment_max(values: np.ndarray, ptr: np.ndarray, n: int) -> np.ndarray:
    """Row ``u`` of the result: the element-wise max of values[ptr[u]:ptr[u+1]] (0 where empty)."""
    out = np.zeros((len(ptr) - 1, n), dtype=np.float32)
    # One reduction per segment: np.maximum.reduceat along axis 0 walked the rows several times
    # slower (measured 7x on a batch of readers' thumbs-down), and a max is exact either way.
    for u in np.flatnonzero(np.diff(ptr) > 0).tolist():
        values[ptr[u]:ptr[u + 1]].max(axis=0, out=out[u])
    return out


def _anchor_edges(sims: np.ndarray, view: Diffusion) -> np.ndarray:
    """(rows, n) float32: an anchor's edges, by the kNN rule seen from both ends, weighted by similarity."""
    n = sims.shape[1]
    k = min(view.k, n)
    if k < n:
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        mask = np.zeros(sims.shape, dtype=bool)
        np.put_along_axis(mask, top, True, axis=1)
    else:
        mask = np.ones(sims.shape, dtype=bool)
    # An anchor that is a pool paper ties with that paper's copy: only a clearly closer anchor
    # links (ties out: chosen on half A of citeulike-dev), and the tolerance keeps the rule from
    # depending on float32 rounding, so on which other readers share the batch.
    mask |= sims > view.kth[None, :] + TIE_TOLERANCE
    return np.where(mask, np.maximum(sims, 0.0), 0.0).astype(np.float32)


def _edges(rows: _Rows, used: np.ndarray, known: list, sims: np.ndarray, at: np.ndarray, view: Diffusion) -> np.ndarray:
    """(len(used), n) float32: the edges of the anchor rows ``used``, from ``known`` (the view's
    memo) or from their similarities ``sims[at[row]]``, remembered for the next batch."""
    edges = np.zeros((len(used), view.kth.shape[0]), dtype=np.float32)
    new = [j for j, e in enumerate(known) if e is None]
    if new:
        fresh = _anchor_edges(sims[at[used[new]]], view)
        edges[new] = fresh
        view.remember_edges([rows.keys[i] for i in used[new].tolist()], fresh)
    old = [j for j, e in enumerate(known) if e is not None]
    if old:
        cols = [known[j][0] for j in old]
        edges[np.repeat(np.array(old), [len(c) for c in cols]), np.concatenate(cols)] = \
            np.concatenate([known[j][1] for j in old])
    return edges


def _diffusion(rows: _Rows, local: np.ndarray, edges: np.ndarray, view: Diffusion, b: int, n: int) -> np.ndarray:
    """Personalised PageRank from each reader's anchors, all readers in one operator product.

    The walk of the anchors-as-nodes graph (pool block normalised with the degrees the anchors
    add) has the fixed point ``(I - alpha S' - alpha^2 E'E'^T)^-1 alpha (1 - alpha) E' w``. Here
    ``S'`` (per reader) becomes the pool's own ``S`` (shared) and the echo term is dropped, while
    the restart ``E' w`` keeps the reader's degrees: measured the closest of the shared forms to
    the per-reader walk (0.01-0.02 background sd at the top 50 on citeulike-dev users, where
    adding a degree damping or the echo moves it 0.03-0.09). ``edges``: those of the distinct
    anchor rows, ``local``: which of them each anchor is."""
    a = view.alpha
    deg_anchor = edges.sum(axis=1, dtype=np.float64)
    inv_a = (1.0 / np.sqrt(np.where(deg_anchor > 0, deg_anchor, 1.0))).astype(np.float32)
    occ = (rows.anchor_reader, local)
    weights = sp.csr_matrix((rows.anchor_weight.astype(np.float32) * inv_a[local], occ), shape=(b, len(edges)))
    counts = sp.csr_matrix((np.ones(len(local), dtype=np.float32), occ), shape=(b, len(edges)))
    deg_aug = counts @ edges                                               # the reader's anchors join the graph
    deg_aug += view.deg.astype(np.float32)[None, :]
    restart = weights @ edges
    restart *= np.float32(1 - a) / np.sqrt(np.where(deg_aug > 0, deg_aug, np.float32(1.0)))
    # Scaled by the pool size, so a paper's score does not shrink just because the day is busy.
    return view.apply(restart) * np.float32(n)


def _interest(models: Sequence[UserModel], rows: _Rows, s_sparse: np.ndarray, s_dense: np.ndarray,
              mix: float) -> np.ndarray:
    """Similarity to the nearest interest, from the anchors' similarities: an interest's centroid is
    the normalised weighted sum of its anchors (``fit``), so its cosine is the weighted sum of theirs
    over the sum's norm; no centroid row is multiplied with the pool."""
    cluster, base = [], 0
    k_ptr = [0]
    for m in models:
        labels = np.asarray(m.cluster_of, dtype=np.int64)
        if len(labels) != len(m.anchors):
            labels = np.zeros(len(m.anchors), dtype=np.int64)
        cluster.append(base + labels)
        base += int(labels.max()) + 1 if len(labels) else 0
        k_ptr.append(base)
    cluster_a = np.concatenate(cluster) if cluster else np.zeros(0, np.int64)
    weight = np.concatenate([np.asarray(m.pos_weight, dtype=float) for m in models] or [np.zeros(0)])
    u = rows.sparse.shape[0]
    # Interests over the distinct rows (readers who liked the same paper share its row).
    member = sp.csr_matrix((weight, (cluster_a, rows.anchor_row)), shape=(base, u))
    # The norm of a weighted sum of rows: for a one-anchor interest (most of them) the weight times
    # the row's norm; the others through their sparse sum.
    row_norm = np.sqrt(np.add.reduceat(np.r_[rows.sparse.data ** 2, 0.0], np.minimum(rows.sparse.indptr[:-1],
                                       len(rows.sparse.data)))) * (np.diff(rows.sparse.indptr) > 0)
    sizes = np.diff(member.indptr)
    ns = np.zeros(base)
    single = np.flatnonzero(sizes == 1)
    ns[single] = np.abs(member.data[member.indptr[single]]) * row_norm[member.indices[member.indptr[single]]]
    multi = np.flatnonzero(sizes > 1)
    if len(multi):
        v = member[multi] @ rows.sparse
        ns[multi] = np.sqrt(np.asarray(v.multiply(v).sum(axis=1)).ravel())
    nd = np.linalg.norm(member @ rows.dense.astype(np.float64), axis=1)
    scale_s = ((1 - mix) / np.where(ns > 0, ns, 1.0)).astype(np.float32)
    scale_d = (mix / np.where(nd > 0, nd, 1.0)).astype(np.float32)
    member = member.astype(np.float32)
    csim = sp.diags(scale_s) @ member @ s_sparse
    csim += sp.diags(scale_d) @ member @ s_dense
    return _segment_max(csim, np.array(k_ptr), s_sparse.shape[1])


# -- the batched entry points ---------------------------------------------------------------
def _chunks(models: Sequence[UserModel]):
    """Indices of the non-empty readers, grouped by the params the pool's graph depends on."""
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(models):
        if not m.empty:
            groups.setdefault((m.params.graph_k, m.params.dense_mix, m.params.alpha), []).append(i)
    for members in groups.values():
        for start in range(0, len(members), CHUNK):
            yield members[start:start + CHUNK]


def _blend(models: Sequence[UserModel], raw: dict, has: dict) -> np.ndarray:
    """Sum over components of weight * (raw - mu) / sd, each reader with their own mu, sd and weights."""
    total = None
    for name, values in raw.items():
        w = np.array([_component_weights(m.params)[name] for m in models]) * has[name]
        mu = np.array([m.mu.get(name, 0.0) for m in models])
        sd = np.array([m.sd.get(name, 1.0) for m in models])
        scale, shift = (w / sd).astype(np.float32), (w * mu / sd).astype(np.float32)
        part = scale[:, None] * (values[None, :] if values.ndim == 1 else values) - shift[:, None]
        total = part if total is None else total + part
    return total


def _wants_interest(models: Sequence[UserModel]) -> bool:
    return any(m.params.w_interest != 0 for m in models)


def score_readers(models: Sequence[UserModel], pool: PassPool) -> np.ndarray:
    """(B, n) float32 calibrated scores: 0 is each reader's relevance threshold, higher is better.
    A reader with no anchors scores 0 everywhere."""
    out = np.zeros((len(models), pool.n), dtype=np.float32)
    if pool.n == 0:
        return out
    for idx in _chunks(models):
        chunk = [models[i] for i in idx]
        raw, has = _components(chunk, pool, interest=_wants_interest(chunk))
        out[idx] = _blend(chunk, raw, has) - np.array([m.threshold for m in chunk], dtype=np.float32)[:, None]
    return out


def calibrate_readers(models: Sequence[UserModel], bg_pool: PassPool) -> list[UserModel]:
    """In place, and returned: standardise each reader's components on the background, then put
    their relevance threshold at a high quantile of the background's blended score, so a thin day
    yields few picks. The same components as ``score_readers``, on the background pool."""
    models = list(models)
    if bg_pool.n == 0:
        return models
    for idx in _chunks(models):
        chunk = [models[i] for i in idx]
        raw, has = _components(chunk, bg_pool, interest=_wants_interest(chunk))
        for m in chunk:
            m.mu, m.sd = {}, {}
        for name, values in raw.items():
            mean = values.mean(axis=-1, dtype=np.float64)
            std = values.std(axis=-1, dtype=np.float64)
            for u, m in enumerate(chunk):
                if has[name][u]:
                    m.mu[name] = float(mean if values.ndim == 1 else mean[u])
                    m.sd[name] = float(std if values.ndim == 1 else std[u]) or 1.0
        total = _blend(chunk, raw, has).astype(np.float64)
        qs = np.array([m.params.threshold_quantile for m in chunk])
        if np.all(qs == qs[0]):
            thresholds = np.quantile(total, qs[0], axis=1)
        else:
            thresholds = np.array([np.quantile(t, q) for t, q in zip(total, qs)])
        for m, t in zip(chunk, thresholds):
            m.threshold = float(t)
    return models


def reader_interest(models: Sequence[UserModel], pool: PassPool) -> np.ndarray:
    """(B, n) float32: each reader's similarity to their nearest interest (0 for a reader with none)."""
    out = np.zeros((len(models), pool.n), dtype=np.float32)
    if pool.n == 0:
        return out
    for idx in _chunks(models):
        chunk = [models[i] for i in idx]
        rows = _flatten(chunk, pool)
        mix = chunk[0].params.dense_mix
        out[idx] = _interest(chunk, rows, pool.sparse_sims(rows.keys, rows.sparse), rows.dense @ pool.dense.T, mix)
    return out


# -- one reader: a batch of one --------------------------------------------------------------
def rank_scores(model: UserModel, space: FeatureSpace, candidates: Sequence[PaperText] | Featurized) -> np.ndarray:
    """Calibrated scores for every candidate: 0 is the user's relevance threshold."""
    return score_readers([model], prepare_pool(space, candidates, model.params))[0]


score = rank_scores


def calibrate(model: UserModel, space: FeatureSpace, background: Sequence[PaperText] | Featurized) -> UserModel:
    """``calibrate_readers`` for one reader. The background's pool is memoised on a shared
    ``Featurized``, so calibrating many users against one background pays for it once."""
    if model.empty:
        return model
    return calibrate_readers([model], prepare_pool(space, background, model.params))[0]
