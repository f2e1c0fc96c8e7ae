"""Behaviour of the shipped ranker on small hand-made streams."""
from __future__ import annotations

import datetime as dt
import pickle

import pytest

from digestd.models import PaperText, ProfileInput, Vote
from digestd.rank import FeatureSpace, UserModel, featurize, rank_for_user, select, train

NOW = dt.datetime(2025, 5, 20, 7, 0, tzinfo=dt.timezone.utc)

TOPICS = {
    "retrieval": ("dense retrieval", "Dense passage retrieval with dual encoders for open-domain question answering. "
                  "We train embedding models so that relevant passages rank above negatives in nearest neighbour search. "
                  "Retrieval quality improves with hard negatives and contrastive embedding training."),
    "protein": ("protein folding", "Predicting protein structure from amino acid sequence. Our network folds proteins "
                "and predicts residue contacts and backbone geometry. Protein folding accuracy approaches "
                "experimental structures on held-out protein families."),
    "vision": ("image segmentation", "Semantic segmentation of street images with convolutional networks. "
               "Pixels are labelled with object classes; segmentation masks are refined with a decoder. "
               "Image segmentation benchmarks show gains on urban scenes."),
    "speech": ("speech recognition", "Automatic speech recognition with acoustic models trained on audio. "
               "The recogniser transcribes spoken utterances; word error rate drops on noisy speech. "
               "Speech recognition for low-resource languages benefits from pretraining."),
    "robots": ("robot grasping", "Robotic grasping of unknown objects with a manipulator arm. The robot plans grasps "
               "from depth sensing and tactile feedback. Grasp success rises in cluttered bins."),
}
VARIANTS = ["A study of", "Towards better", "Scaling", "Revisiting", "Efficient", "Robust", "On", "Learning"]


def _paper(topic: str, i: int, tag: str = "") -> PaperText:
    name, body = TOPICS[topic]
    extra = f" Variant {i} explores setting number {i} {tag}."
    return PaperText(key=f"{topic}-{tag}{i}", title=f"{VARIANTS[i % len(VARIANTS)]} {name} {tag}{i}",
                     abstract=body + extra)


def _stream(tag: str, per_topic: int = 6) -> list[PaperText]:
    return [_paper(t, i, tag) for t in TOPICS for i in range(per_topic)]


@pytest.fixture(scope="module")
def corpus():
    background = _stream("bg", 8)
    today = _stream("day", 6)
    space = FeatureSpace.fit(background + today)
    return space, background, today


def _liked(topics, n=3, days_ago=2):
    return [Vote(_paper(t, i, "liked"), +1, NOW - dt.timedelta(days=days_ago + i)) for t in topics for i in range(n)]


def test_a_user_who_likes_two_distinct_topics_gets_both_in_the_top_picks(corpus):
    space, background, today = corpus
    profile = ProfileInput("ana", votes=_liked(["retrieval", "protein"]))
    model = train(profile, space, background, NOW)
    sel = select(model, space, today, 6, explore=False, min_score=float("-inf"), now=NOW)
    top_topics = {p.key.split("-")[0] for p in sel.picks[:4]}
    assert top_topics == {"retrieval", "protein"}


def test_thumbs_down_pushes_similar_papers_down(corpus):
    space, background, today = corpus
    likes = _liked(["retrieval", "vision"])
    before = train(ProfileInput("bo", votes=likes), space, background, NOW)
    downs = [Vote(_paper("vision", i, "hated"), -1, NOW - dt.timedelta(days=1)) for i in range(4)]
    after = train(ProfileInput("bo", votes=likes + downs), space, background, NOW)

    def rank_of_vision(model):
        sel = select(model, space, today, len(today), explore=False, min_score=float("-inf"), now=NOW)
        return sum(i for i, p in enumerate(sel.picks) if p.key.startswith("vision")) / 6

    assert rank_of_vision(after) > rank_of_vision(before)


def test_excluded_keys_are_never_returned(corpus):
    space, background, today = corpus
    model = train(ProfileInput("cy", votes=_liked(["speech"])), space, background, NOW)
    excluded = {p.key for p in today if p.key.startswith("speech")}
    sel = select(model, space, today, len(today), exclude=excluded, min_score=float("-inf"), now=NOW)
    assert sel.picks and not ({p.key for p in sel.picks} & excluded)


def test_near_duplicates_are_collapsed_into_one_pick(corpus):
    space, background, today = corpus
    model = train(ProfileInput("di", votes=_liked(["robots"])), space, background, NOW)
    original = _paper("robots", 1, "day")
    twin = PaperText(key="robots-from-another-source", title=original.title.upper() + " ",
                     abstract=original.abstract)
    sel = select(model, space, today + [twin], 10, explore=False, min_score=float("-inf"), now=NOW)
    keys = [p.key for p in sel.picks]
    assert not (original.key in keys and twin.key in keys)
    assert original.key in keys or twin.key in keys


def test_the_explore_pick_is_marked_and_there_is_at_most_one(corpus):
    space, background, today = corpus
    model = train(ProfileInput("ed", votes=_liked(["protein"])), space, background, NOW)
    sel = select(model, space, today, 5, explore=True, min_score=float("-inf"), now=NOW)
    flagged = [p for p in sel.picks if p.explore]
    assert len(flagged) == 1
    assert not flagged[0].key.startswith("protein")
    assert "explore" in flagged[0].reason.lower()
    none = select(model, space, today, 5, explore=False, min_score=float("-inf"), now=NOW)
    assert not any(p.explore for p in none.picks)


def test_a_thin_day_gives_a_short_list_and_a_day_with_nothing_relevant_says_so(corpus):
    space, background, today = corpus
    model = train(ProfileInput("fa", votes=_liked(["protein"])), space, background, NOW)
    thin = [p for p in today if not p.key.startswith("protein")] + [_paper("protein", 0, "day")]
    sel = select(model, space, thin, 10, explore=False, now=NOW)
    assert 1 <= len(sel.picks) < 10
    assert sel.picks[0].key == "protein-day0"
    nothing = [p for p in today if not p.key.startswith("protein")]
    sel = select(model, space, nothing[:3], 10, explore=False, min_score=5.0, now=NOW)
    assert sel.picks == [] and sel.note


def test_reasons_name_the_liked_paper_and_highlight_a_sentence_of_the_abstract(corpus):
    space, background, today = corpus
    votes = _liked(["retrieval"], n=1)
    model = train(ProfileInput("gu", votes=votes), space, background, NOW)
    sel = select(model, space, today, 3, explore=False, min_score=float("-inf"), now=NOW)
    pick = sel.picks[0]
    paper = next(p for p in today if p.key == pick.key)
    assert pick.because_of == votes[0].paper.key
    assert votes[0].paper.title in pick.reason
    assert pick.highlight and pick.highlight in paper.abstract
    assert "retrieval" in pick.matched_terms or "embedding" in pick.matched_terms


def test_cold_start_from_keywords_ranks_matching_papers_first(corpus):
    space, background, today = corpus
    sel = rank_for_user(ProfileInput("hu", keywords=["speech recognition"]), today, background, 3,
                        explore=False, now=NOW, space=space)
    assert sel.picks and all(p.key.startswith("speech") for p in sel.picks)
    assert "keyword" in sel.picks[0].reason and "“speech recognition”" in sel.picks[0].reason


def test_newer_likes_weigh_more_than_old_ones(corpus):
    space, background, today = corpus
    old = [Vote(_paper("vision", i, "liked"), +1, NOW - dt.timedelta(days=900 + i)) for i in range(3)]
    new = [Vote(_paper("speech", i, "liked"), +1, NOW - dt.timedelta(days=1 + i)) for i in range(3)]
    model = train(ProfileInput("iv", votes=old + new), space, background, NOW)
    sel = select(model, space, today, 2, explore=False, min_score=float("-inf"), now=NOW)
    assert sel.picks[0].key.startswith("speech")


def test_training_is_deterministic_and_the_model_pickles(corpus):
    space, background, today = corpus
    profile = ProfileInput("jo", votes=_liked(["retrieval", "robots"]))
    a = select(train(profile, space, background, NOW), space, today, 8, now=NOW)
    model = pickle.loads(pickle.dumps(train(profile, space, background, NOW)))
    assert isinstance(model, UserModel)
    space2 = pickle.loads(pickle.dumps(space))
    b = select(model, space2, today, 8, now=NOW)
    assert [(p.key, round(p.score, 6), p.explore) for p in a.picks] == [(p.key, round(p.score, 6), p.explore) for p in b.picks]


def test_feature_space_columns_are_stable_as_the_corpus_grows(corpus):
    space, background, today = corpus
    bigger = FeatureSpace.fit(background + today + _stream("more", 3))
    a = space.transform(today[:1])
    b = bigger.transform(today[:1])
    assert list(a.indices) == list(b.indices)
    assert featurize(space, today).dense.shape[0] == len(today)


def test_a_liked_paper_is_named_in_at_most_two_reasons_of_a_digest(corpus):
    space, background, today = corpus
    model = train(ProfileInput("iv", keywords=["dense retrieval"], votes=_liked(["retrieval"], n=2)),
                  space, background, NOW)
    sel = select(model, space, today, 6, explore=False, min_score=float("-inf"), now=NOW)
    reasons = [p.reason for p in sel.picks]
    assert len(reasons) == 6
    for title in [v.paper.title for v in _liked(["retrieval"], n=2)]:
        assert sum(title in r for r in reasons) <= 2, (title, reasons)
    assert sum("keyword “dense retrieval”" in r for r in reasons) <= 1, reasons


def test_the_highlight_is_the_sentence_that_says_what_the_paper_does():
    papers = [PaperText(key=f"g{i}", title=f"Graph pooling {i}",
                        abstract="Graph neural networks are widely used for learning on graph data. "
                                 f"We propose a hierarchical pooling operator for graph neural networks, variant {i}. "
                                 "Benchmarks follow standard splits.") for i in range(6)]
    others = [_paper(t, i, "bg") for t in TOPICS for i in range(4)]
    space = FeatureSpace.fit(papers + others)
    liked = [Vote(PaperText(key="l", title="Learning on graph data with graph neural networks",
                            abstract="Graph neural networks learn on graph data."), +1, NOW)]
    model = train(ProfileInput("jo", votes=liked), space, others, NOW)
    sel = select(model, space, papers, 3, explore=False, min_score=float("-inf"), now=NOW)
    assert sel.picks and all(p.highlight.startswith("We propose a hierarchical pooling") for p in sel.picks)
