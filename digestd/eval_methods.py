"""The methods `digestd eval` compares: the shipped ranker and the baselines it is measured against.

  digestd         the shipped ranker (default backend: the ONNX sentence encoder where it runs): rank.fit + rank.calibrate_readers, then rank.score_readers and
                  rank.select_readers over many users at once (explore off, no threshold cut)
  random          seeded shuffle
  tfidf_centroid  cosine to the mean TF-IDF vector of the liked papers
  asl_svm         arxiv-sanity-lite: TF-IDF words+bigrams, LinearSVC(C=0.01, balanced), liked vs all else
  digestd_tfidf   the shipped ranker with the tfidf backend (words and topics, no sentence encoder)
  zotero_emb      zotero-arxiv-daily: all-MiniLM-L6-v2 cosine to liked papers, newer likes weighted more
                  (computed with the ONNX encoder digestd ships; only where it can run)
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path
from typing import Callable, Sequence, TextIO

import numpy as np

from .eval_protocol import UserCase
from .models import PaperText, ProfileInput, Vote

DIGESTD_BATCH = 500             # users scored in one set of products


class Context:
    """What every method may see: the paper texts (all users share them; no ratings).

    ``bar(label, total)``: a progress display for slow set-up steps (embedding); none by default."""

    def __init__(self, papers: list[PaperText], backend: str | None, err: TextIO, *,
                 cache_dir: str | Path | None = None, embedder=None, progress: bool = True,
                 bar: Callable[[str, int], contextlib.AbstractContextManager] | None = None):
        self.papers = papers
        self.index = {p.key: i for i, p in enumerate(papers)}
        self.backend = backend
        self.err = err
        self.cache_dir = cache_dir
        self.embedder = embedder
        self.progress = progress
        self.bar = bar or (lambda label, total: contextlib.nullcontext(lambda n=1: None))
        self._cache: dict[object, object] = {}

    def once(self, name: object, build: Callable[[], object]) -> object:
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]

    def encoder(self):
        """One PaperEncoder for every method that embeds (the digestd embeddings backend and
        zotero_emb read the same text), kept on disk so the next run encodes nothing."""
        def build():
            from .rank.embeddings import load_embedder
            from .rank.encode_once import PaperEncoder
            model = self.embedder if self.embedder is not None else load_embedder()
            cache = DiskVectors(Path(self.cache_dir), model.name) if self.cache_dir else None
            return PaperEncoder(model, cache, progress=lambda total: self.bar("embedding", total))
        return self.once("encoder", build)


def default_cache_dir() -> Path:
    from .rank.model_check import cache_dir

    return cache_dir()


class DiskVectors:
    """The eval's VectorCache: one file per model, ``<cache_dir>/embeddings/<model>.npz``, keyed by the
    hash of the text alone (a data set's paper ids mean nothing elsewhere; the text does)."""

    def __init__(self, root: Path, model: str) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
        self.path = root / "embeddings" / f"{safe}.npz"
        self._vectors: dict[bytes, np.ndarray] | None = None

    def _all(self) -> dict[bytes, np.ndarray]:
        if self._vectors is None:
            self._vectors = {}
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    self._vectors = {h.tobytes(): v for h, v in zip(z["hashes"], z["vectors"])}
            except FileNotFoundError:
                pass
            except Exception as e:            # a truncated file is only a cache: start over
                print(f"digestd eval: ignoring unreadable embedding cache {self.path}: {e}", file=sys.stderr)
        return self._vectors

    def load(self, keys):
        have = self._all()
        out = {}
        for k in keys:
            v = have.get(bytes.fromhex(k[1]))
            if v is not None:
                out[k] = v
        return out

    def save(self, vectors) -> None:
        have = self._all()
        for (_key, h), v in vectors.items():
            have[bytes.fromhex(h)] = np.asarray(v, dtype=np.float32)
        if not have:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:            # np.savez would append .npz to a path
            # Hashes as raw uint8 rows: numpy's bytes dtype would drop a digest's trailing zero bytes.
            hashes = np.frombuffer(b"".join(have), dtype=np.uint8).reshape(len(have), -1)
            np.savez(fh, hashes=hashes, vectors=np.vstack(list(have.values())))
        os.replace(tmp, self.path)             # atomic: a killed run never leaves half a file


def _top(scores: np.ndarray, keys: list[str], exclude_idx: set[int], n: int) -> list[str]:
    s = scores.astype(float).copy()
    if exclude_idx:
        s[list(exclude_idx)] = -np.inf
    top = np.argsort(-s, kind="stable")[: n + len(exclude_idx)]
    return [keys[i] for i in top if i not in exclude_idx][:n]


def method_random(ctx: Context, case: UserCase, n: int) -> list[str]:
    seed = int(hashlib.sha256(case.user.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    cands = [p.key for p in ctx.papers if p.key not in case.train_keys]
    return [cands[i] for i in rng.permutation(len(cands))[:n]]


def _plain_tfidf(ctx: Context):
    from .baselines import Tfidf
    vec = Tfidf(sublinear_tf=True, min_df=1)       # TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=1)
    return vec.fit_transform([f"{p.title}. {p.abstract}" for p in ctx.papers])


def method_tfidf_centroid(ctx: Context, case: UserCase, n: int) -> list[str]:
    x = ctx.once("plain_tfidf", lambda: _plain_tfidf(ctx))
    liked = [ctx.index[r.paper] for r in case.train_pos]
    centroid = np.asarray(x[liked].mean(axis=0)).ravel()
    scores = x @ centroid
    return _top(scores, [p.key for p in ctx.papers], {ctx.index[k] for k in case.train_keys}, n)


def _asl_tfidf(ctx: Context):
    from .baselines import Tfidf
    # Exactly arxiv-sanity-lite's compute.py settings (its TfidfVectorizer: lowercase, English stop
    # words, l2 norm, smoothed IDF, as Tfidf always does).
    vec = Tfidf(strip_accents=True, token_pattern=r"(?u)\b[a-zA-Z_][a-zA-Z0-9_]+\b", ngram_max=2,
                max_features=20000, sublinear_tf=True, max_df=0.1, min_df=5)
    return vec.fit_transform([f"{p.title}. {p.abstract}" for p in ctx.papers])


def method_asl_svm(ctx: Context, case: UserCase, n: int) -> list[str]:
    from .baselines import linear_svm
    x = ctx.once("asl_tfidf", lambda: _asl_tfidf(ctx))
    y = np.zeros(len(ctx.papers))
    y[[ctx.index[r.paper] for r in case.train_pos]] = 1
    # LinearSVC(class_weight="balanced", C=0.01) solved to its optimum (arxiv-sanity-lite's SVM).
    scores = linear_svm(x, y, c=0.01)
    return _top(scores, [p.key for p in ctx.papers], {ctx.index[k] for k in case.train_keys}, n)


def _embeddings(ctx: Context) -> np.ndarray:
    return ctx.encoder().papers(ctx.papers)


def method_zotero_emb(ctx: Context, case: UserCase, n: int) -> list[str]:
    e = ctx.once("embeddings", lambda: _embeddings(ctx))
    # zotero-arxiv-daily: corpus sorted newest first, weight 1 / (1 + log10(rank + 1)), normalised.
    liked = sorted(case.train_pos, key=lambda r: (r.at, r.line), reverse=True)
    w = 1.0 / (1.0 + np.log10(np.arange(len(liked)) + 1))
    w /= w.sum()
    sims = e @ e[[ctx.index[r.paper] for r in liked]].T
    scores = sims @ w
    return _top(scores, [p.key for p in ctx.papers], {ctx.index[k] for k in case.train_keys}, n)


def _digestd_setup(ctx: Context, params, backend: str | None):
    """The space and the pool of every paper, for one backend and set of params.

    The two backends fit the same IDF and topic projection from the same term counts (the
    embeddings one only joins sentence vectors to the topics when featurising), so with both
    methods the counts, and the fit with its truncated SVD, are computed once and shared: a few
    seconds of every run, for the very same numbers."""
    import dataclasses

    from .rank import BACKENDS, DEFAULT_BACKEND, fit_space, prepare_pool
    from .rank.features import Featurized
    backend = backend or DEFAULT_BACKEND
    if backend not in BACKENDS:
        fit_space(ctx.papers, backend)          # the one "unknown ranking backend" error
    space = ctx.once("space", lambda: fit_space(ctx.papers, "tfidf"))
    if backend == "embeddings":
        space = dataclasses.replace(space, backend=backend, encoder=ctx.encoder())
    counts, sparse = ctx.once("counts", lambda: _counts(ctx, space))
    # What rank.featurize computes, from the shared counts.
    return space, prepare_pool(space, Featurized(list(ctx.papers), sparse, space.dense(ctx.papers, counts)), params)


def _counts(ctx: Context, space):
    counts = space._term_counts(ctx.papers)
    return counts, space._weight(counts)


def rank_digestd(ctx: Context, cases: Sequence[UserCase], n: int, params=None, *,
                 backend: str | None = None) -> list[list[str]]:
    """The shipped ranker for many users: each trained exactly as ``rank.train`` does (``fit``, then
    calibration on the background), then scored and selected together, as the daemon's pass does.

    In the daemon the background is the recent stream; here the stream is every paper text, and the
    candidates are exactly "every paper in P except the user's training papers" (an eligibility mask,
    as the daemon masks already-sent papers)."""
    from .rank import calibrate_readers, fit, params_for, score_readers, select_readers
    backend = backend or ctx.backend
    params = params or params_for(backend)
    space, pool = ctx.once(("digestd_pool", params, backend), lambda: _digestd_setup(ctx, params, backend))
    models = []
    for case in cases:
        votes = [Vote(ctx.papers[ctx.index[r.paper]], r.value, r.at) for r in case.train_pos + case.train_neg]
        now = max(r.at for r in case.train_pos)
        models.append(fit(ProfileInput(user_id=case.user, votes=votes), space, pool.feats, now, params=params))
    calibrate_readers(models, pool)
    eligible = np.ones((len(cases), pool.n), dtype=bool)
    for u, case in enumerate(cases):
        eligible[u, [pool.index[k] for k in case.train_keys if k in pool.index]] = False
    scores = score_readers(models, pool)
    b = len(cases)
    sels = select_readers(models, pool, scores, eligible, [n] * b, explore=[False] * b,
                          min_scores=[float("-inf")] * b, now=None, explain=False)
    return [[p.key for p in sel.picks] for sel in sels]


def method_digestd(ctx: Context, case: UserCase, n: int, params=None) -> list[str]:
    return rank_digestd(ctx, [case], n, params)[0]


def rank_digestd_tfidf(ctx: Context, cases: Sequence[UserCase], n: int, params=None) -> list[list[str]]:
    """The shipped ranker with the light backend (where onnxruntime cannot run)."""
    return rank_digestd(ctx, cases, n, params, backend="tfidf")


def method_digestd_tfidf(ctx: Context, case: UserCase, n: int, params=None) -> list[str]:
    return rank_digestd_tfidf(ctx, [case], n, params)[0]


# Methods that rank many users in one call (the rest are called user by user).
BATCH_METHODS: dict[str, Callable[..., list[list[str]]]] = {"digestd": rank_digestd,
                                                            "digestd_tfidf": rank_digestd_tfidf}

METHODS: dict[str, Callable[..., list[str]]] = {
    "digestd": method_digestd,
    "digestd_tfidf": method_digestd_tfidf,
    "random": method_random,
    "tfidf_centroid": method_tfidf_centroid,
    "asl_svm": method_asl_svm,
    "zotero_emb": method_zotero_emb,
}


