"""The ranker's own hashing must put every token where scikit-learn's HashingVectorizer does:
stored profiles and fitted spaces were made with it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, HashingVectorizer
from sklearn.preprocessing import normalize

from digestd.rank import hashing
from digestd.rank.features import N_FEATURES, _analyzer

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "citeulike-dev" / "papers.jsonl"
TEXTS = ["Dense retrieval with embedding models. Proteins fold; the folding of proteins",
         "Schrödinger's ∂ équation — naïve façade", "", "a an the", "x" * 300, "日本語のタイトル"]


def _sklearn_counts(docs, analyzer):
    return HashingVectorizer(n_features=N_FEATURES, analyzer=analyzer, alternate_sign=False, norm=None,
                             dtype=np.float64).transform(docs)


def test_hashed_counts_equal_scikit_learns_hashing_vectorizer():
    texts = TEXTS
    if DEV.exists():
        texts = TEXTS + [json.loads(line).get("abstract") or "" for line in DEV.open().readlines()[:300]]
    ours = hashing.hashed_counts((_analyzer(t) for t in texts), N_FEATURES)
    theirs = _sklearn_counts(texts, _analyzer)
    assert ours.shape == theirs.shape
    assert (ours != theirs).nnz == 0


def test_raw_tokens_and_weights_hash_like_scikit_learn():
    tokens = [["author:muller_j", "ü", "", "token with spaces"], [], ["a"] * 3]
    ours = hashing.hashed_counts(tokens, N_FEATURES, weight=0.5)
    theirs = 0.5 * _sklearn_counts(tokens, lambda names: names)
    assert abs(ours - theirs).max() == 0


def test_the_stop_list_is_scikit_learns():
    assert hashing.ENGLISH_STOP_WORDS == ENGLISH_STOP_WORDS


def test_unit_rows_match_normalize_with_empty_rows_anywhere():
    m = sp.csr_matrix(np.array([[0, 0, 0], [3.0, 4.0, 0], [0, 0, 0], [0, 0, 2.0], [0, 0, 0]]))
    assert abs(hashing.unit_rows(m.copy()) - normalize(m)).max() < 1e-12
    d = np.array([[0.0, 0.0], [1.0, 1.0]])
    assert np.allclose(hashing.unit_rows(d), normalize(d))


def test_a_one_off_digest_does_not_import_scikit_learn():
    code = ("import sys, digestd.cli, digestd.pipeline.compose, digestd.pipeline.view, digestd.rank;"
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_fitted_space_survives_pickling_with_its_idf_exact():
    import pickle

    from digestd.models import PaperText
    from digestd.rank.features import FeatureSpace

    corpus = [PaperText(key=f"p{i}", title=f"Title {i} retrieval", abstract=t, authors=["Ann Lee"])
              for i, t in enumerate(TEXTS * 3)]
    space = FeatureSpace.fit(corpus)
    blob = pickle.dumps(space)
    back = pickle.loads(blob)
    assert np.array_equal(back.idf, space.idf) and np.array_equal(back.bm25_idf, space.bm25_idf)
    assert len(blob) < space.idf.nbytes / 4
    assert abs(back.transform(corpus) - space.transform(corpus)).max() == 0


def test_a_token_hashing_to_int32_min_lands_in_scikit_learns_column(monkeypatch):
    class Murmur:           # no short token is known to hash to INT32_MIN: stand one in
        @staticmethod
        def hash(token, seed=0, signed=True):
            return -2147483648 if token == "edge" else 12345

    monkeypatch.setattr(hashing, "mmh3", Murmur)
    n = 1000                 # not a power of two, where the special case matters
    assert hashing.columns(["edge", "other"], n).tolist() == [(2147483647 - (n - 1)) % n, 12345 % n]
