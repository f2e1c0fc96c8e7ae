"""arxiv-sanity-lite's ranking, timed per user on the benchmark's readers and papers.

arxiv-sanity-lite (karpathy/arxiv-sanity-lite) ranks for a user by fitting one linear SVM over the
TF-IDF vectors of its whole corpus, the user's tagged papers as positives and every other paper as a
negative, then scoring the whole corpus with it (serve.py: ``LinearSVC(class_weight="balanced",
max_iter=10000, tol=1e-6, C=0.01)``; compute.py: the TF-IDF settings below). Reimplemented here
from those settings, not copied. Its readers' tags are our up-votes (it has no down-votes).
It runs on scikit-learn itself, arxiv-sanity-lite's own stack (the test extra, which ``make bench``
installs), not on digestd.baselines: what is timed is the reference.

    python -m benchmarks.asl --users N --papers M --seed S --sample 300 --out FILE

``asl_per_user_s``: fit + decision_function + top ``DIGEST_SIZE`` of the day, per sampled user.
``digestd_per_user_s`` (``--with-digestd``): digestd's own per-user path on the same sample
(``rank.train`` + ``rank.select``), the fallback for ``asl_ratio`` when the pass does not report
its train, score and select stages.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import time
from pathlib import Path

import numpy as np

from .workload import COLD_AT, DIGEST_SIZE, SETUP_AT, build_workload

# The background digestd trains against: its newest papers (jobs.BACKGROUND_SIZE at the time of writing).
DIGESTD_BACKGROUND = 2000


def asl_vectorizer():
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(input="content", encoding="utf-8", decode_error="replace", strip_accents="unicode",
                           lowercase=True, analyzer="word", stop_words="english",
                           token_pattern=r"(?u)\b[a-zA-Z_][a-zA-Z0-9_]+\b", ngram_range=(1, 2),
                           max_features=10000, norm="l2", use_idf=True, smooth_idf=True, sublinear_tf=True,
                           max_df=0.5, min_df=5)


def sample(readers: list, n: int) -> list:
    step = max(1, len(readers) // max(n, 1))
    return readers[::step][:n]


def time_asl(corpus: list[dict], day_ids: set[str], readers: list) -> dict:
    from sklearn import svm

    t = time.perf_counter()
    x = asl_vectorizer().fit_transform(
        " ".join([p["title"], p["summary"], " ".join(p["authors"])]) for p in corpus).astype(np.float32)
    t_tfidf = time.perf_counter() - t
    index = {p["id"]: i for i, p in enumerate(corpus)}
    day_mask = np.array([p["id"] in day_ids for p in corpus])
    times = []
    for r in readers:
        t = time.perf_counter()
        y = np.zeros(x.shape[0], dtype=np.float32)
        y[[index[pid] for pid, vote in r.votes if vote == "up"]] = 1.0
        clf = svm.LinearSVC(class_weight="balanced", verbose=False, max_iter=10000, tol=1e-6, C=0.01)
        clf.fit(x, y)
        s = clf.decision_function(x)
        s[~day_mask] = -np.inf
        np.argsort(-s)[:DIGEST_SIZE]
        times.append(time.perf_counter() - t)
    return {"asl_tfidf_s": t_tfidf, "asl_per_user_s": float(np.mean(times)), "asl_features": int(x.shape[1])}


def time_digestd(background: list[dict], day: list[dict], readers: list) -> dict:
    from digestd.models import PaperText, ProfileInput, Vote
    from digestd.rank import featurize, featurize_known, fit_space, select, train

    def text(p: dict) -> PaperText:
        return PaperText(key=p["id"], title=p["title"], abstract=p["summary"], authors=list(p["authors"]))

    by_id = {p["id"]: p for p in background}
    bg = [text(p) for p in (day + background[::-1])[:DIGESTD_BACKGROUND]]
    t = time.perf_counter()
    space = fit_space(bg)
    bg_f = featurize(space, bg)
    cand = featurize_known(space, [text(p) for p in day], bg_f)
    t_space = time.perf_counter() - t
    times = []
    for r in readers:
        votes = [Vote(text(by_id[pid]), 1 if v == "up" else -1, SETUP_AT - dt.timedelta(hours=age))
                 for age, (pid, v) in enumerate(reversed(r.votes), start=1)]
        profile = ProfileInput(r.id, keywords=list(r.keywords), votes=votes)
        t = time.perf_counter()
        model = train(profile, space, bg_f, COLD_AT)
        select(model, space, cand, DIGEST_SIZE, now=COLD_AT)
        times.append(time.perf_counter() - t)
    return {"digestd_space_s": t_space, "digestd_per_user_s": float(np.mean(times))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--papers", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample", type=int, default=300)
    ap.add_argument("--with-digestd", action="store_true", help="also time digestd's per-user rank path")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    w = build_workload(a.users, a.papers, a.seed)
    readers = sample(w.readers, a.sample)
    background = w.background_papers()
    result = {"asl_sample": len(readers), "asl_corpus": len(background) + len(w.day)}
    result.update(time_asl(background + w.day, {p["id"] for p in w.day}, readers))
    if a.with_digestd:
        result.update(time_digestd(background, w.day, readers))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
