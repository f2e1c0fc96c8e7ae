"""Training many readers at once (rank.fit_readers) against real paper texts."""
from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import json
from pathlib import Path

import numpy as np

from digestd.errors import StoredModelError
import pytest
from sklearn.linear_model import LogisticRegression

from digestd.models import PaperText, ProfileInput, Vote
from digestd.rank import (DEFAULT_PARAMS, FeatureSpace, FitCache, calibrate, featurize, fit, fit_readers, persist,
                          rank_scores, train)
from digestd.rank.logistic import TOL, SharedNegatives, fit_logistic

fit_module = importlib.import_module("digestd.rank.fit")       # ``digestd.rank.fit`` is the function
interests_module = importlib.import_module("digestd.rank.interests")

NOW = dt.datetime(2025, 5, 20, 9, 0, tzinfo=dt.timezone.utc)
# Each regression stops once no coefficient moves by more than TOL (relative): alone or in a batch, a
# reader's coefficients agree to a few times that, whatever float rounding the batch's shapes bring.
AGREE = 10 * TOL
DATA = Path(__file__).parent / "data" / "eval" / "papers.jsonl"
# A sample smaller than the background: readers share it and each skips the papers it voted on.
PARAMS = dataclasses.replace(DEFAULT_PARAMS, background_sample=100)


@pytest.fixture(scope="module")
def world():
    rows = [json.loads(line) for line in DATA.open(encoding="utf-8")]
    papers = [PaperText(key=r["id"], title=r["title"], abstract=r.get("abstract") or "",
                        authors=[f"Author {i % 7}", f"Writer {i % 11}"]) for i, r in enumerate(rows)]
    background, older = papers[:160], papers[160:]
    space = FeatureSpace.fit(background)
    return space, featurize(space, background), background, older


def readers(background, older, n=24, seed=3) -> list[ProfileInput]:
    """Readers of every shape: votes on background and older papers, thumbs-down, a changed
    mind, seeds (one also voted on), keywords (stop words only, for one), authors, nothing."""
    rng = np.random.default_rng(seed)
    out = []
    for u in range(n):
        picks = [background[int(i)] for i in rng.choice(len(background), size=int(rng.integers(3, 20)), replace=False)]
        picks += [older[int(i)] for i in rng.choice(len(older), size=int(rng.integers(0, 4)), replace=False)]
        votes = [Vote(p, -1 if j % 5 == 4 else +1, NOW - dt.timedelta(days=float(rng.uniform(0, 300))))
                 for j, p in enumerate(picks)]
        if u % 3 == 0:   # changed their mind about their first paper
            votes.append(Vote(picks[0], -votes[0].value, NOW - dt.timedelta(hours=1)))
        seeds = [older[u % len(older)], picks[1]] if u % 4 == 0 else []
        keywords = [["small world networks"], ["gene expression", "microarray"], ["the", "of"], []][u % 4]
        authors = ["Author 3"] if u % 5 == 0 else []
        out.append(ProfileInput(user_id=f"r{u}", votes=votes, seed_papers=seeds, keywords=keywords, authors=authors))
    out += [ProfileInput("nothing"), ProfileInput("keywords-only", keywords=["protein structure"]),
            ProfileInput("downs-only", votes=[Vote(background[5], -1, NOW)]), ProfileInput("authors-only", authors=["Writer 2"])]
    return out


def assert_same_model(a, b):
    assert (a.user_id, a.keywords, a.known_keys) == (b.user_id, b.keywords, b.known_keys)
    assert [(x.key, x.title, x.kind, x.weight) for x in a.anchors] == [(x.key, x.title, x.kind, x.weight) for x in b.anchors]
    assert np.array_equal(a.pos_weight, b.pos_weight)
    (a_cs, a_cd), (b_cs, b_cd) = a.centroids(), b.centroids()
    for left, right in ((a.pos_sparse, b.pos_sparse), (a.neg_sparse, b.neg_sparse), (a_cs, b_cs)):
        assert left.shape == right.shape
        assert left.shape[0] == 0 or abs(left - right).max() <= 1e-12
    for left, right in ((a.pos_dense, b.pos_dense), (a.neg_dense, b.neg_dense), (a_cd, b_cd)):
        np.testing.assert_allclose(left, right, rtol=0, atol=1e-12)
    assert np.array_equal(a.cluster_of, b.cluster_of)
    assert (a.coef_dense is None) == (b.coef_dense is None)
    if a.coef_dense is not None:
        scale = max(np.abs(a.coef_dense).max(), abs(a.intercept), 1.0)
        np.testing.assert_allclose(a.coef_dense, b.coef_dense, rtol=0, atol=AGREE * scale)
        assert a.intercept == pytest.approx(b.intercept, rel=0, abs=AGREE * scale)
    assert list(a.profile_terms) == list(b.profile_terms)
    np.testing.assert_allclose(list(a.profile_terms.values()), list(b.profile_terms.values()), rtol=1e-12)


def test_readers_fitted_together_get_the_models_they_get_alone(world, monkeypatch):
    space, bg, background, older = world
    people = readers(background, older)
    alone = [fit(r, space, bg, NOW, params=PARAMS, cache=FitCache()) for r in people]
    # Small batches, so every batching seam (chunks, regression groups, Gram blocks) is crossed.
    monkeypatch.setattr(fit_module, "CHUNK", 5)
    monkeypatch.setattr(fit_module, "LOGISTIC_BATCH", 3)
    together = fit_readers(people, space, bg, NOW, params=PARAMS, cache=FitCache())
    backwards = fit_readers(people[::-1], space, bg, NOW, params=PARAMS)[::-1]
    assert [m.user_id for m in together] == [r.user_id for r in people]
    for a, b, c in zip(alone, together, backwards):
        assert_same_model(a, b)
        assert_same_model(a, c)
    assert any(len(set(m.cluster_of)) > 1 for m in together)                 # the seams were really exercised
    assert sum(m.coef_dense is not None for m in together) > 20
    assert not alone[-4].anchors and alone[-4].coef_dense is None             # "nothing": an empty model
    assert [a.kind for a in alone[-3].anchors] == ["keywords"]
    assert not alone[-2].anchors and alone[-2].neg_sparse.shape[0] == 1      # thumbs-down alone: no anchors
    assert [a.kind for a in alone[-1].anchors] == ["authors"]
    assert "the, of" not in [a.title for m in alone for a in m.anchors]       # keywords with no content word are no anchor


def test_the_linear_model_is_sklearns_logistic_regression_on_liked_disliked_and_sampled_unvoted(world):
    space, bg, background, older = world
    for profile in readers(background, older, n=6, seed=9)[:6]:
        model = fit(profile, space, bg, NOW, params=PARAMS)
        latest = {}
        for v in sorted(profile.votes, key=lambda v: (v.at, v.paper.key)):
            latest[v.paper.key] = v
        sample, _, _ = fit_module._negatives(bg, PARAMS)
        unvoted = [i for i in sample if bg.papers[i].key not in latest]
        downs = [v for v in latest.values() if v.value < 0]
        w = model.pos_weight
        x = np.vstack([model.pos_dense, model.neg_dense, bg.dense[unvoted]])
        y = np.r_[np.ones(len(w)), np.zeros(len(downs) + len(unvoted))]
        down_w = np.array([0.5 ** ((NOW - v.at).total_seconds() / 86400 / PARAMS.half_life_days) for v in downs])
        sw = np.r_[w, PARAMS.down_weight * down_w * w.mean(), np.full(len(unvoted), w.sum() / len(unvoted))]
        ref = LogisticRegression(C=PARAMS.C, tol=1e-12, max_iter=100_000).fit(x, y, sample_weight=sw / sw.mean())
        np.testing.assert_allclose(model.coef_dense, ref.coef_[0], atol=1e-4 * np.abs(ref.coef_[0]).max())
        assert model.intercept == pytest.approx(ref.intercept_[0], abs=1e-4 * max(1.0, abs(ref.intercept_[0])))


def test_the_batched_regression_solves_each_problem_as_if_alone():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 30))
    x_neg = rng.normal(size=(200, 30)) + centres[rng.integers(4, size=200)]
    x_neg /= np.linalg.norm(x_neg, axis=1, keepdims=True)
    neg = SharedNegatives.of(x_neg)
    problems = []
    for b in range(7):
        own = rng.normal(size=(int(rng.integers(2, 9)), 30)) * 0.4 + centres[b % 4]
        own /= np.linalg.norm(own, axis=1, keepdims=True)
        keep = np.ones(200)
        keep[rng.choice(200, size=b, replace=False)] = 0.0
        problems.append((own, np.r_[np.ones(len(own) - 1), 0.0], rng.uniform(0.5, 3.0, size=len(own)), 0.3 + 0.1 * b, keep))
    q = max(len(p[0]) for p in problems)
    rows, y, s = np.zeros((7, q, 30)), np.zeros((7, q)), np.zeros((7, q))
    for b, (own, lab, sw, _, _) in enumerate(problems):
        rows[b, :len(own)], y[b, :len(own)], s[b, :len(own)] = neg.rotate(own), lab, sw
    v = np.array([p[3] for p in problems])
    keep = np.stack([p[4] for p in problems], axis=1)
    coef, intercept = fit_logistic(neg, rows, y, s, v, keep)
    for b, (own, lab, sw, vb, kb) in enumerate(problems):
        kept = kb > 0
        ref = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(
            np.vstack([own, x_neg[kept]]), np.r_[lab, np.zeros(kept.sum())], sample_weight=np.r_[sw, np.full(kept.sum(), vb)])
        np.testing.assert_allclose(coef[b], ref.coef_[0], atol=AGREE * np.abs(ref.coef_[0]).max())
        alone = fit_logistic(neg, rows[b:b + 1, :len(own)], y[b:b + 1, :len(own)], s[b:b + 1, :len(own)], v[b:b + 1],
                             keep[:, b:b + 1])
        np.testing.assert_allclose(alone[0][0], coef[b], rtol=0, atol=AGREE * max(np.abs(coef[b]).max(), 1.0))


def test_a_cache_filled_in_another_space_is_emptied_not_reused(world):
    space, bg, background, older = world
    people = readers(background, older, n=6, seed=5)
    other = FeatureSpace.fit(background[:120] + older)
    cache = FitCache()
    fit_readers(people, other, featurize(other, background), NOW, params=PARAMS, cache=cache)
    reused = fit_readers(people, space, bg, NOW, params=PARAMS, cache=cache)
    for a, b in zip(reused, fit_readers(people, space, bg, NOW, params=PARAMS, cache=FitCache())):
        assert_same_model(a, b)


def test_a_reader_with_two_unrelated_topics_gets_two_interests():
    topics = {"retrieval": "Dense passage retrieval with dual encoders ranks relevant passages above hard negatives.",
              "protein": "Predicting protein structure from amino acid sequence: the network folds proteins.",
              "speech": "Automatic speech recognition transcribes spoken utterances; word error rate drops."}
    papers = [PaperText(key=f"{t}{i}", title=f"{t} study {i}", abstract=f"{body} Setting {i}.")
              for t, body in topics.items() for i in range(12)]
    space = FeatureSpace.fit(papers)
    liked = [p for p in papers if p.key in {"retrieval1", "retrieval2", "retrieval3", "protein1", "protein2", "protein3"}]
    profile = ProfileInput("two", votes=[Vote(p, +1, NOW - dt.timedelta(days=i)) for i, p in enumerate(liked)])
    model = fit_readers([profile, ProfileInput("other", votes=[Vote(papers[-1], +1, NOW)])], space, papers, NOW)[0]
    labels = dict(zip([a.key for a in model.anchors], model.cluster_of.tolist()))
    assert labels["retrieval1"] == labels["retrieval2"] == labels["retrieval3"]
    assert labels["protein1"] == labels["protein2"] == labels["protein3"] != labels["retrieval1"]
    c_sparse, c_dense = model.centroids()
    assert model.n_interests == c_dense.shape[0] == c_sparse.shape[0] == 2
    # Each centroid is the normalised weighted sum of its members.
    for k in range(2):
        members = model.cluster_of == k
        direct = (model.pos_weight[members][:, None] * model.pos_dense[members]).sum(axis=0)
        np.testing.assert_allclose(c_dense[k], direct / np.linalg.norm(direct), rtol=1e-12)
        assert np.linalg.norm(c_sparse[k].toarray()) == pytest.approx(1.0)


def test_a_batch_trained_model_stores_and_reloads_and_ranks_like_the_one_trained_alone(world):
    space, bg, background, older = world
    people = readers(background, older, n=4, seed=7)
    batch = fit_readers(people, space, bg, NOW)
    for profile, model in zip(people, batch):
        stored = persist.loads(persist.dumps(calibrate(model, space, bg)), profile.user_id)
        alone = train(profile, space, bg, NOW)
        np.testing.assert_allclose(rank_scores(stored, space, bg), rank_scores(alone, space, bg), rtol=0, atol=1e-4)


def test_a_stored_model_keeps_no_interest_centroids_and_reads_back_whole_alone_or_in_a_batch(world):
    import dataclasses
    import pickle

    space, bg, background, older = world
    people = readers(background, older, n=6, seed=3)
    fitted = fit_readers(people, space, bg, NOW)
    many = persist.loads_many([(p.user_id, persist.dumps(m)) for p, m in zip(people, fitted)])
    for profile, model in zip(people, fitted):
        blob = persist.dumps(model)
        stored = pickle.loads(blob)[0]
        assert not {"centroids_sparse", "centroids_dense"} & set(vars(stored))      # derived, never kept
        for back in (persist.loads(blob, profile.user_id), many[profile.user_id]):
            assert_same_model(back, model)
            assert [f.name for f in dataclasses.fields(back)] == [f.name for f in dataclasses.fields(model)]
            assert back.n_interests == model.n_interests
    assert isinstance(persist.loads_many([("x", b"garbage")])["x"], StoredModelError)


def test_a_fitted_model_carries_the_row_keys_a_stored_copy_of_it_gets(world):
    from digestd.rank.pool import reader_rows, row_keys

    space, bg, background, older = world
    people = readers(background, older, n=8, seed=5)
    for profile, model in zip(people, fit_readers(people, space, bg, NOW)):
        back = persist.loads(persist.dumps(model), profile.user_id)
        assert reader_rows(model) == reader_rows(back)
        assert reader_rows(model) == (row_keys(model.pos_sparse, model.pos_dense), row_keys(model.neg_sparse, model.neg_dense))
        assert model.pos_sparse.has_sorted_indices and model.neg_sparse.has_sorted_indices


def test_a_stored_model_brings_its_row_keys_and_is_not_hashed_again(world, monkeypatch):
    import pickle

    from digestd.rank import pool
    from digestd.rank.pool import reader_rows

    space, bg, background, older = world
    people = readers(background, older, n=4, seed=9)
    fitted = fit_readers(people, space, bg, NOW)
    blobs = [(p.user_id, persist.dumps(m)) for p, m in zip(people, fitted)]
    # Keys that do not fit the rows (a damaged blob) are not trusted: they are hashed again.
    model, pos_keys, neg_keys = pickle.loads(blobs[0][1])
    damaged = persist.loads(pickle.dumps((model, pos_keys[:-1], neg_keys)), people[0].user_id)
    assert reader_rows(damaged) == reader_rows(fitted[0])

    def no_hashing(*a, **k):
        raise AssertionError("a stored model's rows were hashed again")

    monkeypatch.setattr(pool, "row_keys", no_hashing)
    loaded = persist.loads_many(blobs)
    for p, m in zip(people, fitted):
        assert reader_rows(loaded[p.user_id]) == reader_rows(m)


def test_each_readers_sparse_gram_from_the_batch_product_is_their_rows_times_their_rows_bit_for_bit(world):
    _, bg, _, _ = world
    rows = bg.sparse[:60]
    sizes = np.array([1, 7, 12, 3, 20, 17])           # readers' anchors, one reader after the other
    gs, _ = interests_module.gram_blocks(rows, bg.dense[:60], sizes, int(sizes.max()))
    for r, lo in enumerate(np.r_[0, np.cumsum(sizes)[:-1]]):
        own = rows[lo:lo + sizes[r]]
        alone = (own @ own.T).toarray()
        assert gs[r, :sizes[r], :sizes[r]].tobytes() == alone.tobytes()
        assert not gs[r, sizes[r]:].any() and not gs[r, :, sizes[r]:].any()
