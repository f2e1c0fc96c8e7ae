"""How close a paper is to what one reader already knows, at a few pool rows: the nearest interest
(cluster of anchors) and the closest anchor. Read by selection (the exploration pick must lie
outside both) for a handful of rows per reader, not the whole pool. Pure.
"""
from __future__ import annotations

import weakref
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from .pool import PassPool
from .profile import UserModel

CHUNK = 1000              # models whose stacked anchors are handled at once (as in rank.score)


_INTEREST_WEIGHTS: dict[int, tuple] = {}


def _interest_weights(model: UserModel) -> tuple[np.ndarray, np.ndarray]:
    """(interests, anchors) weights such that an interest's cosine to a paper is
    ``ws @ sparse_sims + wd @ dense_sims`` of its anchors (see ``_interest``), once per model."""
    entry = _INTEREST_WEIGHTS.get(id(model))
    if entry is None or entry[0]() is not model:
        prime_interest_weights([model])
        entry = _INTEREST_WEIGHTS[id(model)]
    return entry[1], entry[2]


def prime_interest_weights(models: Sequence[UserModel]) -> None:
    """``_interest_weights`` for many models at once: the norms of every interest's weighted sum of
    anchors in one sparse product (one-anchor interests, most of them, from the row norm alone)."""
    todo = [m for m in models if m.n_interests
            and (id(m) not in _INTEREST_WEIGHTS or _INTEREST_WEIGHTS[id(m)][0]() is not m)]
    for start in range(0, len(todo), CHUNK):      # the stacked anchors of a chunk at a time
        _prime(todo[start:start + CHUNK])


def _prime(todo: Sequence[UserModel]) -> None:
    labels_of, base, cluster, weight = [], 0, [], []
    for m in todo:
        labels = np.asarray(m.cluster_of, dtype=np.int64)
        if len(labels) != len(m.anchors):
            labels = np.zeros(len(m.anchors), dtype=np.int64)
        labels_of.append(labels)
        cluster.append(base + labels)
        weight.append(np.asarray(m.pos_weight, dtype=float))
        base += int(labels.max()) + 1
    cluster_a, weight_a = np.concatenate(cluster), np.concatenate(weight)
    stacked = sp.vstack([m.pos_sparse for m in todo]).tocsr()
    member = sp.csr_matrix((weight_a, (cluster_a, np.arange(len(cluster_a)))), shape=(base, len(cluster_a)))
    sizes = np.diff(member.indptr)
    row_sq = np.bincount(np.repeat(np.arange(stacked.shape[0]), np.diff(stacked.indptr)),
                         weights=stacked.data ** 2, minlength=stacked.shape[0])
    ns = np.zeros(base)
    single = np.flatnonzero(sizes == 1)
    first = member.indptr[single]
    ns[single] = np.abs(member.data[first]) * np.sqrt(row_sq[member.indices[first]])
    multi = np.flatnonzero(sizes > 1)
    if len(multi):
        ns[multi] = np.sqrt(_squared_norms(member[multi] @ stacked))
    at = 0
    for m, labels in zip(todo, labels_of):
        k, n_a = int(labels.max()) + 1, len(labels)
        mem = np.zeros((k, n_a))
        mem[labels, np.arange(n_a)] = m.pos_weight
        mix = m.params.dense_mix
        dense = m.pos_dense if m.pos_dense.shape[0] == n_a else np.zeros((n_a, 1))
        nd = np.linalg.norm(mem @ dense, axis=1)
        ns_m = ns[at:at + k]
        at += k
        ws = (1 - mix) * mem / np.where(ns_m > 0, ns_m, 1.0)[:, None]
        wd = mix * mem / np.where(nd > 0, nd, 1.0)[:, None]
        key = id(m)
        _INTEREST_WEIGHTS[key] = (weakref.ref(m, lambda _r, key=key: _INTEREST_WEIGHTS.pop(key, None)), ws, wd)


def _squared_norms(m: sp.csr_matrix) -> np.ndarray:
    return np.asarray(m.multiply(m).sum(axis=1)).ravel()


def interest_at(model: UserModel, pool: PassPool, cols: np.ndarray) -> np.ndarray:
    """One reader's similarity to their nearest interest, at the pool rows ``cols`` only."""
    if model.empty or not len(cols):
        return np.zeros(len(cols))
    ws, wd = _interest_weights(model)
    keys, _ = pool.reader_rows(model)
    out = ws @ pool.sparse_sims_at(keys, model.pos_sparse, cols)
    if model.pos_dense.shape[1] == pool.dense.shape[1]:
        out += wd @ _dense_sims(model, pool, cols)
    return out.max(axis=0)


def nearest_anchor_at(model: UserModel, pool: PassPool, cols: np.ndarray) -> np.ndarray:
    """One reader's blended similarity to their closest anchor (liked paper, seed, keywords), at
    the pool rows ``cols`` only."""
    return closeness_at(model, pool, cols)[0]


def closeness_at(model: UserModel, pool: PassPool, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(closest anchor, nearest interest) similarities of one reader at the pool rows ``cols``,
    from one pass over the anchors' similarities (``interest_at`` and ``nearest_anchor_at`` in one)."""
    if model.empty or not len(cols):
        return np.zeros(len(cols)), np.zeros(len(cols))
    mix = model.params.dense_mix
    keys, _ = pool.reader_rows(model)
    s_sparse = pool.sparse_sims_at(keys, model.pos_sparse, cols)
    s_dense = _dense_sims(model, pool, cols) if model.pos_dense.shape[1] == pool.dense.shape[1] \
        else np.zeros_like(s_sparse)
    anchor = ((1 - mix) * s_sparse + mix * s_dense).max(axis=0)
    if not model.n_interests:
        return anchor, np.zeros(len(cols))
    ws, wd = _interest_weights(model)
    return anchor, (ws @ s_sparse + wd @ s_dense).max(axis=0)


def _dense_sims(model: UserModel, pool: PassPool, cols: np.ndarray) -> np.ndarray:
    """The anchors' topic cosines at ``cols``, in float32 as scoring computes them (the sparse view
    here is float32 already): the product and the gather of the pool's rows were most of a reader's
    selection time in float64, and closeness only decides which side of a threshold a paper lies."""
    return model.pos_dense.astype(np.float32, copy=False) @ pool.dense[cols].T
