"""Readers' keywords through the sentence encoder once: their vectors are kept in the database like
papers' (keyed by the model and the hash of the exact text), made right after a fetch, and read back
by every later digest, restart and refit; the delivery pass then never loads the model. A fake
model that counts what it encodes stands in for the real one, which the last test runs."""
from __future__ import annotations

import datetime as dt
from collections import Counter

import numpy as np
import pytest
from fake_fetch import fetch_bringing
from test_embeddings import CONFIG, NOW, FakeEncoder, eval_papers, real_model

from digestd import pipeline
from digestd.app import build_app
from digestd.clock import FixedClock
from digestd.config import parse_config
from digestd.models import FetchedPaper
from digestd.pipeline import corpus
from digestd.rank import embeddings, keywords_text
from digestd.rank.encode_once import text_hash
from digestd.rank.features import paper_text_plain
from digestd.store import open_store

ALICE = keywords_text(["small-world networks", "graph spectra"])
BOB = keywords_text(["gene expression", "protein interaction"])


class LazyFake(FakeEncoder):
    """The fake model with the real one's life cycle: its runtime loads on the first encode after a
    ``release``. Records each call's texts, and how often it was loaded."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded = False
        self.loads = 0
        self.calls: list[list[str]] = []

    def encode(self, texts):
        if not self.loaded:
            self.loaded, self.loads = True, self.loads + 1
        self.calls.append(list(texts))
        return super().encode(texts)

    def release(self) -> bool:
        held, self.loaded = self.loaded, False
        return held


@pytest.fixture
def kw_app(tmp_path, any_database_url, monkeypatch):
    """``new_app(config)``: an app (a new process: no memo) with the embeddings backend and a fresh
    fake model on one database holding 200 real abstracts listed an hour ago. Fetching brings nothing."""
    monkeypatch.setattr(embeddings, "installed", lambda: True)
    store = open_store(any_database_url)
    papers = eval_papers()
    store.upsert_papers("blog", NOW.date(), [FetchedPaper(key=p.key, title=p.title, abstract=p.abstract)
                                             for p in papers], NOW - dt.timedelta(hours=1))
    monkeypatch.setattr("digestd.pipeline.fetch.fetch_source", lambda app_, src, *a, **kw: [
        pipeline.FetchOutcome(source=src.name, day=NOW.date(), not_modified=True)])

    def new_app(config: str = CONFIG):
        settings = parse_config(config.format(ranking='[ranking]\nbackend = "embeddings"'), config_dir=tmp_path)
        fake = LazyFake()
        return build_app(settings, clock=FixedClock(NOW), store=store, embedder_factory=lambda: fake), fake

    yield new_app, papers, store
    store.dispose()


def test_keyword_vectors_are_kept_once_and_a_restart_reads_them_back_without_encoding(kw_app):
    new_app, papers, store = kw_app
    app, fake = new_app()
    alice = app.settings.users[0]
    first = pipeline.compose_one(app, alice, NOW.date(), NOW)
    assert first.picks and fake.seen[ALICE] == 1
    assert store.text_embeddings(fake.name, [text_hash(ALICE)]).keys() == {text_hash(ALICE)}

    # A restart, then a vote: alice is retrained, with her keywords read back from the database.
    app2, fake2 = new_app()
    app2.store.set_vote("alice", papers[0].key, "up", "cli", NOW)
    again = pipeline.compose_one(app2, app2.settings.users[0], NOW.date(), NOW)
    assert again.picks and fake2.seen == Counter() and fake2.loads == 0
    enc = corpus.paper_encoder(app2)
    assert (enc.texts_from_cache, enc.texts_encoded) == (1, 0)
    # What is read back is exactly what was encoded (float32, as the memo keeps it either way).
    assert np.array_equal(enc.texts([ALICE]), corpus.paper_encoder(app).texts([ALICE]))


def test_a_refit_of_the_feature_space_in_a_new_process_reads_every_keyword_vector_back(kw_app, monkeypatch):
    new_app, papers, store = kw_app
    app, fake = new_app()
    for user in app.settings.users:
        pipeline.compose_one(app, user, NOW.date(), NOW)
    assert fake.seen[ALICE] == fake.seen[BOB] == 1
    # New papers and a stale space: the next process refits, and every reader is retrained in it.
    identity = corpus.current_corpus(app).identity
    store.upsert_papers("blog", NOW.date(), [FetchedPaper(key=f"2505.0010{i}", title=f"Graph spectra, part {i}",
                                                          abstract="Eigenvalues of random graphs.") for i in range(5)],
                        NOW - dt.timedelta(minutes=30))
    monkeypatch.setattr(corpus, "SPACE_MAX_AGE", dt.timedelta(0))
    app2, fake2 = new_app()
    for user in app2.settings.users:
        assert pipeline.compose_one(app2, user, NOW.date(), NOW).picks
    assert corpus.current_corpus(app2).identity != identity
    assert not {ALICE, BOB} & set(fake2.seen) and corpus.paper_encoder(app2).texts_from_cache == 2


def test_a_fetch_encodes_every_readers_keywords_in_one_batch_and_the_digests_then_encode_nothing(kw_app):
    new_app, papers, store = kw_app
    app, fake = new_app()
    pipeline.fetch_all(app)
    keyword_calls = [sorted(c) for c in fake.calls if {ALICE, BOB} & set(c)]
    assert keyword_calls == [sorted([ALICE, BOB])]
    assert not fake.loaded                                # let go once the fetch's vectors were made
    assert store.counts()["text_embeddings"] == 2
    pipeline.fetch_all(app)                               # nothing new to encode: the model is not loaded
    assert fake.loads == 1
    calls = len(fake.calls)
    for user in app.settings.users:
        pipeline.compose_one(app, user, NOW.date(), NOW)
    assert [c for c in fake.calls[calls:] if {ALICE, BOB} & set(c)] == []


def test_a_reader_who_changes_keywords_has_the_new_text_encoded_at_the_next_fetch_and_only_that(kw_app):
    new_app, papers, store = kw_app
    app, fake = new_app()
    pipeline.fetch_all(app)
    changed = CONFIG.replace('"small-world networks", "graph spectra"', '"graph spectra", "random walks"')
    app2, fake2 = new_app(changed)                        # `digestd fetch` after the config was edited
    pipeline.fetch_all(app2)
    new_text = keywords_text(["graph spectra", "random walks"])
    assert fake2.calls == [[new_text]]
    assert store.counts()["text_embeddings"] == 3         # the old text's vector stays, harmless and tiny
    assert pipeline.compose_one(app2, app2.settings.users[0], NOW.date(), NOW).picks
    assert fake2.seen[new_text] == 1


def test_a_reader_whose_new_keywords_no_fetch_has_seen_gets_them_encoded_in_the_digest_and_kept(kw_app):
    new_app, papers, store = kw_app
    app, fake = new_app()
    pipeline.fetch_all(app)
    changed = CONFIG.replace('"gene expression", "protein interaction"', '"protein folding"')
    app2, fake2 = new_app(changed)
    assert pipeline.compose_one(app2, app2.settings.users[1], NOW.date(), NOW).picks
    assert not_papers(fake2.calls, papers) == [["protein folding"]]     # (the papers' first encoding aside)
    app3, fake3 = new_app(changed)
    pipeline.compose_one(app3, app3.settings.users[1], NOW.date(), NOW)
    assert fake3.calls == []


def not_papers(calls: list[list[str]], papers) -> list[list[str]]:
    """The calls to the model that were not (only) for papers' texts."""
    texts = {paper_text_plain(p) for p in papers}
    return [c for c in calls if not set(c) <= texts]


def test_the_delivery_pass_with_every_vector_stored_never_loads_the_model(kw_app, monkeypatch):
    new_app, papers, store = kw_app
    app, fake = new_app()
    fresh = FetchedPaper(key="2505.00009", title="Spectra of small-world graphs",
                         abstract="We compute Laplacian spectra of small-world networks.")

    monkeypatch.setattr("digestd.pipeline.fetch.fetch_source",
                        fetch_bringing(store, [fresh], NOW.date(), NOW - dt.timedelta(minutes=1)))
    fetched, delivered = pipeline.run_once(app)
    assert fake.loads == 1 and not fake.loaded            # loaded once, for the fetch's vectors, then let go
    assert sorted(o.status for o in delivered) == ["sent", "sent"]
    # `run --once` the next day in a new process: nothing new to encode, the model is never loaded.
    monkeypatch.setattr("digestd.pipeline.fetch.fetch_source", lambda app_, src, *a, **kw: [
        pipeline.FetchOutcome(source=src.name, day=NOW.date(), not_modified=True)])
    app2, fake2 = new_app()
    app2.clock = FixedClock(NOW + dt.timedelta(days=1))
    _, delivered = pipeline.run_once(app2)
    assert delivered and fake2.loads == 0 and fake2.seen == Counter()


@real_model
@pytest.mark.embeddings
@pytest.mark.slow
def test_with_the_real_model_the_delivery_pass_after_a_fetch_runs_without_its_session(tmp_path, database_url,
                                                                                       monkeypatch):
    monkeypatch.setattr(embeddings, "_CACHE", {})
    settings = parse_config(CONFIG.format(ranking='[ranking]\nbackend = "embeddings"'), config_dir=tmp_path)
    store = open_store(database_url)
    papers = eval_papers(30)

    fetched_papers = [FetchedPaper(key=p.key, title=p.title, abstract=p.abstract) for p in papers]
    monkeypatch.setattr("digestd.pipeline.fetch.fetch_source",
                        fetch_bringing(store, fetched_papers, NOW.date(), NOW - dt.timedelta(minutes=5)))
    app = build_app(settings, clock=FixedClock(NOW), store=store)
    pipeline.fetch_all(app)
    model = embeddings.load_embedder()
    assert model.session is None                          # loaded for the fetch's vectors, then let go
    kept = store.text_embeddings(embeddings.MODEL_NAME, [text_hash(ALICE), text_hash(BOB)])
    assert set(kept) == {text_hash(ALICE), text_hash(BOB)}
    assert np.allclose(kept[text_hash(ALICE)], model.encode([ALICE])[0], atol=1e-6)
    model.release()
    loads = []
    real_load = embeddings.Embedder._load
    monkeypatch.setattr(embeddings.Embedder, "_load", lambda self: (loads.append(1), real_load(self)))
    delivered = pipeline.deliver_due(app)
    assert sorted(o.status for o in delivered) == ["sent", "sent"]
    assert loads == [] and model.session is None
    app.close()
