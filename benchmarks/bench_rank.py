"""Ranking timings: `python benchmarks/bench_rank.py` (plain Python, prints timings).

fit time per user with ~50 votes on 2,000 background papers, and scoring 1,000 candidates.
Uses the real CiteULike dev papers when present (../shared/data), else synthetic text.
"""
from __future__ import annotations

import datetime as dt
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digestd.models import PaperText, ProfileInput, Vote  # noqa: E402
from digestd.rank import FeatureSpace, featurize, select, train  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "citeulike-dev" / "papers.jsonl"


def papers(n: int) -> list[PaperText]:
    if DATA.exists():
        rows = [json.loads(line) for line in DATA.open()]
        out = [PaperText(r["id"], r["title"], r["abstract"]) for r in rows]
    else:
        rng = random.Random(0)
        words = [f"w{i}" for i in range(3000)]
        out = [PaperText(f"p{i}", " ".join(rng.sample(words, 8)), " ".join(rng.choices(words, k=150)))
               for i in range(n)]
    while len(out) < n:                     # pad with shuffled copies under new keys
        base = out[len(out) % len(out)]
        out.append(PaperText(f"{base.key}-copy{len(out)}", base.title + " revisited", base.abstract))
    return out[:n]


def timeit(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    now = dt.datetime(2025, 5, 20, tzinfo=dt.timezone.utc)
    corpus = papers(3050)
    background, candidates, liked = corpus[:2000], corpus[2000:3000], corpus[3000:3050]
    t = time.perf_counter()
    space = FeatureSpace.fit(background + candidates)
    print(f"feature space fit on {len(background) + len(candidates)} papers: {time.perf_counter() - t:.2f} s (once a day)")
    t = time.perf_counter()
    bg = featurize(space, background)
    cand = featurize(space, candidates)
    print(f"featurize 3,000 papers: {time.perf_counter() - t:.2f} s (once a day, shared by all users)")
    votes = [Vote(p, +1 if i % 5 else -1, now - dt.timedelta(days=i)) for i, p in enumerate(liked)]
    profile = ProfileInput("bench", keywords=["gene expression"], votes=votes)
    train(profile, space, bg, now)                       # warm the shared background graph
    fit = timeit(lambda: train(profile, space, bg, now))
    print(f"train one user (50 votes, 2,000 background papers): {fit * 1000:.0f} ms")
    model = train(profile, space, bg, now)
    select(model, space, cand, 10, now=now)              # warm the day's candidate graph
    sc = timeit(lambda: select(model, space, cand, 10, now=now))
    print(f"score + select + explain 1,000 candidates: {sc * 1000:.0f} ms")


if __name__ == "__main__":
    main()
