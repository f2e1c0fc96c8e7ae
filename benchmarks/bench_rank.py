"""Batched ranking timings: `python benchmarks/bench_rank.py [--readers 1000,10000] [--papers 2000]`.

Readers are synthetic but their text is real: each likes 10-30 papers of the ten arXiv daily
lists in ../shared/data/arxiv-daily (every fifth vote a thumbs-down) and a third have two keywords
from a liked title. A day of ``--papers`` real papers is the pool; the background (calibration)
is the other papers. Prints, per batch size: the pool's preparation (once per pass), calibration
(part of training), and score, select and explain for every reader, in seconds, one BLAS thread.

Fitting is not measured here (task R2, benchmarks/bench_fit.py): ``--distinct`` readers are fitted
and repeated under new ids up to the batch size, so a batch of 10,000 has 10,000 readers but only
``--distinct`` different vote sets. Their anchors are deduplicated by content, as a real pass's are
when readers like the same papers.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digestd.models import PaperText, ProfileInput, Vote  # noqa: E402
from digestd.rank import calibrate_readers, fit, fit_space, prepare_pool, score_readers, select_readers  # noqa: E402
from digestd.rank.features import tokenize  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv-daily"
NOW = dt.datetime(2025, 5, 31, 6, 0, tzinfo=dt.timezone.utc)


def arxiv_papers() -> list[PaperText]:
    seen: dict[str, PaperText] = {}
    for path in sorted(DATA.glob("*.jsonl")):
        for line in path.open(encoding="utf-8"):
            r = json.loads(line)
            seen.setdefault(r["id"], PaperText(r["id"], r["title"], r.get("summary") or "", list(r.get("authors") or [])))
    return list(seen.values())


def profiles(papers: list[PaperText], n: int, seed: int = 0) -> list[ProfileInput]:
    rng = random.Random(seed)
    out = []
    for u in range(n):
        voted = rng.sample(papers, rng.randint(10, 30))
        votes = [Vote(p, -1 if i % 5 == 4 else +1, NOW - dt.timedelta(days=rng.randint(0, 60)))
                 for i, p in enumerate(voted)]
        keywords = [" ".join(tokenize(voted[0].title)[:2])] if u % 3 == 0 else []
        out.append(ProfileInput(f"bench{u}", keywords=[k for k in keywords if k], votes=votes))
    return out


CPU: dict[str, float] = {}


def seconds(fn, name: str = ""):
    """Wall seconds (returned) and CPU seconds (kept in ``CPU``: steadier on a shared machine)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    CPU[name] = time.process_time() - c
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readers", default="1000,10000", help="comma-separated batch sizes")
    ap.add_argument("--papers", type=int, default=2000, help="papers in the day's pool")
    ap.add_argument("--distinct", type=int, default=1000, help="distinct readers fitted (repeated up to the batch)")
    ap.add_argument("--size", type=int, default=10, help="digest size")
    a = ap.parse_args()
    corpus = arxiv_papers()
    day, background = corpus[-a.papers:], corpus[:-a.papers] or corpus
    t, space = seconds(lambda: fit_space(corpus))
    print(f"papers: {len(corpus)} real arXiv papers, pool {len(day)}, background {len(background)}; space fit {t:.1f} s")
    t, bg_pool = seconds(lambda: prepare_pool(space, background))
    print(f"background pool (featurise, graph, operator): {t:.2f} s")
    t, base = seconds(lambda: [fit(p, space, bg_pool.feats, NOW) for p in profiles(corpus, a.distinct)])
    print(f"fit {a.distinct} distinct readers: {t:.1f} s (not part of the numbers below)")
    for b in (int(x) for x in a.readers.split(",")):
        models = []
        for i in range(b):
            m = copy.copy(base[i % len(base)])
            m.user_id = f"reader{i}"
            models.append(m)
        t_pool, pool = seconds(lambda: prepare_pool(space, list(day)), "pool")
        t_cal, _ = seconds(lambda: calibrate_readers(models, bg_pool), "calibrate")
        t_score, scores = seconds(lambda: score_readers(models, pool), "score")
        eligible = np.ones(scores.shape, dtype=bool)
        kw = dict(explore=[True] * b, min_scores=[None] * b, now=NOW)
        t_select, _ = seconds(lambda: select_readers(models, pool, scores, eligible, [a.size] * b, explain=False, **kw),
                              "select")
        t_all, sels = seconds(lambda: select_readers(models, pool, scores, eligible, [a.size] * b, explain=True, **kw),
                              "all")
        picks = sum(len(s.picks) for s in sels)
        c = CPU
        print(f"{b:>6} readers x {pool.n} papers, wall (cpu) seconds: pool {t_pool:.2f} ({c['pool']:.2f}), "
              f"calibrate {t_cal:.2f} ({c['calibrate']:.2f}) | score {t_score:.2f} ({c['score']:.2f}), "
              f"select {t_select:.2f} ({c['select']:.2f}), explain {max(0.0, t_all - t_select):.2f} "
              f"({max(0.0, c['all'] - c['select']):.2f}) | score+select+explain {t_score + t_all:.2f} "
              f"({c['score'] + c['all']:.2f}), {picks} picks", flush=True)


if __name__ == "__main__":
    main()
