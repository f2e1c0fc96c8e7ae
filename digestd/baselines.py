"""The two pieces of scikit-learn the eval baselines are defined with, written without it:
``Tfidf`` (``TfidfVectorizer``'s word analyzer, vocabulary pruning and weighting) and
``linear_svm`` (``LinearSVC``: liblinear's L2-regularised squared-hinge SVM).

The baselines stand for other projects (arxiv-sanity-lite's SVM, a plain TF-IDF centroid), so they
must compute exactly what those projects compute with scikit-learn; tests/test_baselines.py checks
the matrices and the decision values against scikit-learn itself. Only the eval uses them, and the
default install no longer carries scikit-learn (with joblib and narwhals, about 60 MB) for them.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from numbers import Integral
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from .rank.hashing import ENGLISH_STOP_WORDS, unit_rows

WORD_PATTERN = r"(?u)\b\w\w+\b"      # TfidfVectorizer's default token_pattern


def strip_accents_unicode(s: str) -> str:
    """scikit-learn's ``strip_accents="unicode"``: decompose (NFKD), drop the combining marks."""
    if s.isascii():
        return s
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


class Tfidf:
    """``TfidfVectorizer(lowercase=True, stop_words="english", norm="l2", use_idf=True,
    smooth_idf=True)`` with the other options it is used with, for ``fit_transform`` only.

    ``min_df`` / ``max_df``: a count of papers if an int, a share of them if a float (scikit-learn's
    convention). Terms kept: the ``max_features`` most frequent over the whole corpus."""

    def __init__(self, *, token_pattern: str = WORD_PATTERN, strip_accents: bool = False,
                 ngram_max: int = 1, min_df: int | float = 1, max_df: int | float = 1.0,
                 max_features: int | None = None, sublinear_tf: bool = False) -> None:
        self.token = re.compile(token_pattern)
        self.strip_accents = strip_accents
        self.ngram_max = ngram_max
        self.min_df, self.max_df = min_df, max_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.vocabulary: dict[str, int] = {}
        self.idf: np.ndarray | None = None

    def analyze(self, doc: str) -> list[str]:
        """Lowercased (then unaccented) words, stop words out, then the n-grams of what is left:
        a bigram may join two words a stop word stood between, as scikit-learn's does."""
        doc = doc.lower()
        if self.strip_accents:
            doc = strip_accents_unicode(doc)
        words = [w for w in self.token.findall(doc) if w not in ENGLISH_STOP_WORDS]
        grams = list(words)
        for n in range(2, min(self.ngram_max, len(words)) + 1):
            grams += [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
        return grams

    def _counts(self, docs: Sequence[str]) -> tuple[sp.csr_matrix, list[str]]:
        """Term counts, columns in alphabetical order of the terms."""
        ids: dict[str, int] = {}
        indices: list[int] = []
        values: list[int] = []
        indptr = [0]
        for doc in docs:
            counts = Counter(ids.setdefault(g, len(ids)) for g in self.analyze(doc))
            indices.extend(counts.keys())
            values.extend(counts.values())
            indptr.append(len(indices))
        if not ids:
            raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
        terms = sorted(ids)
        order = np.empty(len(ids), dtype=np.int64)
        order[[ids[t] for t in terms]] = np.arange(len(terms))
        x = sp.csr_matrix((np.asarray(values, dtype=np.float64), order[np.asarray(indices, dtype=np.int64)],
                           np.asarray(indptr, dtype=np.int64)), shape=(len(docs), len(ids)))
        x.sort_indices()
        return x, terms

    def _keep(self, x: sp.csr_matrix) -> np.ndarray:
        """The columns that pass min_df, max_df and max_features, in order."""
        n = x.shape[0]
        high = self.max_df if isinstance(self.max_df, Integral) else self.max_df * n
        low = self.min_df if isinstance(self.min_df, Integral) else self.min_df * n
        if high < low:
            raise ValueError("max_df corresponds to < documents than min_df")
        df = np.bincount(x.indices, minlength=x.shape[1])
        mask = (df <= high) & (df >= low)
        if self.max_features is not None and mask.sum() > self.max_features:
            tf = np.asarray(x.sum(axis=0)).ravel()
            # The same (unstable) argsort call as scikit-learn's, on the same array in the same
            # order: terms tied on frequency at the cut are then kept or dropped as it does.
            top = (-tf[mask]).argsort()[: self.max_features]
            keep = np.zeros(len(df), dtype=bool)
            keep[np.flatnonzero(mask)[top]] = True
            mask = keep
        if not mask.any():
            raise ValueError("After pruning, no terms remain. Try a lower min_df or a higher max_df.")
        return np.flatnonzero(mask)

    def fit_transform(self, docs: Sequence[str]) -> sp.csr_matrix:
        """One L2-normalised TF-IDF row per document; ``vocabulary`` and ``idf`` are set."""
        x, terms = self._counts(docs)
        keep = self._keep(x)
        x = sp.csr_matrix(x[:, keep])
        x.sort_indices()
        self.vocabulary = {terms[c]: i for i, c in enumerate(keep)}
        # Smoothed: as if one more document held every term, so no IDF divides by zero.
        df = np.bincount(x.indices, minlength=x.shape[1]).astype(np.float64) + 1.0
        self.idf = np.log((x.shape[0] + 1) / df) + 1.0
        if self.sublinear_tf:
            x.data = np.log(x.data) + 1.0
        x.data *= self.idf[x.indices]
        return unit_rows(x)


def linear_svm(x, y: np.ndarray, c: float, *, tol: float = 1e-10, max_newton: int = 100) -> np.ndarray:
    """Decision values on ``x`` of ``LinearSVC(C=c, class_weight="balanced")`` trained on (x, y),
    ``y`` in {0, 1}: the minimum over w of

        0.5 |w|^2 + sum_i c_i max(0, 1 - s_i w.[x_i, 1])^2,   s_i = +1 if y_i else -1,

    with ``c_i = c * n / (2 * n_class(y_i))`` (balanced classes) and the intercept as liblinear
    keeps it: a constant feature 1 whose weight is regularised with the rest.

    The problem is strictly convex, so its minimum is one point whatever reaches it. liblinear
    stops its coordinate descent at a tolerance; this solves it to the end by Newton's method,
    so the decision values agree with scikit-learn's to liblinear's tolerance (1e-7 measured on
    citeulike-dev). The loss is quadratic while the set of margin violators stays the same, so
    each step is solved exactly and the last one lands on the optimum: with C = 0.01 every paper
    violates the margin throughout and one step does it (11 ms a reader, liblinear 13 ms)."""
    xa = sp.hstack([sp.csr_matrix(x), np.ones((x.shape[0], 1))], format="csr")
    # Transposed once: products with x' run as CSR too, and nothing is re-sliced per step (row
    # slices and transposes per Newton step were two thirds of the time).
    xt = xa.T.tocsr()
    y = np.asarray(y)
    s = np.where(y > 0, 1.0, -1.0)
    n_pos = int((s > 0).sum())
    if n_pos in (0, len(s)):
        raise ValueError("the SVM needs both liked and other papers")
    ci = c * len(s) / (2.0 * np.where(s > 0, n_pos, len(s) - n_pos))
    w = np.zeros(xa.shape[1])

    def loss(w, z):
        gap = np.maximum(0.0, 1.0 - s * z)
        return 0.5 * (w @ w) + (ci * gap * gap).sum(), gap

    z = xa @ w
    f, gap = loss(w, z)
    g0 = None
    for _ in range(max_newton):
        g = w - 2.0 * (xt @ (ci * s * gap))          # gap is 0 off the margin violators
        gnorm = np.linalg.norm(g)
        g0 = gnorm if g0 is None else g0
        if gnorm <= tol * g0:
            break
        h = np.where(gap > 0, ci, 0.0)
        # Solved to the final tolerance (not loosely, as Newton-CG usually is): with the violators
        # unchanged it is then the last step; loose solves took five steps and four times as long.
        d = _newton_step(xa, xt, h, g, cg_tol=0.5 * tol * g0)
        # Backtracking (Armijo) on the true, piecewise objective: near the end t = 1 is taken.
        dz = xa @ d
        slope = g @ d
        t = 1.0
        while True:
            f_new, gap_new = loss(w + t * d, z + t * dz)
            if f_new <= f + 0.01 * t * slope or t < 1e-12:
                break
            t *= 0.5
        w, z, f, gap = w + t * d, z + t * dz, f_new, gap_new
    return np.asarray(xa @ w)


def _newton_step(xa, xt, h: np.ndarray, g: np.ndarray, cg_tol: float, max_cg: int = 500) -> np.ndarray:
    """Solve (I + 2 X' diag(h) X) d = -g by conjugate gradients, to residual ``cg_tol``: the
    generalised Hessian of the squared hinge, ``h`` the weight of the rows violating the margin
    (0 elsewhere). ``xt`` is X' as CSR."""
    def hess(v):
        return v + 2.0 * (xt @ (h * (xa @ v)))

    d = np.zeros_like(g)
    r = -g
    p = r.copy()
    rr = r @ r
    for _ in range(max_cg):
        if np.sqrt(rr) <= cg_tol:
            break
        hp = hess(p)
        alpha = rr / (p @ hp)
        d += alpha * p
        r -= alpha * hp
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return d
