"""Readers' interests: their liked papers grouped into clusters, many readers at once. Pure numpy.

The clustering is greedy and single-pass, heaviest anchors first: each anchor joins the interest
whose centroid it is closest to, if above the threshold, else starts a new one. Deterministic, needs
no k: a reader with one topic gets one interest, a reader with three gets three.

Written on the anchors' Gram matrices rather than their vectors: a cluster's centroid is the
weighted sum of its members, so its similarity to an anchor is a weighted sum of Gram entries and
its norm follows from the same sums. The loop then runs over anchor positions (a few dozen) for all
readers of a batch at once, instead of over clusters and anchors of one reader at a time.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .hashing import unit_rows

def gram_blocks(rows: sp.csr_matrix, dense: np.ndarray, sizes: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each reader's anchor Gram matrices, sparse view and dense view, as (B, width, width) arrays
    (zero-padded). ``rows``/``dense`` hold the readers' anchors one reader after the other."""
    n_readers = len(sizes)
    start = np.r_[0, np.cumsum(sizes)[:-1]].astype(int)
    gs = np.zeros((n_readers, width, width))
    gd = np.zeros((n_readers, width, width))
    pad = np.zeros((n_readers, width, dense.shape[1]))
    owner = np.repeat(np.arange(n_readers), sizes)
    pos = np.arange(len(owner)) - start[owner]
    pad[owner, pos] = dense
    np.matmul(pad, pad.transpose(0, 2, 1), out=gd)
    g = _block_gram(sp.csr_matrix(rows), np.r_[start, len(owner)])
    i = np.repeat(np.arange(g.shape[0]), np.diff(g.indptr))
    gs[owner[i], pos[i], pos[g.indices]] = g.data
    return gs, gd


def _block_gram(rows: sp.csr_matrix, bounds: np.ndarray) -> sp.csr_matrix:
    """The products of rows within each range ``bounds[r]:bounds[r + 1]`` (one reader's anchors),
    none across: one sparse product for the whole batch. Each reader's columns are renamed apart
    (after one of their entries in that reader's rows), so no two readers share a column; the
    product sums an entry's terms in the order of its row's entries, as ``rows @ rows.T`` would.
    Renaming by sorting (reader, column) pairs cost more than the product itself."""
    indptr, indices = rows.indptr, rows.indices
    slot = np.empty(rows.shape[1], dtype=np.int64)      # scratch: a column's entry in the current reader
    renamed = np.empty(rows.nnz, dtype=np.int64)
    for lo, hi in zip(indptr[bounds[:-1]].tolist(), indptr[bounds[1:]].tolist()):
        cols = indices[lo:hi]
        slot[cols] = np.arange(lo, hi)
        renamed[lo:hi] = slot[cols]
    apart = sp.csr_matrix((rows.data, renamed, indptr), shape=(rows.shape[0], max(rows.nnz, 1)))
    return sp.csr_matrix(apart @ apart.T)


def cluster(gs: np.ndarray, gd: np.ndarray, weights: np.ndarray, sizes: np.ndarray, threshold: float,
            mix: float) -> np.ndarray:
    """Interest of every anchor, (B, width) (-1 for padding), from the readers' Gram matrices and
    their anchors' weights (zero-padded)."""
    n_readers, width = weights.shape
    everyone = np.arange(n_readers)
    order = np.argsort(np.where(np.arange(width)[None, :] < sizes[:, None], -weights, np.inf), axis=1, kind="stable")
    labels = np.full((n_readers, width), -1)
    # Per cluster: similarity of its (unnormalised) centroid to every anchor, and its squared norm.
    to_s = np.zeros((n_readers, width, width))
    to_d = np.zeros((n_readers, width, width))
    norm_s = np.zeros((n_readers, width))
    norm_d = np.zeros((n_readers, width))
    count = np.zeros(n_readers, dtype=int)
    for step in range(width):
        r = everyone[step < sizes]
        if not len(r):
            break
        i = order[r, step]
        ns, nd = np.sqrt(norm_s[r]), np.sqrt(norm_d[r])
        sim = (1 - mix) * to_s[r, :, i] / np.where(ns > 0, ns, 1.0) + mix * to_d[r, :, i] / np.where(nd > 0, nd, 1.0)
        sim[np.arange(width)[None, :] >= count[r, None]] = -np.inf
        best = np.argmax(sim, axis=1) if width else np.zeros(len(r), dtype=int)
        join = sim[np.arange(len(r)), best] > threshold
        c = np.where(join, best, count[r])
        count[r] += ~join
        w = weights[r, i]
        # |sum + w x|^2 = |sum|^2 + 2 w (sum . x) + w^2 |x|^2
        norm_s[r, c] = np.maximum(norm_s[r, c] + 2 * w * to_s[r, c, i] + w * w * gs[r, i, i], 0.0)
        norm_d[r, c] = np.maximum(norm_d[r, c] + 2 * w * to_d[r, c, i] + w * w * gd[r, i, i], 0.0)
        to_s[r, c] += w[:, None] * gs[r, i]
        to_d[r, c] += w[:, None] * gd[r, i]
        labels[r, i] = c
    return labels


def centroids(rows: sp.csr_matrix, dense: np.ndarray, labels: list[np.ndarray],
              weights: list[np.ndarray]) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Every reader's interest centroids (weighted sums of members, normalised), stacked reader
    after reader, and where each reader's begin: one sparse product for the whole batch."""
    k = np.array([lab.max() + 1 if len(lab) else 0 for lab in labels])
    first = np.r_[0, np.cumsum(k)]
    row = np.concatenate([lab + first[b] for b, lab in enumerate(labels)]) if labels else np.zeros(0, int)
    member = sp.csr_matrix((np.concatenate(weights) if weights else np.zeros(0), (row, np.arange(len(row)))),
                           shape=(int(first[-1]), len(row)))
    return unit_rows(sp.csr_matrix(member @ rows)), unit_rows(member @ dense), first
