"""Each paper (and each free text) through the sentence encoder at most once.

Encoding is the slow step (tens of milliseconds per abstract), so ``PaperEncoder`` encodes each
paper once: an in-memory memo first, then a ``VectorCache`` the caller provides (the database in the
daemon, files under ``~/.cache/digestd`` in ``digestd eval``), then the model for what is missing.
Free text (a reader's keywords) goes the same way through a ``TextVectorCache``, keyed by the
text's hash alone. Pure apart from the caller's caches: they are the only I/O, and they are injected.
"""
from __future__ import annotations

import contextlib
import hashlib
from typing import Callable, ContextManager, Iterable, Protocol, Sequence

import numpy as np

from ..models import PaperText
from .embeddings import MODEL_NAME, TextEncoder, load_embedder, log
from .texts import paper_text_plain


def text_hash(text: str) -> str:
    """Cache keys carry this: a paper whose abstract is filled in later is encoded again."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


CacheKey = tuple[str, str]          # (paper key, text_hash of the text the model reads)


class VectorCache(Protocol):
    """Vectors of one model, kept by the caller. ``load`` returns only what it holds."""

    def load(self, keys: Sequence[CacheKey]) -> dict[CacheKey, np.ndarray]: ...

    def save(self, vectors: dict[CacheKey, np.ndarray]) -> None: ...


class TextVectorCache(Protocol):
    """Vectors of free text for one model, kept by the caller and keyed by ``text_hash`` of the
    exact text: ``load`` and ``stored`` answer only for what it holds."""

    def load(self, hashes: Sequence[str]) -> dict[str, np.ndarray]: ...

    def stored(self, hashes: Sequence[str]) -> set[str]: ...

    def save(self, vectors: dict[str, np.ndarray]) -> None: ...


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
                 text_cache: TextVectorCache | None = None, progress: Progress | None = None, chunk: int = 256,
                 memo_limit: int = 50_000) -> None:
        self.model = model if model is not None else load_embedder()
        self.cache = cache
        self.text_cache = text_cache
        self.progress = progress or log_progress
        self.chunk = chunk
        self.memo_limit = memo_limit
        self._memo: dict[CacheKey, np.ndarray] = {}
        self.encoded = 0                  # papers the model encoded
        self.from_cache = 0               # papers read back from ``cache``
        self.texts_encoded = 0            # free texts the model encoded
        self.texts_from_cache = 0         # free texts read back from ``text_cache``

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
        text_of = dict(zip(keys, texts))
        out, loaded = self._vectors(keys, self.cache.load if self.cache is not None else None,
                                    lambda missing: self._encode(missing, text_of))
        self.from_cache += loaded
        return out

    def texts(self, texts: Iterable[str]) -> np.ndarray:
        """Free text (a reader's keywords; never the sentences of abstracts, see ``dense_text_lexical``):
        the in-memory memo first, then ``text_cache``, then the model for what neither holds."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim))
        keys = [("", text_hash(t)) for t in texts]
        text_of = dict(zip(keys, texts))
        load = None
        if self.text_cache is not None:
            def load(missing: list[CacheKey]) -> dict[CacheKey, np.ndarray]:
                return {("", h): v for h, v in self.text_cache.load([h for _, h in missing]).items()}
        out, loaded = self._vectors(keys, load, lambda missing: self._encode_texts({h: text_of[("", h)]
                                                                                    for _, h in missing}))
        self.texts_from_cache += loaded
        return out

    def _vectors(self, keys: list[CacheKey], load, encode) -> tuple[np.ndarray, int]:
        """The vectors of ``keys``, in order, as float64: the in-memory memo first, then ``load``
        (a cache's, or None), then ``encode`` for what neither holds; and how many the cache gave."""
        found = {k: self._memo[k] for k in keys if k in self._memo}
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        loaded = 0
        if missing and load is not None:
            got = load(missing)
            loaded = len(got)
            found.update({k: _as_f32(v) for k, v in got.items()})
            missing = [k for k in missing if k not in found]
        if missing:
            found.update(encode(missing))
        self._remember(found)
        return np.vstack([found[k] for k in keys]).astype(np.float64), loaded

    def keep_texts(self, texts: Iterable[str]) -> int:
        """Encode, in one batch, the texts ``text_cache`` holds no vector of, and keep them there;
        returns how many. Nothing is memoised: they are for a later pass, which reads them back."""
        todo = {text_hash(t): t for t in texts}
        if self.text_cache is None or not todo:
            return 0
        stored = self.text_cache.stored(list(todo))
        todo = {h: t for h, t in todo.items() if h not in stored}
        if todo:
            self._encode_texts(todo)
        return len(todo)

    def _encode_texts(self, todo: dict[str, str]) -> dict[CacheKey, np.ndarray]:
        """text hash -> text, through the model in one call (it batches by tokens), kept at once."""
        got = dict(zip(todo, _as_f32(self.model.encode(list(todo.values())))))
        if self.text_cache is not None:
            self.text_cache.save(got)
        self.texts_encoded += len(got)
        return {("", h): v for h, v in got.items()}

    def release_model(self) -> bool:
        """Let the model's runtime go until the next encode (see ``Embedder.release``); whether it held one."""
        release = getattr(self.model, "release", None)
        return bool(release()) if release is not None else False

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
