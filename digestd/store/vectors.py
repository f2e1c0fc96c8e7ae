"""Sentence embeddings of free text (readers' keywords), one row per model and text hash.

Papers' vectors live with the papers (``papers.PaperQueries``): a paper's text can change under
its key. A free text has no key but itself, so its hash is the key and a row never changes.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import sqlalchemy as sa

from .tables import TextEmbedding, dialect_insert

_CHUNK = 500       # hashes per IN (...) list
_ROWS = 200        # rows per INSERT: 4 parameters a row, under SQLite's old 999 limit


class TextVectorQueries:
    """Mixed into ``Store``, which provides ``engine``."""

    engine: sa.Engine

    def text_embeddings(self, model: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """text hash -> float32 vector, for the hashes that have one under ``model``."""
        t = TextEmbedding.__table__
        out: dict[str, np.ndarray] = {}
        with self.engine.connect() as c:
            for part in _chunks(hashes):
                q = sa.select(t.c.text_hash, t.c.dim, t.c.vector).where(t.c.model == model, t.c.text_hash.in_(part))
                for h, dim, blob in c.execute(q):
                    v = np.frombuffer(blob, dtype="<f4")
                    if len(v) == dim:
                        out[h] = v
        return out

    def stored_text_hashes(self, model: str, hashes: Iterable[str]) -> set[str]:
        """Which of ``hashes`` have a vector under ``model``, without reading the vectors."""
        t = TextEmbedding.__table__
        out: set[str] = set()
        with self.engine.connect() as c:
            for part in _chunks(hashes):
                out.update(c.execute(sa.select(t.c.text_hash).where(t.c.model == model, t.c.text_hash.in_(part)))
                           .scalars())
        return out

    def save_text_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        """Keep (text hash -> vector); a hash already kept stays as it is (the same text gives the
        same vector), so two processes storing one text at once both succeed."""
        rows = [{"model": model, "text_hash": h, "dim": int(len(v)), "vector": np.asarray(v, dtype="<f4").tobytes()}
                for h, v in vectors.items()]
        if not rows:
            return
        insert = dialect_insert(self.engine)
        with self.engine.begin() as c:
            for i in range(0, len(rows), _ROWS):
                c.execute(insert(TextEmbedding.__table__).values(rows[i:i + _ROWS])
                          .on_conflict_do_nothing(index_elements=["model", "text_hash"]))

    def text_embedding_cache(self, model: str) -> "TextEmbeddingCache":
        return TextEmbeddingCache(self, model)


class TextEmbeddingCache:
    """The database as the ``TextVectorCache`` of rank.encode_once.PaperEncoder, for one model."""

    def __init__(self, store: TextVectorQueries, model: str) -> None:
        self.store, self.model = store, model

    def load(self, hashes: list[str]) -> dict[str, np.ndarray]:
        return self.store.text_embeddings(self.model, hashes)

    def stored(self, hashes: list[str]) -> set[str]:
        return self.store.stored_text_hashes(self.model, hashes)

    def save(self, vectors: dict[str, np.ndarray]) -> None:
        self.store.save_text_embeddings(self.model, vectors)


def _chunks(hashes: Iterable[str]) -> Iterable[list[str]]:
    hashes = list(dict.fromkeys(hashes))
    for i in range(0, len(hashes), _CHUNK):
        yield hashes[i:i + _CHUNK]
