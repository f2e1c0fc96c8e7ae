"""The batched ranker: many readers scored and selected together behave like each reader alone."""
from __future__ import annotations

import dataclasses
import importlib
import datetime as dt
import random
from pathlib import Path

import numpy as np
import pytest

from digestd import evaluate
from digestd.models import PaperText, ProfileInput, Vote
from digestd.rank import (
    calibrate, calibrate_readers, fit, fit_space, prepare_pool, reader_interest, score_readers, select,
    select_readers,
)
from digestd.rank import pool as pool_module
from digestd.rank.closeness import nearest_anchor_at

NOW = dt.datetime(2025, 5, 20, 7, 0, tzinfo=dt.timezone.utc)
PAPERS = Path(__file__).parent / "data" / "eval" / "papers.jsonl"


@pytest.fixture(scope="module")
def world():
    """200 real CiteULike abstracts: the first 150 are the background, the last 50 today's papers;
    30 readers who liked (and some disliked) background papers, a few with keywords."""
    papers = evaluate.load_papers(str(PAPERS))
    background, today = papers[:150], papers[150:]
    space = fit_space(papers)
    bg_pool = prepare_pool(space, background)
    rng = random.Random(7)
    profiles = []
    for u in range(30):
        liked = rng.sample(background, 3 + u % 5)
        disliked = rng.sample([p for p in background if p not in liked], u % 3)
        votes = [Vote(p, +1, NOW - dt.timedelta(days=i)) for i, p in enumerate(liked)]
        votes += [Vote(p, -1, NOW - dt.timedelta(days=1)) for p in disliked]
        keywords = ["gene expression"] if u % 4 == 0 else []
        profiles.append(ProfileInput(f"reader{u}", keywords=keywords, votes=votes))
    models = [fit(p, space, bg_pool.feats, NOW) for p in profiles]
    calibrate_readers(models, bg_pool)
    return space, background, today, models


def test_a_reader_scored_alone_and_inside_a_batch_of_many_gets_the_same_scores_and_picks(world):
    space, _, today, models = world
    pool = prepare_pool(space, today)
    together = score_readers(models, pool)
    eligible = np.ones(together.shape, dtype=bool)
    sels = select_readers(models, pool, together, eligible, [6] * len(models), explore=[True] * len(models),
                          min_scores=[float("-inf")] * len(models), now=NOW)
    for u, model in enumerate(models):
        alone = score_readers([model], pool)[0]
        np.testing.assert_allclose(alone, together[u], rtol=1e-4, atol=1e-4)
        one = select(model, space, pool.feats, 6, explore=True, min_score=float("-inf"), now=NOW)
        assert [(p.key, p.explore, p.reason, p.highlight) for p in one.picks] == \
            [(p.key, p.explore, p.reason, p.highlight) for p in sels[u].picks]
    assert len({tuple(p.key for p in s.picks) for s in sels}) > 10      # readers differ, not one list for all


def test_calibrating_readers_together_gives_each_the_same_threshold_as_alone(world):
    space, background, _, models = world
    bg_pool = prepare_pool(space, background)
    for model in models[:8]:
        again = calibrate(dataclasses.replace(model, mu={}, sd={}, threshold=0.0), space, bg_pool.feats)
        # a quantile: float32 noise can move it to the neighbouring background score
        assert again.threshold == pytest.approx(model.threshold, rel=1e-3, abs=1e-3)
        assert again.mu.keys() == model.mu.keys()
        for name in model.mu:
            assert again.mu[name] == pytest.approx(model.mu[name], rel=1e-4, abs=1e-5)


def test_no_pick_is_outside_a_readers_eligibility_mask_nor_a_paper_they_voted_on(world):
    space, background, today, models = world
    # Today's pool holds background papers too, so readers see papers they voted on again.
    pool = prepare_pool(space, today + background[:60])
    scores = score_readers(models, pool)
    rng = np.random.default_rng(3)
    eligible = rng.random(scores.shape) < 0.6
    sels = select_readers(models, pool, scores, eligible, [8] * len(models), explore=[True] * len(models),
                          min_scores=[float("-inf")] * len(models), now=NOW)
    picked_voted = 0
    for u, (model, sel) in enumerate(zip(models, sels)):
        assert sel.picks
        rows = [pool.index[p.key] for p in sel.picks]
        assert eligible[u, rows].all()
        assert not ({p.key for p in sel.picks} & model.known_keys)
        # the mask alone would have allowed some voted papers: the rule is what kept them out
        picked_voted += int(eligible[u, [pool.index[k] for k in model.known_keys if k in pool.index]].any())
    assert picked_voted > 0


def test_the_exploration_pick_lies_outside_the_readers_interests(world):
    space, _, today, models = world
    pool = prepare_pool(space, today)
    scores = score_readers(models, pool)
    inside = reader_interest(models, pool)
    sels = select_readers(models, pool, scores, np.ones(scores.shape, bool), [5] * len(models),
                          explore=[True] * len(models), min_scores=[float("-inf")] * len(models), now=NOW)
    near = pool.diffusion(models[0].params).near
    for u, (model, sel) in enumerate(zip(models, sels)):
        flagged = [p for p in sel.picks if p.explore]
        assert len(flagged) == 1 and "explore" in flagged[0].reason.lower()
        j = pool.index[flagged[0].key]
        assert inside[u, j] < model.params.cluster_threshold
        # No liked paper, seed or keyword is among the pick's nearest papers of the day.
        assert nearest_anchor_at(model, pool, np.array([j]))[0] < near[j]


def test_real_readers_reasons_do_not_repeat_one_phrase_across_their_digest(world):
    space, _, today, models = world
    pool = prepare_pool(space, today)
    scores = score_readers(models, pool)
    sels = select_readers(models, pool, scores, np.ones(scores.shape, bool), [8] * len(models),
                          explore=[False] * len(models), min_scores=[float("-inf")] * len(models), now=NOW)
    for model, sel in zip(models, sels):
        reasons = [p.reason for p in sel.picks]
        assert len(reasons) == 8
        assert max(reasons.count(r) for r in reasons) <= 2, reasons
        for kw in model.keywords:
            assert sum(f"“{kw}”" in r for r in reasons) <= 1, reasons
        for a in model.anchors:
            assert sum(a.title[:40] in r for r in reasons) <= 2, reasons


def test_no_paper_is_labelled_outside_your_topics_when_every_paper_is_on_them(world):
    space, _, today, models = world
    pool = prepare_pool(space, today)
    scores = score_readers(models[:1], pool)
    everything_near = pool.diffusion(models[0].params)
    saved = everything_near.near
    everything_near.near = np.full(pool.n, -np.inf)           # every anchor counts as near every paper
    try:
        sel = select_readers(models[:1], pool, scores, np.ones(scores.shape, bool), [5], explore=[True],
                             min_scores=[float("-inf")], now=NOW)[0]
    finally:
        everything_near.near = saved
    assert len(sel.picks) == 4 and not any(p.explore for p in sel.picks)


def test_interest_similarity_equals_the_product_with_the_models_own_centroids(world):
    space, _, today, models = world
    pool = prepare_pool(space, today)
    got = reader_interest(models, pool)
    mix = models[0].params.dense_mix
    for u, m in enumerate(models):
        c_sparse, c_dense = m.centroids()
        direct = ((1 - mix) * pool.feats.sparse_dot(c_sparse) + mix * (pool.feats.dense @ c_dense.T)).max(axis=1)
        np.testing.assert_allclose(got[u], direct, rtol=1e-4, atol=1e-5)


def test_near_duplicates_are_collapsed_for_every_reader_of_a_batch(world):
    space, _, today, models = world
    twins = [PaperText(key=f"{p.key}-v2", title=p.title.upper(), abstract=p.abstract) for p in today]
    pool = prepare_pool(space, today + twins)
    scores = score_readers(models, pool)
    sels = select_readers(models, pool, scores, np.ones(scores.shape, bool), [10] * len(models),
                          explore=[False] * len(models), min_scores=[float("-inf")] * len(models), now=NOW,
                          explain=False)
    for sel in sels:
        bases = [p.key.removesuffix("-v2") for p in sel.picks]
        assert len(sel.picks) == 10 and len(set(bases)) == len(bases)


def test_the_threshold_cuts_each_reader_at_their_own_calibrated_zero(world):
    space, _, today, models = world
    pool = prepare_pool(space, today)
    scores = score_readers(models, pool)
    sels = select_readers(models, pool, scores, np.ones(scores.shape, bool), [50] * len(models),
                          explore=[False] * len(models), min_scores=[None] * len(models), now=NOW, explain=False)
    for u, sel in enumerate(sels):
        assert all(p.score >= 0 for p in sel.picks)
        assert len(sel.picks) < 50


def test_the_dense_operator_and_the_block_iteration_give_the_same_scores(world, monkeypatch):
    space, _, today, models = world
    dense = score_readers(models[:5], prepare_pool(space, today))
    monkeypatch.setattr(pool_module, "DENSE_OPERATOR_MAX", 10)
    iterated_pool = prepare_pool(space, list(today))
    assert iterated_pool.diffusion(models[0].params).operator is None
    np.testing.assert_allclose(score_readers(models[:5], iterated_pool), dense, rtol=1e-3, atol=1e-3)


def test_a_reader_we_know_nothing_about_gets_only_the_exploration_pick(world):
    space, background, today, models = world
    cold = fit(ProfileInput("newcomer"), space, prepare_pool(space, background).feats, NOW)
    pool = prepare_pool(space, today)
    batch = [models[0], cold]
    scores = score_readers(batch, pool)
    assert not scores[1].any()
    sels = select_readers(batch, pool, scores, np.ones(scores.shape, bool), [5, 5], explore=[True, True],
                          min_scores=[None, None], now=NOW)
    assert [p.explore for p in sels[1].picks] == [True] and sels[1].note


def test_the_exploration_draw_is_the_same_whether_all_papers_or_only_the_best_are_checked_first(world, monkeypatch):
    select_module = importlib.import_module("digestd.rank.select")      # ``rank.select`` is the function
    space, background, today, models = world
    pool = prepare_pool(space, today + background[60:])
    scores = score_readers(models, pool)

    def explore_picks():
        sels = select_readers(models, pool, scores, np.ones(scores.shape, bool), [4] * len(models),
                              explore=[True] * len(models), min_scores=[None] * len(models), now=NOW, explain=False)
        return [[p.key for p in s.picks if p.explore] for s in sels]

    monkeypatch.setattr(select_module, "EXPLORE_SCAN", 80)        # settles early: 140 papers, few inside
    head_first = explore_picks()
    monkeypatch.setattr(select_module, "EXPLORE_SCAN", 10 ** 6)
    assert head_first == explore_picks()
    assert all(head_first)
