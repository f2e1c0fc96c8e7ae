"""Truncated SVD by random projection (Halko, Martinsson and Tropp, "Finding structure with
randomness", 2011): the topic basis of ``FeatureSpace.fit``. Pure: a matrix in, factors out.

It follows scikit-learn's ``TruncatedSVD(algorithm="randomized")`` step by step (the same seeded
draws, oversampling, LU-normalised power iterations, QR, exact SVD of the small projection and sign
convention), so a space fitted here has the topic basis scikit-learn gave to floating-point
rounding (tests/test_svd.py): the ranking's numbers, tuned with scikit-learn's basis, stay as they
were, and scikit-learn (with joblib and narwhals, about 60 MB) is no longer installed for it.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as la

N_OVERSAMPLES = 10      # extra random directions: the range found is k + 10 wide, then cut to k


def _range(a, size: int, n_iter: int, rng: np.random.RandomState) -> np.ndarray:
    """An orthonormal (rows(a), size) basis that nearly spans the top of a's range."""
    q = rng.normal(size=(a.shape[1], size))
    # Power iterations sharpen the basis toward the top singular vectors. Each product is
    # renormalised so the small singular values do not vanish in rounding; a pivoted LU (its
    # permuted L) does that for less than a QR, and only the last step needs orthonormal columns.
    # With two iterations or fewer the drift is small enough to skip it, as scikit-learn does.
    if n_iter <= 2:
        def normalise(m):
            return m
    else:
        def normalise(m):
            return la.lu(m, permute_l=True, check_finite=False)[0]
    for _ in range(n_iter):
        q = normalise(a @ q)
        q = normalise(a.T @ q)
    return la.qr(a @ q, mode="economic", check_finite=False)[0]


def randomized_svd(x, k: int, *, n_iter: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(u, s, vt)`` of the k largest singular values of ``x`` (sparse or dense, float64):
    ``x ~= u @ diag(s) @ vt``. Each row of ``vt`` has its largest-magnitude entry positive."""
    rng = np.random.RandomState(seed)
    # The range finder works on the shorter side: fewer rows to carry through the iterations.
    transpose = x.shape[0] < x.shape[1]
    m = x.T if transpose else x
    q = _range(m, k + N_OVERSAMPLES, n_iter, rng)
    # The exact SVD of the small (k + p) x cols projection; gesdd, scipy's default driver.
    u_small, s, vt = la.svd(q.T @ m, full_matrices=False, lapack_driver="gesdd")
    u = q @ u_small
    if transpose:
        u, vt = vt.T, u.T
    u, s, vt = u[:, :k], s[:k], vt[:k]
    # A singular vector's sign is arbitrary; fix it so a refit of the same corpus gives the same
    # basis: each component's largest-magnitude loading is positive.
    signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
    return u * signs, s, vt * signs[:, None]
