"""Trained models as bytes, and the fingerprint that says whether a stored one is still valid.

Pure: bytes and hashes; ``store`` keeps the bytes and ``pipeline.corpus.reader_models`` decides. A stored model is
reused only for exactly the inputs it was trained from (``fingerprint``):

* the user's votes (paper, value, time, and the paper's text: an abstract filled in later moves the
  vote's vector), seed papers with their text, keywords and authors;
* the ranking ``Params``;
* the feature space and the background it was fitted on (``space_identity``). A refitted space has
  new IDF weights and a new topic basis, so the vectors of a model trained in the old one mean
  nothing in it: every model is retrained once after a refit. ``pipeline.corpus.current_corpus`` refits only
  when a fifth of the background is new or the space is a week old, so between refits only users
  whose own input changed are retrained;
* the model format and the code that computes it (the ``rank`` package's source), so a release
  or a change to the ranking never scores with a model it did not train.

Votes age (``Params.half_life_days``) against the time of training, so a model is also refreshed
once it is ``MAX_AGE`` old. Ageing scales every vote by the same factor, so it only shifts votes
against seeds and keywords (fixed weight): by less than 3 % in a week.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import pickle
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import StoredModelError
from ..models import PaperText, ProfileInput
from .features import FeatureSpace, Featurized
from .pool import reader_rows, remember_row_keys
from .profile import DEFAULT_PARAMS, Params, UserModel

# Bump when UserModel changes shape or meaning in a way the source hash would not catch.
MODEL_FORMAT = 2       # 2: no interest centroids kept (UserModel.centroids computes them)
MAX_AGE = dt.timedelta(days=7)


@functools.cache
def code_identity() -> str:
    """Hash of the ranking code (this package's source) and the numeric libraries it runs on.

    A library is named here when its arithmetic is in a model: numpy and scipy (the topic SVD's
    LAPACK calls, the sparse products, the solvers). scikit-learn is not: no part of the ranker
    runs it any more (rank/svd.py fits the topics), so its presence or version changes no model."""
    import scipy

    h = hashlib.blake2b(digest_size=16)
    h.update(f"{MODEL_FORMAT}|{np.__version__}|{scipy.__version__}".encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _texts(papers: Sequence[PaperText]) -> list:
    return [[p.key, p.title, p.abstract or "", list(p.authors or [])] for p in papers]


def space_identity(space: FeatureSpace, background: Sequence[PaperText] | Featurized) -> str:
    """Identity of what a model's vectors live in: the fitted space itself (not just its inputs, so
    two processes that fitted different spaces never share models) and the background papers that
    soft negatives and calibration come from. Tens of milliseconds: compute once per refit."""
    papers = background.papers if isinstance(background, Featurized) else list(background)
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([space.backend, space.n_topics, space.n_docs, space.default_idf]).encode())
    for arr in (space.idf, space.svd_cols, space.svd_components):
        h.update(b"-" if arr is None else np.ascontiguousarray(arr).tobytes())
    if space.backend == "embeddings":
        from .embeddings import MODEL_PACKAGE
        h.update(MODEL_PACKAGE.encode())
    h.update(json.dumps(_texts(papers), ensure_ascii=False).encode())
    return h.hexdigest()


def fingerprint(profile: ProfileInput, space_id: str, params: Params = DEFAULT_PARAMS) -> str:
    """Changes exactly when a model trained for ``profile`` would differ (see the module docstring)."""
    votes = sorted(([v.paper.key, v.value, v.at.isoformat() if v.at else None, _paper_digest(v.paper)]
                    for v in profile.votes), key=lambda r: (r[0], r[2] or "", r[1]))
    doc = {
        "code": code_identity(),
        "space": space_id,
        "params": _params_doc(params),
        "user": profile.user_id,
        "keywords": list(profile.keywords),
        "authors": list(profile.authors),
        "seeds": _texts(profile.seed_papers),
        "votes": votes,
    }
    return hashlib.sha256(json.dumps(doc, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()


_DIGESTS: dict[tuple, str] = {}
_DIGESTS_LIMIT = 200_000


def _paper_digest(p: PaperText) -> str:
    """A voted paper's text, as a digest computed once per text: readers vote on the same recent
    papers, and encoding every vote's abstract again was most of a fingerprint's time (measured:
    0.6 ms a reader, a third of a cold pass's training)."""
    k = (p.key, p.title, p.abstract or "", tuple(p.authors or ()))
    d = _DIGESTS.get(k)
    if d is None:
        if len(_DIGESTS) >= _DIGESTS_LIMIT:
            _DIGESTS.clear()
        d = _DIGESTS[k] = hashlib.blake2b(json.dumps(_texts([p])[0], ensure_ascii=False).encode(),
                                          digest_size=16).hexdigest()
    return d


@functools.lru_cache(maxsize=16)
def _params_doc(params: Params) -> dict:
    return dataclasses.asdict(params)


def reusable(stored_fingerprint: str | None, trained_at: dt.datetime | None, want: str, now: dt.datetime) -> bool:
    """May a model stored with ``stored_fingerprint`` at ``trained_at`` serve a compose at ``now``?"""
    if stored_fingerprint != want or trained_at is None:
        return False
    if (trained_at.tzinfo is None) != (now.tzinfo is None):
        trained_at = trained_at.replace(tzinfo=now.tzinfo)
    return abs(now - trained_at) < MAX_AGE


def dumps(model: UserModel) -> bytes:
    """The model with its rows' content keys (``pool.reader_rows``, 16 bytes a row): hashing them
    again for every stored model took 2.5 s of a 10,000-reader warm pass.

    Not compressed: zlib saved a quarter of the bytes for ten times the time of the pickle
    (measured: 1.8 ms vs 0.18 ms a model)."""
    return pickle.dumps((model, *reader_rows(model)), protocol=pickle.HIGHEST_PROTOCOL)


def loads(blob: bytes, user_id: str | None = None) -> UserModel:
    """The model in ``blob``; ``StoredModelError`` when another version wrote it or it is damaged.
    Only digestd writes these blobs (into its own database), so unpickling them is safe."""
    try:
        # Earlier releases compressed the pickle; a pickle starts with its protocol opcode.
        model = pickle.loads(blob if blob[:1] == b"\x80" else zlib.decompress(blob))
        keys = None
        if isinstance(model, tuple) and len(model) == 3:
            model, *keys = model
    except Exception as e:  # UnpicklingError, zlib.error, AttributeError/ImportError for moved classes, ...
        raise StoredModelError(f"stored profile model cannot be read ({e.__class__.__name__}: {e})",
                               user=user_id) from e
    if not isinstance(model, UserModel) or (user_id is not None and model.user_id != user_id):
        raise StoredModelError(f"stored profile model is not this user's model ({type(model).__name__})", user=user_id)
    missing = [f.name for f in dataclasses.fields(UserModel) if not hasattr(model, f.name)]
    if missing:
        raise StoredModelError(f"stored profile model lacks {', '.join(missing)}", user=user_id)
    if keys is not None and [len(k) for k in keys] == [model.pos_sparse.shape[0], model.neg_sparse.shape[0]]:
        remember_row_keys(model, *keys)
    return model


def loads_many(blobs: Sequence[tuple[str, bytes]]) -> dict[str, UserModel | StoredModelError]:
    """``loads`` for a batch of (user id, blob). A blob that cannot be read maps to its ``StoredModelError``."""
    out: dict[str, UserModel | StoredModelError] = {}
    for uid, blob in blobs:
        try:
            out[uid] = loads(blob, uid)
        except StoredModelError as e:
            out[uid] = e
    return out


def dumps_space(space: FeatureSpace) -> bytes:
    """A fitted space as bytes, tagged with the ranking code that fitted it.

    Not compressed: most of it is the float32 topic projection, which zlib shrank by a sixth
    (18 to 15 MB on the demo) while unpacking it cost a tenth of a second at every start."""
    return pickle.dumps((code_identity(), space), protocol=pickle.HIGHEST_PROTOCOL)


def loads_space(blob: bytes) -> FeatureSpace | None:
    """The space in ``blob``, or None when other code wrote it or it is damaged (then: fit again).
    Reads the zlib-compressed spaces earlier versions wrote too (a pickle starts with 0x80)."""
    try:
        code, space = pickle.loads(blob if blob[:1] == b"\x80" else zlib.decompress(blob))
    except Exception:  # damaged, or classes that moved: a refit costs seconds, never correctness
        return None
    return space if code == code_identity() and isinstance(space, FeatureSpace) else None
