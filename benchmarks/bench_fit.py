"""Cold-pass training: `python benchmarks/bench_fit.py [N ...]` (default N = 1,000 and 10,000).

Fits N synthetic readers at once (``rank.fit_readers``) against a 2,000-paper background from the
real arXiv daily lists in ../shared/data/arxiv-daily, and prints milliseconds per reader. A reader
has 1-3 interests; each interest is a real paper and its topical neighbours, from which 10-30 votes
are drawn (4 in 5 on background papers, the rest on older papers outside it, about one in six a
thumbs-down on a random paper), plus 0-3 keywords taken from an interest's title. This is what the
daemon meets after a restart or a refit of the feature space, when every reader is retrained.

Each size starts from an empty ``FitCache``: only the background's vectors exist, as after a restart.
Also times the one-reader path (``rank.fit``): a reader's first fit, and a refit after one more vote
(what the daemon does after feedback; the reader's other papers are in the cache by then).
Runs with one BLAS thread, as the daemon does (``cli._limit_blas_threads``).
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import dataclasses  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digestd.models import PaperText, ProfileInput, Vote  # noqa: E402
from digestd.rank import FeatureSpace, FitCache, featurize, fit  # noqa: E402
from digestd.rank.features import tokenize  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "arxiv-daily"
BACKGROUND = 2000
SIZES = (1000, 10_000)
SINGLE = 200                       # readers timed one by one through ``fit``
NOW = dt.datetime(2025, 5, 31, 6, 0, tzinfo=dt.timezone.utc)


def load_papers() -> list[PaperText]:
    seen: dict[str, PaperText] = {}
    for path in sorted(DATA.glob("*.jsonl")):
        for line in path.open(encoding="utf-8"):
            r = json.loads(line)
            seen.setdefault(r["id"], PaperText(key=r["id"], title=r["title"], abstract=r.get("summary") or "",
                                               authors=list(r.get("authors") or [])))
    return list(seen.values())


def synthetic_readers(n: int, papers: list[PaperText], topics: np.ndarray, background: int,
                      seed: int = 0) -> list[ProfileInput]:
    """``papers[:background]`` is the background (the newest); the rest are older papers."""
    rng = np.random.default_rng(seed)
    readers = []
    for u in range(n):
        n_votes = int(rng.integers(10, 31))
        interests = rng.choice(len(papers), size=int(rng.integers(1, 4)), replace=False)
        near = [np.argsort(-(topics @ topics[i]))[:60] for i in interests]
        votes, used = [], set()
        while len(votes) < n_votes:
            if rng.random() < 1 / 6:
                idx, value = int(rng.integers(len(papers))), -1
            else:
                pool = near[len(votes) % len(near)]
                in_bg = pool[pool < background] if rng.random() < 0.8 else pool[pool >= background]
                idx, value = int(rng.choice(in_bg if len(in_bg) else pool)), +1
            if idx in used:
                continue
            used.add(idx)
            votes.append(Vote(papers[idx], value, NOW - dt.timedelta(days=float(rng.uniform(0, 120)))))
        words = tokenize(papers[int(interests[0])].title)
        keywords = [str(w) for w in rng.choice(words, size=min(len(words), int(rng.integers(0, 4))), replace=False)]
        readers.append(ProfileInput(user_id=f"reader{u}", keywords=keywords, votes=votes))
    return readers


def main(sizes: tuple[int, ...] = SIZES) -> None:
    from digestd.rank import fit_readers

    papers = load_papers()
    background = papers[-BACKGROUND:][::-1]                    # the newest lists, newest first
    rest = papers[:-BACKGROUND]
    ordered = background + rest
    t = time.perf_counter()
    space = FeatureSpace.fit(background)
    bg = featurize(space, background)
    topics = featurize(space, ordered).dense
    print(f"{len(ordered)} papers ({len(background)} background); space + featurise {time.perf_counter() - t:.1f} s")
    readers = synthetic_readers(max(sizes), ordered, topics, len(background))
    votes = [len(r.votes) for r in readers]
    print(f"readers: {min(votes)}-{max(votes)} votes (mean {np.mean(votes):.1f}), "
          f"{np.mean([len(r.keywords) > 0 for r in readers]):.0%} with keywords")
    fit(readers[0], space, bg, NOW, cache=FitCache())          # warm what the background memoises (negatives)
    cache = FitCache()
    singles = readers[-SINGLE:]
    t = time.perf_counter()
    for r in singles:
        fit(r, space, bg, NOW, cache=cache)
    first = (time.perf_counter() - t) / SINGLE
    again = [dataclasses.replace(r, votes=r.votes + [Vote(ordered[i], +1, NOW)]) for i, r in enumerate(singles)]
    t = time.perf_counter()
    for r in again:
        fit(r, space, bg, NOW, cache=cache)
    refit = (time.perf_counter() - t) / SINGLE
    print(f"fit, one reader at a time ({SINGLE} readers): first fit {first * 1000:.2f} ms, "
          f"refit after one more vote {refit * 1000:.2f} ms per reader")
    for n in sizes:
        t = time.perf_counter()
        c = time.process_time()
        models = fit_readers(readers[:n], space, bg, NOW, cache=FitCache())
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        assert len(models) == n
        print(f"fit_readers, {n:>6} readers: {wall:6.1f} s, {wall / n * 1000:.2f} ms per reader "
              f"({cpu / n * 1000:.2f} ms CPU)")


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or SIZES)
