"""The background corpus, its feature space, and every reader's trained model in it.

Shared by all readers of a pass: the space is fitted (and the background featurised, its neighbour
graph built) once, and a reader is retrained only when their own input or the space changed.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..errors import StoredModelError, StoreError
from ..logs import get_logger
from ..models import ProfileInput
from ..store import paper_text
from .timing import stage

if TYPE_CHECKING:
    from ..app import App

log = get_logger("digestd.corpus")

# How many recent papers stand in for "everything else" when a profile is trained.
BACKGROUND_SIZE = 2000
SPACE_REFIT_SHARE = 0.2                     # refit the feature space once a fifth of the background is new
SPACE_MAX_AGE = dt.timedelta(days=7)        # ... or once a week


@dataclass
class Corpus:
    """The background corpus of one corpus version and the feature space fitted on it, plus what
    training needs from them, computed on first use and shared by every user of the version."""

    version: tuple
    papers: list                       # list[PaperText]
    space: object                      # rank.FeatureSpace
    fitted_at: dt.datetime = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    fitted_keys: frozenset = frozenset()   # the papers the space was fitted on
    _featurized: object = None
    _identity: str | None = None

    @property
    def featurized(self):
        """The background's vectors: featurised (and its neighbour graph built) once, not per user."""
        with _CORPUS_LOCK:
            if self._featurized is None:
                from ..rank import featurize

                self._featurized = featurize(self.space, self.papers)
            return self._featurized

    @property
    def identity(self) -> str:
        """What a stored model's vectors live in (``rank.persist.space_identity``)."""
        if self._identity is None:
            from ..rank.persist import space_identity

            self._identity = space_identity(self.space, self.papers)
        return self._identity


_CORPUS_LOCK = threading.RLock()


def current_corpus(app: "App") -> Corpus:
    """The background and its feature space, cached on the app; one thread builds it, the daemon's
    other jobs wait for it rather than fit (or encode) the same papers twice."""
    with _CORPUS_LOCK:
        return _current_corpus(app)


def warm_corpus(app: "App") -> None:
    """After a fetch brought new papers: build the background's vectors now (with the embeddings
    backend, encode the new papers) so the cost is paid at fetch time, not when a digest is due."""
    with _CORPUS_LOCK:
        corpus = _current_corpus(app)
        with stage(app, "encode"):
            corpus.featurized


def encode_listed(app: "App", keys: Sequence[str]) -> None:
    """With the sentence encoder, every paper a fetch listed has its vector made and kept now, not
    only the background's newest ``BACKGROUND_SIZE``: a fetch catching up on many days brings older
    papers too, and a reader who votes on one would otherwise pay its encoding in their next digest."""
    from ..rank.embeddings import resolve_backend

    if not keys or resolve_backend(app.settings.ranking.backend) != "embeddings":
        return
    with _CORPUS_LOCK:
        held = {p.key for p in _current_corpus(app).papers}
    outside = [k for k in dict.fromkeys(keys) if k not in held]
    if not outside:
        return
    with stage(app, "store"):
        papers = app.store.papers_by_keys(outside)
    with stage(app, "encode"):
        paper_encoder(app).papers([paper_text(papers[k]) for k in outside if k in papers])


def encode_keywords(app: "App") -> int:
    """With the sentence encoder, every configured reader's keywords that have no stored vector
    are encoded now, in one batch, and kept: a digest (or a cold pass of 10,000 readers) then reads
    them back instead of running the model. Returns how many texts were encoded."""
    from ..rank import keywords_text
    from ..rank.embeddings import resolve_backend

    if resolve_backend(app.settings.ranking.backend) != "embeddings":
        return 0
    texts = [keywords_text(u.keywords) for u in app.settings.users if u.keywords]
    if not texts:
        return 0
    with stage(app, "encode"):
        n = paper_encoder(app).keep_texts(texts)
    if n:
        log.info("encoded the keywords of %d readers (once; the vectors are kept)", n)
    return n


def release_encoder(app: "App") -> None:
    """Let the sentence encoder's runtime go once the vectors a fetch brought are made: a delivery
    pass whose vectors are all stored never needs it, and should not carry it beside its own
    matrices (measured: 100 MiB off the peak of a 1,000-reader cold pass). Whatever does need it
    later loads it again."""
    enc = app.cache.get("encoder")
    if enc is not None and enc.release_model():
        log.debug("sentence encoder released until it is needed again")


def _current_corpus(app: "App") -> Corpus:
    """The background and its feature space.

    The background is reread when new papers arrive, but the space is refitted only when a fifth
    of the background is new to it or it is a week old: papers are hashed into fixed columns and
    projected with the fitted basis, so a new paper needs no refit, and keeping the space keeps
    every stored user model valid (a refit retrains everyone once). A change of the configured
    backend (a config reload) refits at once."""
    from ..rank import fit_space
    from ..rank.embeddings import resolve_backend

    backend = resolve_backend(app.settings.ranking.backend)
    ident = (backend, app.store.corpus_version())
    cached = app.cache.get("corpus")
    if cached is not None and cached.version == ident:
        return cached
    now = app.clock.now()
    background = [paper_text(p) for p in app.store.recent_papers(BACKGROUND_SIZE)]
    if cached is None:
        cached = _stored_corpus(app, backend)
    if cached is not None and cached.space.backend == backend and now - cached.fitted_at < SPACE_MAX_AGE:
        new = sum(1 for p in background if p.key not in cached.fitted_keys)
        if new < SPACE_REFIT_SHARE * max(len(background), 1):
            fresh = Corpus(ident, background, cached.space, fitted_at=cached.fitted_at,
                           fitted_keys=cached.fitted_keys, _identity=cached.identity)
            app.cache["corpus"] = fresh
            return fresh
    encoder = paper_encoder(app) if backend == "embeddings" else None
    with stage(app, "featurise"):
        fresh = Corpus(ident, background, fit_space(background, backend, encoder=encoder), fitted_at=now,
                       fitted_keys=frozenset(p.key for p in background))
    app.cache["corpus"] = fresh
    _store_corpus(app, fresh)
    return fresh


def _stored_corpus(app: "App", backend: str) -> Corpus | None:
    """The space a previous process fitted, so a restart keeps it (and every stored profile)."""
    from ..rank import persist

    row = app.store.fitted_space(backend)
    space = persist.loads_space(row.space) if row is not None else None
    if space is None:
        return None
    if backend == "embeddings":
        space.encoder = paper_encoder(app)
    return Corpus((None,), [], space, fitted_at=row.fitted_at, fitted_keys=frozenset(json.loads(row.keys_json)),
                  _identity=row.identity)


def _store_corpus(app: "App", corpus: Corpus) -> None:
    from ..rank import persist

    try:
        app.store.save_fitted_space(corpus.space.backend, corpus.fitted_at, corpus.identity, corpus.fitted_keys,
                                    persist.dumps_space(corpus.space))
    except StoreError as e:   # only a restart pays: it fits again
        log.warning("cannot keep the fitted feature space: %s", e)


def paper_encoder(app: "App"):
    """The embeddings backend's encoder: a paper is encoded the first time it is featurised (after
    the fetch that brought it, or by a digest) and its vector kept in the database, so every later
    digest, user and restart reads it back; a reader's keywords likewise (``encode_keywords``)."""
    enc = app.cache.get("encoder")
    if enc is None:
        from ..rank.encode_once import PaperEncoder

        model = app.embedder()
        enc = app.cache["encoder"] = PaperEncoder(model, app.store.embedding_cache(model.name),
                                                  text_cache=app.store.text_embedding_cache(model.name))
    return enc


def reader_models(app: "App", profiles: Sequence[ProfileInput], corpus: Corpus, now: dt.datetime) -> dict[str, object]:
    """Each reader's trained model: the stored one while its fingerprint matches (same votes, seeds,
    keywords, authors, params and space) and it is younger than ``persist.MAX_AGE``, else trained;
    the newly trained are stored a hundred to a transaction. One query reads which stored models
    are still valid; only those models' bytes are read, a hundred at a time.

    Only readers whose input changed pay for training; a model that cannot be read (written by
    another version) is retrained, never fatal."""
    from ..rank import params_for, persist, train_readers

    models: dict[str, object] = {}
    if not profiles:
        return models
    with stage(app, "store"):
        heads = app.store.profile_heads(p.user_id for p in profiles)
    want: dict[str, str] = {}
    todo: list[ProfileInput] = []
    with stage(app, "train"):
        valid = []
        for profile in profiles:
            fp = want[profile.user_id] = persist.fingerprint(profile, corpus.identity, params_for(corpus.space.backend))
            head = heads.get(profile.user_id)
            if head is not None and persist.reusable(head[0], head[1], fp, now):
                valid.append(profile.user_id)
    loaded: dict[str, object] = {}
    chunks = app.store.profile_models(valid)
    while True:
        with stage(app, "store"):
            blobs = next(chunks, None)
        if blobs is None:
            break
        with stage(app, "train"):
            loaded.update(persist.loads_many(blobs))
    with stage(app, "train"):
        for profile in profiles:
            got = loaded.get(profile.user_id)
            if isinstance(got, StoredModelError):
                log.warning("%s; retraining", got.message, extra={"user": profile.user_id})
            if got is None or isinstance(got, StoredModelError):
                todo.append(profile)
            else:
                models[profile.user_id] = got
        if todo:
            t = time.perf_counter()
            trained = train_readers(todo, corpus.space, corpus.featurized, now, params=params_for(corpus.space.backend))
            log.info("%d profiles trained in %.0f ms (%d reused)", len(todo), (time.perf_counter() - t) * 1000,
                     len(profiles) - len(todo))
            models.update({p.user_id: m for p, m in zip(todo, trained)})
    if todo:
        try:
            with stage(app, "store"):
                app.store.save_profiles(((p.user_id, want[p.user_id], persist.dumps(models[p.user_id])) for p in todo),
                                        now)
        except StoreError as e:   # the models are still good for this pass; the next one trains again
            log.warning("%s", e)
    return models
