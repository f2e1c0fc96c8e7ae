"""Incremental profile training: trained models are stored, and only users whose input changed are
retrained."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import pickle
import zlib

import numpy as np
import pytest

import digestd.rank
from digestd import accounts, pipeline
from digestd.pipeline.compose import reader_profiles
from digestd.pipeline.corpus import reader_models
from digestd.app import build_app
from digestd.clock import FixedClock
from digestd.config import parse_config
from digestd.models import FetchedPaper, PaperText, ProfileInput, Vote
from digestd.rank import DEFAULT_PARAMS, FeatureSpace, calibrate, fit, persist, select, train
from digestd.store import open_store

T0 = dt.datetime(2025, 5, 20, 9, 0, tzinfo=dt.timezone.utc)

TOPICS = {
    "retrieval": ("dense retrieval", "Dense passage retrieval with dual encoders for open-domain question answering. "
                  "Embedding models rank relevant passages above hard negatives in nearest neighbour search."),
    "speech": ("speech recognition", "Automatic speech recognition with acoustic models trained on audio. "
               "The recogniser transcribes spoken utterances; word error rate drops on noisy speech."),
    "protein": ("protein folding", "Predicting protein structure from amino acid sequence. The network folds "
                "proteins and predicts residue contacts and backbone geometry."),
    "robots": ("robot grasping", "Robotic grasping of unknown objects with a manipulator arm. The robot plans "
               "grasps from depth sensing and tactile feedback in cluttered bins."),
}
VARIANTS = ["A study of", "Towards better", "Scaling", "Revisiting", "Efficient", "Robust", "On", "Learning"]


def fetched(topic: str, i: int) -> FetchedPaper:
    name, body = TOPICS[topic]
    key = f"2505.{list(TOPICS).index(topic)}{i:04d}"
    return FetchedPaper(key=key, arxiv_id=key, title=f"{VARIANTS[i % len(VARIANTS)]} {name} {i}",
                        abstract=f"{body} Variant {i} explores setting number {i}.", authors=[f"Author {topic} {i % 3}"])


def text(p: FetchedPaper) -> PaperText:
    return PaperText(key=p.key, title=p.title, abstract=p.abstract, authors=list(p.authors))


STREAM = [fetched(t, i) for t in TOPICS for i in range(10)]


# -- pure: the split, the bytes, the fingerprint --------------------------------------------------------
@pytest.fixture(scope="module")
def corpus():
    papers = [text(p) for p in STREAM]
    return FeatureSpace.fit(papers), papers


def profile_of(papers, **kw) -> ProfileInput:
    votes = [Vote(papers[i], +1, T0 - dt.timedelta(days=i)) for i in (0, 1, 2)] + [Vote(papers[12], -1, T0)]
    return ProfileInput(**{"user_id": "ann", "keywords": ["dense retrieval"], "votes": votes, **kw})


def picks(model, space, papers):
    sel = select(model, space, papers, 8, now=T0)
    return [(p.key, p.score, p.explore, p.reason, p.highlight) for p in sel.picks]


def test_a_stored_and_reloaded_model_ranks_exactly_like_a_freshly_trained_one(corpus):
    space, papers = corpus
    profile = profile_of(papers)
    fresh = train(profile, space, papers, T0)
    reloaded = persist.loads(persist.dumps(train(profile, space, papers, T0)), "ann")
    assert picks(reloaded, space, papers) == picks(fresh, space, papers)
    assert np.array_equal(digestd.rank.rank_scores(reloaded, space, papers),
                          digestd.rank.rank_scores(fresh, space, papers))


def test_training_is_the_per_user_fit_then_the_calibration(corpus):
    space, papers = corpus
    profile = profile_of(papers)
    split = calibrate(fit(profile, space, papers, T0), space, papers)
    assert np.array_equal(digestd.rank.rank_scores(split, space, papers),
                          digestd.rank.rank_scores(train(profile, space, papers, T0), space, papers))
    assert split.mu and split.sd


def test_the_fingerprint_changes_with_every_input_of_a_model_and_nothing_else(corpus):
    space, papers = corpus
    base = profile_of(papers)
    fp = persist.fingerprint(base, "space-1")
    assert persist.fingerprint(profile_of(papers), "space-1") == fp
    assert persist.fingerprint(dataclasses.replace(base, votes=base.votes[::-1]), "space-1") == fp
    new_vote = dataclasses.replace(base, votes=base.votes + [Vote(papers[3], +1, T0)])
    changed_mind = dataclasses.replace(base, votes=[dataclasses.replace(base.votes[0], value=-1)] + base.votes[1:])
    filled_in = dataclasses.replace(base, seed_papers=[dataclasses.replace(papers[5], abstract="")])
    others = [
        persist.fingerprint(new_vote, "space-1"),
        persist.fingerprint(changed_mind, "space-1"),
        persist.fingerprint(dataclasses.replace(base, seed_papers=[papers[5]]), "space-1"),
        persist.fingerprint(filled_in, "space-1"),
        persist.fingerprint(dataclasses.replace(base, keywords=["speech"]), "space-1"),
        persist.fingerprint(dataclasses.replace(base, authors=["Author speech 1"]), "space-1"),
        persist.fingerprint(base, "space-1", dataclasses.replace(DEFAULT_PARAMS, w_linear=0.2)),
        persist.fingerprint(base, "space-2"),
    ]
    assert len({fp, *others}) == len(others) + 1


def test_the_space_identity_follows_the_fitted_space_and_its_background(corpus):
    space, papers = corpus
    ident = persist.space_identity(space, papers)
    assert persist.space_identity(pickle.loads(pickle.dumps(space)), papers) == ident
    assert persist.space_identity(space, papers[:-1]) != ident
    assert persist.space_identity(FeatureSpace.fit(papers[:-1]), papers) != ident


def test_a_stored_space_loads_back_exact_whether_written_plain_or_compressed_by_an_earlier_version(corpus):
    space, papers = corpus
    plain = persist.dumps_space(space)
    for blob in (plain, zlib.compress(plain, 1)):
        back = persist.loads_space(blob)
        assert np.array_equal(back.idf, space.idf) and np.array_equal(back.svd_components, space.svd_components)
        assert persist.space_identity(back, papers) == persist.space_identity(space, papers)
    assert persist.loads_space(b"damaged") is None and persist.loads_space(plain[:-10]) is None


@pytest.mark.parametrize("blob", [b"not a model", zlib.compress(b"\x80\x05junk"), zlib.compress(pickle.dumps({"a": 1})),
                                  zlib.compress(b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x14digestd.rank.profile"
                                                b"\x94\x8c\x07Gone\x94\x93\x94.")])
def test_a_model_written_by_another_version_is_refused_with_a_clear_error(blob):
    with pytest.raises(digestd.errors.StoredModelError):
        persist.loads(blob, "ann")


# -- store: the profiles table on SQLite and PostgreSQL -----------------------------------------------
def test_the_store_keeps_one_model_per_user_and_when_it_was_trained(any_database_url):
    from digestd.config import UserSettings

    s = open_store(any_database_url)
    s.sync_users([UserSettings(id="ann", email="ann@example.org"), UserSettings(id="bo", email="bo@example.org")], T0)
    assert s.get_profile("ann") is None and s.profile_trained_at() == {}
    s.save_profile("ann", "fp1", b"\x00model one", T0)
    s.save_profile("ann", "fp2", b"\x00model two" * 1000, T0 + dt.timedelta(hours=1))
    row = s.get_profile("ann")
    assert (row.fingerprint, row.model, row.trained_at) == ("fp2", b"\x00model two" * 1000, T0 + dt.timedelta(hours=1))
    assert s.profile_trained_at() == {"ann": T0 + dt.timedelta(hours=1)}


# -- jobs: compose loads or trains ----------------------------------------------------------------------
CONFIG = """
[digestd]
data_dir = "{tmp}/var"
database_url = "{url}"

[[sources]]
name = "demo"
type = "replay"
path = "{tmp}/lists"

[[users]]
id = "ann"
email = "ann@example.org"
timezone = "UTC"
digest_size = 4
keywords = ["dense retrieval"]

[[users]]
id = "bo"
email = "bo@example.org"
timezone = "UTC"
digest_size = 4
keywords = ["speech recognition"]
"""


@pytest.fixture
def world(tmp_path, any_database_url, monkeypatch):
    (tmp_path / "lists").mkdir()
    clock = FixedClock(T0)
    app = build_app(parse_config(CONFIG.format(tmp=tmp_path, url=any_database_url), config_dir=tmp_path), clock=clock)
    app.store.upsert_papers("demo", T0.date(), STREAM, T0 - dt.timedelta(hours=1))
    trained: list[str] = []
    real_train = digestd.rank.train_readers

    def counting(profiles, *args, **kw):
        trained.extend(p.user_id for p in profiles)
        return real_train(profiles, *args, **kw)

    monkeypatch.setattr(digestd.rank, "train_readers", counting)
    yield app, clock, trained
    app.close()


def compose_all(app) -> dict[str, list]:
    out = {}
    for user in app.settings.users:
        comp = pipeline.compose_one(app, user, app.clock.now().date(), app.clock.now())
        out[user.id] = [(p.key, p.score, p.explore) for p in comp.picks]
    return out


def trained_at(app) -> dict[str, str | None]:
    return {u["id"]: u["profile_trained_at"] for u in accounts.status(app)["users"]}


def test_a_user_without_new_votes_is_not_retrained_and_ranks_the_same(world):
    app, clock, trained = world
    first = compose_all(app)
    assert sorted(trained) == ["ann", "bo"]
    before = trained_at(app)
    assert before == {"ann": T0.isoformat(), "bo": T0.isoformat()}
    clock.advance(hours=2)
    trained.clear()
    assert compose_all(app) == first            # the stored models, loaded: exactly the same picks and scores
    assert trained == [] and trained_at(app) == before


def test_a_new_vote_retrains_that_user_only(world):
    app, clock, trained = world
    compose_all(app)
    trained.clear()
    clock.advance(hours=1)
    accounts.apply_feedback(app, "ann", STREAM[25].key, "up", via="web")
    compose_all(app)
    assert trained == ["ann"]
    assert trained_at(app) == {"ann": (T0 + dt.timedelta(hours=1)).isoformat(), "bo": T0.isoformat()}
    trained.clear()
    accounts.apply_feedback(app, "bo", STREAM[25].key, "down", via="cli")
    accounts.apply_feedback(app, "ann", STREAM[25].key, "clear", via="cli")   # taking a vote back counts too
    compose_all(app)
    assert sorted(trained) == ["ann", "bo"]


def test_a_few_new_papers_keep_the_space_and_every_stored_model(world):
    app, clock, trained = world
    compose_all(app)
    space = pipeline.current_corpus(app).space
    trained.clear()
    clock.advance(hours=1)
    newcomer = fetched("protein", 42)
    app.store.upsert_papers("demo", clock.now().date(), [newcomer], clock.now())
    corpus = pipeline.current_corpus(app)
    assert newcomer.key in {p.key for p in corpus.papers}       # the background is reread ...
    assert corpus.space is space                                # ... but 1 new paper in 41 is no refit
    picks = compose_all(app)
    assert trained == []
    # The newcomer is still scored, in the kept space: the protein-free readers do not get it first.
    assert all(key != newcomer.key for key, _, _ in picks["ann"][:1])


def test_a_fifth_of_the_background_new_refits_the_space_and_retrains_everyone_once(world):
    app, clock, trained = world
    compose_all(app)
    space = pipeline.current_corpus(app).space
    trained.clear()
    clock.advance(hours=1)
    app.store.upsert_papers("demo", clock.now().date(), [fetched("robots", 20 + i) for i in range(10)], clock.now())
    compose_all(app)
    compose_all(app)
    assert pipeline.current_corpus(app).space is not space
    assert sorted(trained) == ["ann", "bo"]


def test_a_week_old_space_is_refitted_at_the_next_new_paper(world):
    app, clock, trained = world
    compose_all(app)
    space = pipeline.current_corpus(app).space
    clock.advance(days=8)
    assert pipeline.current_corpus(app).space is space              # nothing new: nothing to refit
    app.store.upsert_papers("demo", clock.now().date(), [fetched("speech", 42)], clock.now())
    assert pipeline.current_corpus(app).space is not space


def test_a_model_older_than_a_week_is_refreshed_so_votes_keep_ageing(world):
    app, clock, trained = world

    def models_for_all():   # no new papers after a week means no digest, so ask for the models directly
        corpus = pipeline.current_corpus(app)
        reader_models(app, reader_profiles(app, app.settings.users), corpus, clock.now())

    compose_all(app)
    trained.clear()
    clock.advance(days=6, hours=23)
    models_for_all()
    assert trained == []
    clock.advance(hours=2)
    models_for_all()
    assert sorted(trained) == ["ann", "bo"]


@pytest.mark.parametrize("blob", [b"garbage", zlib.compress(pickle.dumps(["a", "list"]))])
def test_an_unreadable_stored_model_is_logged_and_retrained_never_fatal(world, caplog, blob):
    app, clock, trained = world
    first = compose_all(app)
    row = app.store.get_profile("bo")
    app.store.save_profile("bo", row.fingerprint, blob, row.trained_at)
    trained.clear()
    with caplog.at_level(logging.WARNING, logger="digestd.corpus"):
        assert compose_all(app) == first
    assert trained == ["bo"]
    assert any("cannot be read" in r.getMessage() or "not this user's" in r.getMessage() for r in caplog.records)
    assert persist.loads(app.store.get_profile("bo").model, "bo").user_id == "bo"   # replaced by a good one
