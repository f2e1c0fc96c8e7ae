"""A reader's pins (always in the digest, marked) and exclusions (never), from the config to the
stored digest."""
from __future__ import annotations

import datetime as dt

import pytest

from digestd import pipeline
from digestd.app import build_app
from digestd.clock import FixedClock
from digestd.config import parse_config
from digestd.errors import ConfigError
from digestd.models import FetchedPaper, PaperText, ProfileInput, Vote
from digestd.rank import Controls, FeatureSpace, select, train
from digestd.rank.controls import control_masks
from digestd.store import open_store

NOW = dt.datetime(2025, 5, 20, 7, 0, tzinfo=dt.timezone.utc)


def _p(key, title, abstract="", authors=()):
    return PaperText(key=key, title=title, abstract=abstract, authors=list(authors))


def test_a_keyword_matches_a_whole_phrase_whatever_its_case_accents_and_plural():
    papers = [_p("a", "Graph Neural Networks for molecules"), _p("b", "A graph of neural activity"),
              _p("c", "Subgraph neural network pruning"), _p("d", "On Schrödinger Bridges")]
    m = control_masks([Controls(pin_keywords=("graph neural network",)), Controls(pin_keywords=("schrodinger bridge",))],
                      papers)
    assert m.pinned[0].tolist() == [True, False, False, False]
    assert m.pinned[1].tolist() == [False, False, False, True]


def test_an_author_pin_matches_by_surname_and_initial_and_an_exclusion_wins_over_a_pin():
    papers = [_p("a", "Sparse coding", authors=["Jörg K. Müller"]), _p("b", "Dense coding", authors=["Anna Muller"]),
              _p("c", "Sparse coding of crypto scams", authors=["J. Muller"])]
    m = control_masks([Controls(pin_authors=("J. Muller",), exclude_keywords=("crypto",))], papers)
    assert m.pinned[0].tolist() == [True, False, False]
    assert m.excluded[0].tolist() == [False, False, True]
    assert m.pinned_by[0] == {0: "by J. Muller"}


RETRIEVAL = ("Dense passage retrieval with dual encoders for open-domain question answering. Relevant passages "
             "rank above negatives in nearest neighbour search.")
SPEECH = ("Automatic speech recognition with acoustic models trained on audio. Word error rate drops on noisy speech.")


def _stream(tag, n=8):
    out = []
    for i in range(n):
        out.append(_p(f"r-{tag}{i}", f"Retrieval study {tag}{i}", RETRIEVAL + f" Setting {i}."))
        out.append(_p(f"s-{tag}{i}", f"Speech study {tag}{i}", SPEECH + f" Setting {i}.", authors=[f"Speaker {i}"]))
    return out


@pytest.fixture(scope="module")
def ranked():
    background, today = _stream("bg"), _stream("day")
    today.append(_p("pinned", "Speech in birds", SPEECH, authors=["Ada Lovelace"]))
    space = FeatureSpace.fit(background + today)
    likes = [Vote(_p(f"liked{i}", f"Retrieval liked {i}", RETRIEVAL), +1, NOW - dt.timedelta(days=i)) for i in range(3)]
    model = train(ProfileInput("ana", votes=likes), space, background, NOW)
    return space, today, model


def test_a_pinned_paper_comes_first_and_marked_even_when_it_scores_low(ranked):
    space, today, model = ranked
    plain = select(model, space, today, 3, explore=False, now=NOW)
    assert "pinned" not in [p.key for p in plain.picks]
    sel = select(model, space, today, 3, explore=False, now=NOW, controls=Controls(pin_authors=("A. Lovelace",)))
    assert sel.picks[0].key == "pinned" and sel.picks[0].pinned
    assert sel.picks[0].reason == "Pinned: by A. Lovelace"
    assert len(sel.picks) == 3 and not any(p.pinned for p in sel.picks[1:])


def test_an_excluded_keyword_keeps_even_the_best_papers_out(ranked):
    space, today, model = ranked
    sel = select(model, space, today, 5, explore=False, min_score=float("-inf"), now=NOW,
                 controls=Controls(exclude_keywords=("passage retrieval",)))
    assert sel.picks and not any(p.key.startswith("r-") for p in sel.picks)


def test_pins_never_make_a_digest_longer_than_its_size(ranked):
    space, today, model = ranked
    sel = select(model, space, today, 2, explore=True, now=NOW, controls=Controls(pin_keywords=("speech",)))
    assert len(sel.picks) == 2 and all(p.pinned for p in sel.picks)


CONFIG = """
[digestd]
data_dir = "var"
[ranking]
backend = "tfidf"
[[sources]]
name = "blog"
type = "feed"
url = "https://example.org/feed.xml"

[[users]]
id = "alice"
email = "alice@example.org"
keywords = ["dense passage retrieval"]
send_at = "06:00"
{controls}
"""


@pytest.mark.parametrize("controls, problem", [
    ('pin_keywords = ["  "]', "users[0].pin_keywords: '  ' has no letters or digits to match"),
    ('pin_authors = ["..."]', "users[0].pin_authors: '...' is not an author name"),
    ('pin_keywords = ["Speech"]\nexclude_keywords = ["speech"]',
     "users[0]: pin_keywords: 'Speech' is also in exclude_keywords (an exclusion would always win)"),
    ('exclude_keywords = "speech"', None),
])
def test_bad_controls_are_one_error_naming_the_reader_and_key(tmp_path, controls, problem):
    with pytest.raises(ConfigError) as e:
        parse_config(CONFIG.format(controls=controls), config_dir=tmp_path)
    if problem is None:
        assert e.value.problems[0][0] == "users[0].exclude_keywords"
    else:
        assert problem in str(e.value)


def test_a_composed_digest_keeps_the_pin_mark_and_never_lists_an_excluded_paper(tmp_path, database_url):
    settings = parse_config(CONFIG.format(controls='pin_authors = ["A. Lovelace"]\nexclude_keywords = ["noisy speech"]'),
                            config_dir=tmp_path)
    store = open_store(database_url)
    papers = [*_stream("day"), _p("pinned", "Birdsong in the wild", "Songbirds learn their songs.", ["Ada Lovelace"])]
    store.upsert_papers("blog", NOW.date(), [FetchedPaper(key=p.key, title=p.title, abstract=p.abstract,
                                                          authors=p.authors) for p in papers],
                        NOW - dt.timedelta(hours=1))
    app = build_app(settings, clock=FixedClock(NOW), store=store)
    pipeline.deliver_due(app)
    digest = store.digest_status()["alice"]
    assert digest.status == "sent"
    items = store.digest_items(digest.id)
    assert items[0].paper_key == "pinned" and items[0].pinned and items[0].reason == "Pinned: by A. Lovelace"
    assert len(items) > 1 and not any(it.pinned for it in items[1:])
    assert not any(it.paper_key.startswith("s-") for it in items)
    view = pipeline.preview(app, "alice", NOW.date())
    assert view.papers[0].pinned and not view.papers[1].pinned
    app.close()
