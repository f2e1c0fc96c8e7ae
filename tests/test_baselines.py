"""The eval baselines stand for arxiv-sanity-lite and a plain TF-IDF centroid as scikit-learn
computes them; digestd.baselines computes them without it and must agree with the real thing
(scikit-learn is in the test extra, as the reference)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digestd.baselines import Tfidf, linear_svm
from digestd.eval_protocol import build_cases, load_papers, load_ratings

text = pytest.importorskip("sklearn.feature_extraction.text")
svm = pytest.importorskip("sklearn.svm")

EVAL = Path(__file__).parent / "data" / "eval"
DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "citeulike-dev"
ASL_PATTERN = r"(?u)\b[a-zA-Z_][a-zA-Z0-9_]+\b"
# Accents, ligatures, non-Latin scripts, digits, underscores, stop words between content words.
ODD = ["Schrödinger's équation for naïve façades — the Ångström limit",
       "Ｆｕｌｌｗｉｄｔｈ ﬁnite ﬂows in 日本語 text, x_1 and H2O at 3.5 K",
       "the of and", "Über die Quantenmechanik der Stöße", "ÆSIR æther: a cœur, an Œuvre"]

SETTINGS = {
    # arxiv-sanity-lite's compute.py
    "asl": (dict(strip_accents="unicode", lowercase=True, analyzer="word", stop_words="english",
                 token_pattern=ASL_PATTERN, ngram_range=(1, 2), max_features=20000, norm="l2", use_idf=True,
                 smooth_idf=True, sublinear_tf=True, max_df=0.1, min_df=5),
            dict(strip_accents=True, token_pattern=ASL_PATTERN, ngram_max=2, max_features=20000,
                 sublinear_tf=True, max_df=0.1, min_df=5)),
    # the tfidf_centroid baseline
    "plain": (dict(stop_words="english", sublinear_tf=True, min_df=1), dict(sublinear_tf=True, min_df=1)),
    # the max_features cut with many terms tied on frequency at the cut
    "cut": (dict(stop_words="english", ngram_range=(1, 2), max_features=700, min_df=2, max_df=0.5),
            dict(ngram_max=2, max_features=700, min_df=2, max_df=0.5)),
}


def _texts(path: Path) -> list[str]:
    return [f"{p.title}. {p.abstract}" for p in load_papers(str(path))]


def _corpora():
    yield "eval", _texts(EVAL / "papers.jsonl") + ODD * 5
    if (DEV / "papers.jsonl").exists():
        yield "citeulike-dev", _texts(DEV / "papers.jsonl") + ODD * 5


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_the_tfidf_matrix_equals_scikit_learns_on_real_abstracts(setting):
    theirs_args, ours_args = SETTINGS[setting]
    for name, docs in _corpora():
        ref = text.TfidfVectorizer(**theirs_args)
        expected = ref.fit_transform(docs)
        ours = Tfidf(**ours_args)
        got = ours.fit_transform(docs)
        assert ours.vocabulary == ref.vocabulary_, name
        np.testing.assert_allclose(ours.idf, ref.idf_, rtol=0, atol=1e-12)
        assert got.shape == expected.shape
        assert abs(got - expected).max() <= 1e-12, name


def test_the_word_analyzer_tokenises_like_scikit_learns():
    for theirs_args, ours_args in SETTINGS.values():
        ref = text.TfidfVectorizer(**theirs_args).build_analyzer()
        ours = Tfidf(**ours_args)
        for doc in ODD:
            assert ours.analyze(doc) == ref(doc)


def _cases(root: Path):
    papers = load_papers(str(root / "papers.jsonl"))
    ratings, _ = load_ratings(str(root / "ratings.csv"), {p.key for p in papers})
    return papers, build_cases(ratings, 5)


def _check_svm_against_linear_svc(root: Path, max_cases: int) -> None:
    papers, cases = _cases(root)
    assert cases
    docs = [f"{p.title}. {p.abstract}" for p in papers]
    x = Tfidf(**SETTINGS["asl"][1]).fit_transform(docs)
    index = {p.key: i for i, p in enumerate(papers)}
    for case in cases[:max_cases]:
        y = np.zeros(len(papers))
        y[[index[r.paper] for r in case.train_pos]] = 1
        clf = svm.LinearSVC(class_weight="balanced", max_iter=10000, tol=1e-6, C=0.01).fit(x, y)
        expected = clf.decision_function(x)
        got = linear_svm(x, y, c=0.01)
        assert np.corrcoef(got, expected)[0, 1] > 1 - 1e-9, case.user
        assert np.abs(got - expected).max() < 1e-5, case.user          # liblinear stops at tol=1e-6
        top = list(np.argsort(-expected, kind="stable")[:20])
        assert list(np.argsort(-got, kind="stable")[:20]) == top, case.user


def test_the_svm_decision_values_equal_linear_svcs_on_real_users():
    _check_svm_against_linear_svc(EVAL, max_cases=10)


@pytest.mark.skipif(not (DEV / "ratings.csv").exists(), reason="needs ../shared/data/citeulike-dev")
def test_the_svm_decision_values_equal_linear_svcs_on_citeulike_users():
    _check_svm_against_linear_svc(DEV, max_cases=40)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")   # liblinear at tol=1e-12
def test_the_svm_reaches_the_optimum_liblinear_approaches_as_its_tolerance_tightens():
    """The two solvers stop at different points near one optimum: tightening liblinear's stopping
    tolerance must bring its decision values closer to ours."""
    papers, cases = _cases(EVAL)
    docs = [f"{p.title}. {p.abstract}" for p in papers]
    x = Tfidf(**SETTINGS["asl"][1]).fit_transform(docs)
    index = {p.key: i for i, p in enumerate(papers)}
    y = np.zeros(len(papers))
    y[[index[r.paper] for r in cases[0].train_pos]] = 1
    got = linear_svm(x, y, c=0.01)
    gaps = []
    for tol in (1e-2, 1e-6, 1e-12):
        clf = svm.LinearSVC(class_weight="balanced", max_iter=100000, tol=tol, C=0.01).fit(x, y)
        gaps.append(np.abs(clf.decision_function(x) - got).max())
    assert gaps[2] <= gaps[1] <= gaps[0]
    assert gaps[2] < 1e-9


def test_the_svm_is_the_balanced_squared_hinge_problem_with_a_regularised_intercept():
    """On a tiny dense problem the intercept's weight shrinks with the rest, as liblinear's bias
    feature does; scikit-learn's LinearSVC with a tight tolerance is the same point."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 6)) + 3.0          # far from the origin: the intercept matters
    y = (x[:, 0] + rng.normal(scale=0.5, size=40) > 3.4).astype(float)
    for c in (0.01, 1.0, 100.0):
        clf = svm.LinearSVC(class_weight="balanced", max_iter=100000, tol=1e-12, C=c).fit(x, y)
        np.testing.assert_allclose(linear_svm(x, y, c=c), clf.decision_function(x), rtol=0, atol=1e-7)


def test_the_svm_refuses_a_case_without_both_classes():
    with pytest.raises(ValueError):
        linear_svm(np.eye(3), np.ones(3), c=1.0)


def test_the_eval_and_a_refit_of_the_topics_run_where_scikit_learn_is_not_installed(tmp_path):
    """The default install has no scikit-learn: here it is made unimportable, and the baselines, the
    topic fit (digestd_tfidf refits the space) and the stored models' code identity still work."""
    import json
    import subprocess
    import sys

    code = ("import sys; sys.modules['sklearn'] = None\n"           # any import of it now fails
            "from digestd import evaluate\n"
            "from digestd.rank.persist import code_identity\n"
            "code_identity()\n"
            f"sys.exit(evaluate.run({str(EVAL / 'papers.jsonl')!r}, {str(EVAL / 'ratings.csv')!r}, k=3, n=10,"
            f" backend='tfidf', methods=['digestd_tfidf', 'tfidf_centroid', 'asl_svm'], cache_dir='',"
            f" json_path={str(tmp_path / 'r.json')!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert set(doc["methods"]) == {"digestd_tfidf", "tfidf_centroid", "asl_svm"}
    assert all(m["recall"] > 0 for m in doc["methods"].values())
