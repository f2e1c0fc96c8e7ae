"""`digestd eval` on a small fixture of real CiteULike users."""
from __future__ import annotations

import io
import json
from pathlib import Path

from digestd import evaluate

DATA = Path(__file__).parent / "data" / "eval"
PAPERS = str(DATA / "papers.jsonl")
RATINGS = str(DATA / "ratings.csv")
FAST = ["digestd", "random", "tfidf_centroid", "asl_svm"]


def test_eval_writes_the_json_shape_and_a_png_plot(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    code = evaluate.run(PAPERS, RATINGS, k=3, n=10, json_path=str(tmp_path / "r.json"), backend="tfidf",
                        plot_path=str(tmp_path / "r.png"), methods=FAST, out=out, err=err)
    assert code == 0, err.getvalue()
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["users"] > 0 and doc["K"] == 3 and doc["N"] == 10
    assert set(doc["methods"]) == set(FAST)
    for m in doc["methods"].values():
        assert set(m) >= {"recall", "ndcg"} and 0.0 <= m["recall"] <= 1.0 and 0.0 <= m["ndcg"] <= 1.0
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "digestd" in out.getvalue() and "recall@10" in out.getvalue()


def test_the_default_eval_ranks_with_the_encoder_beside_tfidf_and_the_baselines(tmp_path):
    from test_embeddings import FakeEncoder

    out, err = io.StringIO(), io.StringIO()
    code = evaluate.run(PAPERS, RATINGS, k=3, n=10, out=out, err=err, cache_dir=str(tmp_path),
                        embedder=FakeEncoder(), json_path=str(tmp_path / "r.json"))
    assert code == 0, err.getvalue()
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["backend"] == "embeddings"
    assert list(doc["methods"]) == ["digestd", "digestd_tfidf", "random", "tfidf_centroid", "asl_svm", "zotero_emb"]
    assert "digestd = the embeddings backend" in out.getvalue().splitlines()[0]


def test_a_plot_without_matplotlib_is_one_line_saying_how_to_install_it_before_any_ranking(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    err = io.StringIO()
    code = evaluate.run(PAPERS, RATINGS, k=3, n=10, backend="tfidf", plot_path=str(tmp_path / "r.png"),
                        methods=FAST, out=io.StringIO(), err=err)
    assert code == 2
    assert err.getvalue().strip().splitlines() == [
        "digestd eval: error: --plot needs matplotlib: pip install 'digestd[plot]'"]
    assert not (tmp_path / "r.png").exists()


def test_the_digestd_method_beats_random_on_the_fixture():
    out = io.StringIO()
    papers = evaluate.load_papers(PAPERS)
    ratings, _ = evaluate.load_ratings(RATINGS, {p.key for p in papers})
    cases = evaluate.build_cases(ratings, 3)
    res = evaluate.evaluate(papers, cases, ["digestd", "random"], err=out, progress=False)
    assert res["digestd"]["recall"][9] > res["random"]["recall"][9]


def test_the_protocol_trains_on_the_k_earliest_likes_and_tests_on_the_rest():
    rows = [evaluate.Rating("u", f"p{i}", 1, evaluate._parse_time(f"2020-01-{10 + i:02d}T00:00:00Z"), i)
            for i in range(9)]
    rows.append(evaluate.Rating("u", "bad", -1, evaluate._parse_time("2020-01-11T00:00:00Z"), 20))
    rows.append(evaluate.Rating("u", "late-bad", -1, evaluate._parse_time("2020-01-30T00:00:00Z"), 21))
    (case,) = evaluate.build_cases(rows, 3)
    assert [r.paper for r in case.train_pos] == ["p0", "p1", "p2"]
    assert [r.paper for r in case.train_neg] == ["bad"]
    assert case.test == {f"p{i}" for i in range(3, 9)}
    assert evaluate.build_cases(rows, 5) == []      # 9 likes < K + 5


def test_recall_divides_by_the_smaller_of_n_and_the_test_size():
    recall, ndcg = evaluate.curves(["a", "x", "b"], {"a", "b"}, max_n=3)
    assert list(recall) == [1.0, 0.5, 1.0]      # @1: 1 hit of min(1, 2); @2: 1 of 2; @3: 2 of 2
    assert ndcg[0] == 1.0 and 0 < ndcg[2] < 1


def test_a_missing_file_is_one_clear_line(tmp_path):
    err = io.StringIO()
    assert evaluate.run(str(tmp_path / "nope.jsonl"), RATINGS, out=io.StringIO(), err=err) == 2
    assert "nope.jsonl" in err.getvalue() and len(err.getvalue().strip().splitlines()) == 1


def test_a_malformed_line_names_the_file_and_line(tmp_path):
    bad = tmp_path / "ratings.csv"
    bad.write_text("user_id,paper_id,rating,time\nu1,citeulike:1,1,2011-01-01T00:00:00Z\nu1,citeulike:2,yes,2011\n")
    err = io.StringIO()
    assert evaluate.run(PAPERS, str(bad), methods=["random"], out=io.StringIO(), err=err) == 2
    assert f"{bad}:3:" in err.getvalue()


def test_both_digestd_backends_in_one_eval_rank_exactly_as_if_each_fitted_its_own_space():
    import numpy as np

    from test_embeddings import FakeEncoder

    from digestd.eval_methods import Context, _digestd_setup
    from digestd.rank import featurize, fit_space, params_for
    from digestd.rank.encode_once import PaperEncoder

    papers = evaluate.load_papers(PAPERS)
    ctx = Context(papers, "embeddings", io.StringIO(), embedder=FakeEncoder())
    for backend in ("embeddings", "tfidf"):
        space, pool = _digestd_setup(ctx, params_for(backend), backend)
        own = fit_space(papers, backend, encoder=PaperEncoder(FakeEncoder()) if backend == "embeddings" else None)
        alone = featurize(own, papers)
        assert space.backend == backend
        assert np.array_equal(space.idf, own.idf) and np.array_equal(space.svd_components, own.svd_components)
        assert (pool.feats.sparse != alone.sparse).nnz == 0
        assert np.array_equal(pool.feats.dense, alone.dense)
    assert ctx._cache["space"].backend == "tfidf"       # fitted once, shared by both
