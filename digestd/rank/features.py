"""Text -> vectors. Pure: data in, matrices out.

Two representations live in one ``FeatureSpace``:

* ``sparse``: TF-IDF over hashed word unigrams + bigrams of title + abstract, plus author tokens.
  Words are folded to their singular ("proteins" -> "protein"): with five liked papers every
  shared word counts, and a plural should not hide one.
  Hashing (not a fitted vocabulary) keeps the columns stable as the corpus grows: a paper
  vectorised today and one vectorised next month land in the same space, so a stored
  profile never has to be re-mapped. Only the IDF weights come from the corpus.
* ``dense``: a low-rank "topic" projection (LSA, truncated SVD of the corpus TF-IDF). With five
  liked papers, exact word overlap is too sparse a signal; LSA lets "protein structure" and
  "folding" meet. The projection reads BM25-weighted counts (saturating term frequency, length
  normalised), measured better than sublinear TF-IDF for it on citeulike-dev (see README).
  The ``embeddings`` backend joins sentence embeddings to it.

Both are L2-normalised so a dot product is a cosine.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..models import PaperText
from .hashing import ENGLISH_STOP_WORDS, hashed_counts
from .hashing import unit_rows
from .svd import randomized_svd
from .texts import paper_text_plain  # noqa: F401  (re-exported: the encoder's text of a paper)

N_FEATURES = 2 ** 20
MAX_TOPIC_TERMS = 20_000      # measured: beyond the 20k most frequent terms LSA gains nothing, costs 2x
AUTHOR_WEIGHT = 0.5          # authors help but must not drown the words
_TEX = re.compile(r"\\[a-zA-Z]+|[{}$\\^_~]")
_WORD = re.compile(r"[a-z][a-z0-9\-]+[a-z0-9]|[a-z]{2}")
# Words every abstract uses; the sklearn list misses these academic fillers, and they carry no topic.
_EXTRA_STOP = {
    "paper", "propose", "proposed", "results", "result", "approach", "method", "methods", "using",
    "based", "show", "shows", "new", "novel", "present", "study", "used", "use", "data", "work",
    "also", "however", "well", "can", "may", "different", "two", "one", "three", "first", "high",
    "large", "problem", "problems", "demonstrate", "provide", "recent", "previous", "significant",
    "significantly", "number", "set", "model", "models", "analysis", "paper", "abstract", "including",
    "available", "important", "known", "often", "many", "within", "via", "thus", "et", "al",
}
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS | _EXTRA_STOP)
BM25_K1 = 1.2                # the textbook values; measured flat between 0.9 and 2.0 on citeulike-dev
BM25_B = 0.75
# Words ending in "s" that are not plurals (or whose singular we would spell wrong).
_NOT_PLURAL = frozenset({
    "species", "series", "analysis", "basis", "bias", "virus", "status", "process", "access", "class",
    "across", "various", "previous", "numerous", "always", "perhaps", "thus", "less", "unless", "news",
    "physics", "genomics", "proteomics", "dynamics", "statistics", "mathematics", "economics",
    "ethics", "linguistics", "bioinformatics", "metabolomics", "transcriptomics", "genetics",
    "electronics", "mechanics", "robotics", "graphics", "semantics", "pragmatics", "kinetics",
    "gas", "atlas", "whereas", "alias", "canvas", "pancreas", "chaos", "cosmos", "ethos",
})


@functools.lru_cache(maxsize=1 << 18)     # a word recurs in thousands of papers; folding it once is 2x faster tokenising
def singular(word: str) -> str:
    """A light, predictable plural folding ("studies" -> "study", "approaches" -> "approach").

    Not a full stemmer: Porter's "organization" -> "organ" merges topics a reader tells apart,
    and its stems read badly in the "terms that matched" we show. Plurals carry no topic."""
    if len(word) <= 3 or not word.endswith("s") or word in _NOT_PLURAL or "-" in word[-3:]:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if word.endswith(("ss", "us", "is")):
        return word
    return word[:-1]


def normalise_text(text: str) -> str:
    """Lowercase ASCII without TeX markup, so "Schr\\"odinger" and "Schrödinger" tokenise alike."""
    text = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode()
    return _TEX.sub(" ", text).lower()


def tokenize(text: str) -> list[str]:
    """Content words, singular: no stop words, no pure numbers; hyphenated terms kept whole."""
    return [singular(w) for w in _WORD.findall(normalise_text(text)) if w not in STOP_WORDS]


def _analyzer(text: str) -> list[str]:
    words = tokenize(text)
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


def _author_token(name: str) -> str:
    """"Jörg K. Müller" and "J. Muller" -> "author:muller_j": tolerant of initials and accents."""
    parts = [p for p in re.split(r"[\s.]+", normalise_text(name)) if p]
    if not parts:
        return ""
    return f"author:{parts[-1]}_{parts[0][0]}"


def paper_text(p: PaperText) -> str:
    # The title is the author's own summary: counting it twice is a cheap, well-known boost.
    return f"{p.title}. {p.title}. {p.abstract or ''}"


@dataclass
class FeatureSpace:
    """Fitted text representation. Picklable; ``fit`` never mutates, it returns a new space."""

    idf: np.ndarray | None = None                 # per hashed column; 1.0 for unseen columns' default
    default_idf: float = 1.0                      # IDF of a term the corpus never saw (rare => high)
    n_docs: int = 0
    svd_cols: np.ndarray | None = None            # hashed columns the topic projection reads
    svd_components: np.ndarray | None = None      # (len(svd_cols), k), float32
    bm25_idf: np.ndarray | None = None            # per hashed column, for the topic projection's input
    avg_len: float = 1.0                          # mean term count of a corpus paper (BM25 length norm)
    backend: str = "tfidf"
    n_topics: int = 200
    # embeddings backend: a rank.encode_once.PaperEncoder; the caller injects one backed by its cache
    encoder: object | None = field(default=None, repr=False, compare=False)

    # -- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, corpus: Sequence[PaperText], *, backend: str = "tfidf", n_topics: int = 200,
            seed: int = 0, encoder: object | None = None) -> "FeatureSpace":
        """IDF (and the topic projection) from ``corpus``: every paper text the caller knows.
        ``encoder`` (embeddings backend): how papers become vectors; default: the model, uncached."""
        if backend not in ("tfidf", "embeddings"):
            raise ValueError(f"unknown ranking backend {backend!r} (known: tfidf, embeddings)")
        space = cls(backend=backend, n_topics=n_topics, encoder=encoder)
        tf = space._term_counts(corpus)
        n = tf.shape[0]
        df = np.bincount(tf.indices, minlength=N_FEATURES).astype(np.float64)
        space.n_docs = n
        space.idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
        space.default_idf = float(np.log(1.0 + n) + 1.0)
        # Both backends: the embeddings one joins these topics to its sentence vectors.
        # Terms seen once cannot link two papers, so the topic model reads only terms with df >= 2
        # (capped to the most frequent, so the pickled space stays a few MB as the corpus grows).
        space.bm25_idf = np.log1p((n - df + 0.5) / (df + 0.5))
        space.avg_len = float(tf.sum() / max(n, 1))
        cols = np.flatnonzero(df >= 2)
        if len(cols) > MAX_TOPIC_TERMS:
            cols = np.sort(cols[np.argsort(-df[cols], kind="stable")[:MAX_TOPIC_TERMS]])
        space.svd_cols = cols
        x = space._topic_input(tf)
        k = min(n_topics, min(x.shape) - 1)
        if n > 10 and k >= 2:
            # Three power iterations: measured enough for the topics' ranking (scikit-learn's own
            # TruncatedSVD default, which this basis equals; see rank/svd.py).
            _u, _s, vt = randomized_svd(x, k, n_iter=3, seed=seed)
            space.svd_components = vt.T.astype(np.float32)
        else:
            space.svd_cols = None
        return space

    # -- transforming ----------------------------------------------------------------------
    def _term_counts(self, papers: Sequence[PaperText]) -> sp.csr_matrix:
        words = hashed_counts((_analyzer(paper_text(p)) for p in papers), N_FEATURES)
        if any(p.authors for p in papers):
            # Authors hash into the same columns space under an "author:" prefix no word can take.
            authors = hashed_counts(([t for t in (_author_token(a) for a in (p.authors or [])) if t] for p in papers),
                                    N_FEATURES, AUTHOR_WEIGHT)
            words = words + authors
        return sp.csr_matrix(words)

    def _weight(self, tf: sp.csr_matrix) -> sp.csr_matrix:
        x = tf.copy()
        # sublinear tf: the 5th "network" in an abstract says less than the 1st
        x.data = np.where(x.data >= 1.0, 1.0 + np.log(np.maximum(x.data, 1.0)), x.data)
        if self.idf is not None:
            x.data = x.data * self.idf[x.indices]
        return unit_rows(x)

    def transform(self, papers: Sequence[PaperText]) -> sp.csr_matrix:
        """TF-IDF rows, L2-normalised, one per paper (in order)."""
        if not papers:
            return sp.csr_matrix((0, N_FEATURES))
        return self._weight(self._term_counts(papers))

    def transform_text(self, texts: Sequence[str], counts: sp.csr_matrix | None = None) -> sp.csr_matrix:
        """Free text (keywords, sentences) into the same TF-IDF space; ``counts``: their
        ``text_counts``, when the caller has them already."""
        if not texts:
            return sp.csr_matrix((0, N_FEATURES))
        return self._weight(counts if counts is not None else self.text_counts(texts))

    def dense(self, papers: Sequence[PaperText], counts: sp.csr_matrix | None = None) -> np.ndarray:
        """Topic vectors (LSA; joined to sentence embeddings with that backend), L2-normalised."""
        if not papers:
            return np.zeros((0, space_dim(self)))
        topics = self.topics(counts if counts is not None else self._term_counts(papers))
        if self.backend == "embeddings":
            return _join(self._paper_encoder().papers(papers), topics)
        return topics

    def _topic_input(self, tf: sp.csr_matrix) -> sp.csr_matrix:
        """BM25-weighted counts over the topic columns, L2-normalised: the projection's input."""
        pos = self.__dict__.get("_colpos")
        if pos is None:
            pos = np.full(N_FEATURES, -1, dtype=np.int64)
            pos[self.svd_cols] = np.arange(len(self.svd_cols))
            self.__dict__["_colpos"] = pos
        tf = sp.csr_matrix(tf)
        lengths = np.asarray(tf.sum(axis=1)).ravel()
        row_of = np.repeat(np.arange(tf.shape[0]), np.diff(tf.indptr))
        norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths[row_of] / self.avg_len)
        data = tf.data * (BM25_K1 + 1) / (tf.data + norm) * self.bm25_idf[tf.indices]
        # Column-indexing a 2^20-column matrix is slow; remap the few used columns instead.
        where = pos[tf.indices]
        keep = where >= 0
        x = sp.csr_matrix((data[keep], (row_of[keep], where[keep])), shape=(tf.shape[0], len(self.svd_cols)))
        return unit_rows(x)

    def topics(self, counts: sp.csr_matrix) -> np.ndarray:
        """Raw term counts (``_term_counts`` / ``text_counts``) -> L2-normalised topic vectors."""
        if self.svd_components is None:
            return np.zeros((counts.shape[0], 1))
        x = self._topic_input(counts)
        comps = self.svd_components
        if x.nnz < comps.shape[0]:
            # A few papers: only the component rows they use. scipy would otherwise convert all
            # of them to float64 on every call, most of the cost of featurising a user's votes.
            used, col = np.unique(x.indices, return_inverse=True)
            x = sp.csr_matrix((x.data, col, x.indptr), shape=(x.shape[0], len(used)))
            comps = comps[used].astype(np.float64)
        return unit_rows(np.asarray(x @ comps, dtype=np.float64))

    def text_counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        return hashed_counts((_analyzer(t) for t in texts), N_FEATURES)

    def dense_text(self, texts: Sequence[str]) -> np.ndarray:
        topics = self.topics(self.text_counts(texts))
        if self.backend == "embeddings":
            return _join(self._paper_encoder().texts(texts), topics)
        return topics

    def dense_text_lexical(self, texts: Sequence[str], counts: sp.csr_matrix | None = None) -> np.ndarray:
        """``dense_text`` from this corpus's vocabulary alone: with the sentence encoder, its part of
        the vector is left at zero. Highlights weigh every sentence of every picked paper on every
        pass; running the encoder on them cost more than the whole ranking (111 s of a 1,000-reader
        pass), while the topic part still says which sentence carries the reader's words."""
        topics = self.topics(counts if counts is not None else self.text_counts(texts))
        if self.backend == "embeddings":
            return np.hstack([np.zeros((len(texts), space_dim(self) - topics.shape[1])), topics])
        return topics

    def _paper_encoder(self):
        if self.encoder is None:
            from .encode_once import PaperEncoder  # lazy: onnxruntime only for this backend
            self.encoder = PaperEncoder()
        return self.encoder

    def __getstate__(self):
        # The encoder (a model, a database handle) is injected again by the caller, never pickled.
        state = self.__dict__.copy()
        state["encoder"] = None
        state.pop("_colpos", None)         # a lookup table rebuilt on demand
        # Most of the 2^20 hashed columns were never seen and share one IDF: keep only the seen ones,
        # so the stored space is a tenth the size and loads in milliseconds instead of a third of a second.
        idf, bm25 = state.pop("idf"), state.pop("bm25_idf")
        if idf is not None and bm25 is not None:
            seen = np.flatnonzero(idf != self.default_idf).astype(np.int32)
            unseen_bm25 = float(bm25[np.flatnonzero(idf == self.default_idf)[0]]) if len(seen) < len(idf) else 0.0
            state["_seen_idf"] = (seen, idf[seen], bm25[seen], unseen_bm25, len(idf))
        else:
            state["idf"], state["bm25_idf"] = idf, bm25
        return state

    def __setstate__(self, state):
        seen_idf = state.pop("_seen_idf", None)
        if seen_idf is not None:
            seen, idf_seen, bm25_seen, unseen_bm25, n_cols = seen_idf
            state["idf"] = np.full(n_cols, state["default_idf"])
            state["idf"][seen] = idf_seen
            state["bm25_idf"] = np.full(n_cols, unseen_bm25)
            state["bm25_idf"][seen] = bm25_seen
        self.__dict__.update(state)

    def terms(self, text: str) -> list[str]:
        """Readable unigram terms of ``text`` (for reasons shown to a person)."""
        return tokenize(text)

    def term_idf(self, terms: Sequence[str]) -> np.ndarray:
        """IDF of each (already tokenised) term, in one hashing pass."""
        if self.idf is None or not terms:
            return np.full(len(terms), self.default_idf)
        m = hashed_counts(([t] for t in terms), N_FEATURES)  # same hash as the word analyzer
        out = np.full(len(terms), self.default_idf)
        has = np.diff(m.indptr) > 0
        out[has] = self.idf[m.indices[m.indptr[:-1][has]]]
        return out


def compact_dense(*mats: sp.csr_matrix) -> list[np.ndarray]:
    """Small sparse matrices -> dense over the columns they use (for anchor-sized computations)."""
    cols = np.unique(np.concatenate([m.indices for m in mats])) if mats else np.zeros(0, int)
    out = []
    for m in mats:
        d = np.zeros((m.shape[0], len(cols)))
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        d[rows, np.searchsorted(cols, m.indices)] = m.data
        out.append(d)
    return out


@dataclass
class Featurized:
    """Papers with their vectors, computed once and shared: a day's candidates are scored for
    every user, and the replay evaluation scores the same corpus for hundreds of users."""

    papers: list[PaperText]
    sparse: sp.csr_matrix
    dense: np.ndarray

    def __len__(self) -> int:
        return len(self.papers)

    def sparse_dot(self, rows: sp.csr_matrix) -> np.ndarray:
        """``self.sparse @ rows.T`` as a dense (len(self), len(rows)) array.

        Written as rows @ (pool transposed, memoised as CSR) because scipy would otherwise convert a
        2^20-column matrix on every call, which dominated scoring time."""
        if rows.shape[0] == 0 or len(self) == 0:
            return np.zeros((len(self), rows.shape[0]))
        t = self.__dict__.get("_t")
        if t is None:
            t = self.__dict__["_t"] = self.sparse.T.tocsr()
        return (rows @ t).toarray().T

    def subset(self, idx: Sequence[int] | np.ndarray) -> "Featurized":
        idx = np.asarray(idx, dtype=int)
        return Featurized([self.papers[i] for i in idx], self.sparse[idx], self.dense[idx])


def featurize(space: FeatureSpace, papers: "Sequence[PaperText] | Featurized") -> Featurized:
    if isinstance(papers, Featurized):
        return papers
    papers = list(papers)
    if not papers:
        return Featurized([], sp.csr_matrix((0, N_FEATURES)), np.zeros((0, space_dim(space))))
    counts = space._term_counts(papers)
    return Featurized(papers, space._weight(counts), space.dense(papers, counts))


def space_dim(space: FeatureSpace) -> int:
    topics = space.svd_components.shape[1] if space.svd_components is not None else 1
    if space.backend == "embeddings":
        return space._paper_encoder().dim + topics
    return topics


# Of the joined dense cosine, the sentence embedding's part (the rest: the topics'). citeulike-dev K=5
# recall@20 with EMBEDDINGS_PARAMS' graph: 0.2556 at 0.3, 0.2633 at 0.5, 0.2741 at 0.7, 0.2784 at 0.8,
# 0.2724 at 0.9 (before the graph knobs were retuned with it; chosen on half A, held on B).
EMBEDDING_SHARE = 0.8


def _join(embeddings: np.ndarray, topics: np.ndarray) -> np.ndarray:
    """Both views in one unit vector, so one dot product is the weighted mean of the two cosines
    (``EMBEDDING_SHARE`` for the embeddings): the model knows language, the topics know this
    corpus's vocabulary."""
    e, t = unit_rows(embeddings), unit_rows(topics)
    # Renormalised: a paper without topics (a tiny corpus) still has a unit vector.
    return unit_rows(np.hstack([np.sqrt(EMBEDDING_SHARE) * e, np.sqrt(1.0 - EMBEDDING_SHARE) * t]))
