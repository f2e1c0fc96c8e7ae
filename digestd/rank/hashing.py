"""Tokens -> hashed count rows, and the English stop list: the parts of scikit-learn's
``HashingVectorizer`` the ranker uses, without importing scikit-learn.

Importing scikit-learn costs about a second and a half (it pulls in scipy.stats), which was most
of a one-off ``digest USER``. The hash is the same MurmurHash3 (x86, 32-bit, seed 0, on UTF-8)
through ``mmh3``, and the column the same ``abs(h) % n_features``, so every hashed column, stored
profile and fitted space stays where scikit-learn put it (tests/test_hashing.py checks this).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain

import mmh3
import numpy as np
import scipy.sparse as sp

# The English stop list of the Glasgow Information Retrieval Group, as scikit-learn ships it
# (``sklearn.feature_extraction.text.ENGLISH_STOP_WORDS``, BSD-3-Clause).
ENGLISH_STOP_WORDS = frozenset("""
a about above across after afterwards again against all almost alone along already also although
always am among amongst amoungst amount an and another any anyhow anyone anything anyway anywhere
are around as at back be became because become becomes becoming been before beforehand behind being
below beside besides between beyond bill both bottom but by call can cannot cant co con could
couldnt cry de describe detail do done down due during each eg eight either eleven else elsewhere
empty enough etc even ever every everyone everything everywhere except few fifteen fifty fill find
fire first five for former formerly forty found four from front full further get give go had has
hasnt have he hence her here hereafter hereby herein hereupon hers herself him himself his how
however hundred i ie if in inc indeed interest into is it its itself keep last latter latterly least
less ltd made many may me meanwhile might mill mine more moreover most mostly move much must my
myself name namely neither never nevertheless next nine no nobody none noone nor not nothing now
nowhere of off often on once one only onto or other others otherwise our ours ourselves out over own
part per perhaps please put rather re same see seem seemed seeming seems serious several she should
show side since sincere six sixty so some somehow someone something sometime sometimes somewhere
still such system take ten than that the their them themselves then thence there thereafter thereby
therefore therein thereupon these they thick thin third this those though three through throughout
thru thus to together too top toward towards twelve twenty two un under until up upon us very via
was we well were what whatever when whence whenever where whereafter whereas whereby wherein
whereupon wherever whether which while whither who whoever whole whom whose why will with within
without would yet you your yours yourself yourselves
""".split())

_INT32_MIN = -2147483648


def columns(tokens: Sequence[str], n_features: int) -> np.ndarray:
    """Each token's hashed column, as int32. MurmurHash3 runs in C over the whole list (``map``
    with mmh3's defaults: seed 0, signed): faster than a Python loop, and faster even than a
    per-process dict of columns already hashed, which a fresh process would have to fill anyway."""
    h = np.fromiter(map(mmh3.hash, tokens), dtype=np.int64, count=len(tokens))
    cols = np.abs(h) % n_features
    # scikit-learn's special case: abs() of INT32_MIN overflows in its C code.
    cols[h == _INT32_MIN] = (2147483647 - (n_features - 1)) % n_features
    return cols.astype(np.int32)


def hashed_counts(docs: Iterable[Sequence[str]], n_features: int, weight: float = 1.0) -> sp.csr_matrix:
    """One row per document: how often each token's hashed column occurs, times ``weight``."""
    docs = docs if isinstance(docs, list) else list(docs)
    indices = columns(list(chain.from_iterable(docs)), n_features)
    indptr = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, docs), dtype=np.int64, count=len(docs)), out=indptr[1:])
    m = sp.csr_matrix((np.full(len(indices), weight, dtype=np.float64), indices, indptr),
                      shape=(len(docs), n_features))
    m.sum_duplicates()
    return m


def unit_rows(m):
    """Rows scaled to unit length (zero rows stay zero), sparse or dense: scikit-learn's
    ``normalize`` without its input checks, which cost more than the arithmetic on a few rows."""
    if sp.issparse(m):
        m = sp.csr_matrix(m)
        lengths = np.diff(m.indptr)
        sq = np.zeros(m.shape[0])
        if m.nnz:
            nonempty = lengths > 0
            sq[nonempty] = np.add.reduceat(m.data * m.data, m.indptr[:-1][nonempty])
        norm = np.sqrt(sq)
        m.data /= np.repeat(np.where(norm > 0, norm, 1.0), lengths)
        return m
    norm = np.linalg.norm(m, axis=1)
    return m / np.where(norm > 0, norm, 1.0)[:, None]
