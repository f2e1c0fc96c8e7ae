"""The topic basis is computed without scikit-learn now, and must be the one its TruncatedSVD gave:
the ranking's parameters were tuned on that basis (scikit-learn is in the test extra, as the reference)."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from digestd.eval_protocol import load_papers
from digestd.rank.features import FeatureSpace
from digestd.rank.svd import randomized_svd

sklearn_decomposition = pytest.importorskip("sklearn.decomposition")
sklearn_extmath = pytest.importorskip("sklearn.utils.extmath")

SMALL = Path(__file__).parent / "data" / "eval" / "papers.jsonl"
DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "citeulike-dev" / "papers.jsonl"


def _same_up_to_sign(ours: np.ndarray, theirs: np.ndarray, atol: float) -> None:
    """Rows equal once each is given the sign of its reference (a singular vector's sign is free)."""
    signs = np.sign((ours * theirs).sum(axis=1))
    assert np.all(signs != 0)
    np.testing.assert_allclose(ours * signs[:, None], theirs, rtol=0, atol=atol)


def _check_space_against_truncated_svd(path: Path) -> None:
    papers = load_papers(str(path))
    space = FeatureSpace.fit(papers)
    x = space._topic_input(space._term_counts(papers))
    k = space.svd_components.shape[1]
    theirs = sklearn_decomposition.TruncatedSVD(n_components=k, algorithm="randomized", n_iter=3,
                                                random_state=0).fit(x)
    # Stored as float32: one float32 rounding of a unit-length loading apart at most.
    _same_up_to_sign(space.svd_components.T.astype(np.float64),
                     theirs.components_.astype(np.float32).astype(np.float64), atol=1e-7)
    # Every paper projected with either basis gets the same topic vector.
    counts = space._term_counts(papers)
    their_space = copy.copy(space)
    their_space.svd_components = theirs.components_.T.astype(np.float32)
    np.testing.assert_allclose(np.abs(space.topics(counts)), np.abs(their_space.topics(counts)), rtol=0, atol=1e-6)


def test_the_topic_basis_equals_scikit_learns_truncated_svd_on_real_abstracts():
    _check_space_against_truncated_svd(SMALL)


@pytest.mark.slow
@pytest.mark.skipif(not DEV.exists(), reason="needs ../shared/data/citeulike-dev")
def test_the_topic_basis_equals_scikit_learns_truncated_svd_on_the_citeulike_corpus():
    _check_space_against_truncated_svd(DEV)


@pytest.mark.parametrize("shape", [(60, 300), (300, 60)], ids=["wide", "tall"])
@pytest.mark.parametrize("n_iter", [1, 3])
def test_the_factors_equal_scikit_learns_randomized_svd_in_both_orientations(shape, n_iter):
    """Wide matrices are factored through their transpose, tall ones directly; one or two power
    iterations skip the LU normalisation: each path must match scikit-learn's."""
    import scipy.sparse as sp

    x = sp.random(*shape, density=0.1, format="csr", random_state=np.random.RandomState(7))
    u, s, vt = randomized_svd(x, 12, n_iter=n_iter, seed=3)
    tu, ts, tvt = sklearn_extmath.randomized_svd(x, 12, n_iter=n_iter, random_state=3, flip_sign=False)
    tu, tvt = sklearn_extmath.svd_flip(tu, tvt, u_based_decision=False)
    np.testing.assert_allclose(s, ts, rtol=1e-12)
    np.testing.assert_allclose(vt, tvt, rtol=0, atol=1e-12)
    np.testing.assert_allclose(u, tu, rtol=0, atol=1e-12)


def test_each_component_has_its_largest_loading_positive_so_a_refit_gives_the_same_basis():
    import scipy.sparse as sp

    x = sp.random(80, 200, density=0.1, format="csr", random_state=np.random.RandomState(1))
    _u, _s, vt = randomized_svd(x, 10, n_iter=3, seed=0)
    assert np.all(vt[np.arange(10), np.argmax(np.abs(vt), axis=1)] > 0)
    again = randomized_svd(x, 10, n_iter=3, seed=0)[2]
    assert np.array_equal(vt, again)
