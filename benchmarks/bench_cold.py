"""The cold pass's ranking stages in one process: `python benchmarks/bench_cold.py [--users 1000] [--backend tfidf]`.

What ``make bench`` compares with arxiv-sanity-lite (train + score + select per reader) without the
database, the fetch or the mail: the same workload (``benchmarks.workload``: real arXiv papers, the
day's 2,000 delivered to readers who voted on the background), the same calls in the same batches
of ``deliver.BATCH_SIZE`` readers (``persist.fingerprint`` and ``train_readers`` for the train
stage, then what ``rank_readers`` does for score and select; explaining the picks is left out, as
the comparison leaves it out), so a change to the ranker can be measured in a minute instead of a
full pass. One BLAS thread, as the daemon runs. Prints wall and CPU milliseconds per reader: on a
shared machine the CPU time is the steadier of the two.

``--backend embeddings`` encodes the papers with the sentence encoder once, kept under
``--cache`` (default ~/.cache/digestd-bench) for the next run.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.workload import COLD_AT, SETUP_AT, build_workload  # noqa: E402
from digestd.models import PaperText, ProfileInput, Vote  # noqa: E402


def paper(p: dict) -> PaperText:
    return PaperText(key=p["id"], title=p["title"], abstract=p.get("summary") or "", authors=list(p.get("authors") or []))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--papers", type=int, default=2000)
    ap.add_argument("--backend", default="tfidf", choices=("tfidf", "embeddings"))
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "digestd-bench"))
    ap.add_argument("--batch", type=int, default=None, help="readers per batch (default: the pass's)")
    ap.add_argument("--repeat", type=int, default=1, help="passes timed (fresh models each time)")
    ap.add_argument("--dump", help="write the scores, thresholds and picks here (.npz), to compare two versions")
    ap.add_argument("--profile", help="write a CPU-time cProfile of the last pass's timed stages here (pstats file)")
    a = ap.parse_args()

    from digestd.pipeline.deliver import BATCH_SIZE
    from digestd.rank import (featurize, fit_space, params_for, persist, prepare_pool, score_readers, select_readers,
                              train_readers)

    w = build_workload(a.users, a.papers, 0)
    background = [paper(p) for p in w.background_papers()][::-1]          # newest first, as the store reads them
    day = [paper(p) for p in w.day]
    by_key = {p.key: p for p in background}
    profiles = [ProfileInput(user_id=r.id, keywords=list(r.keywords),
                             votes=[Vote(by_key[k], +1 if v == "up" else -1, SETUP_AT) for k, v in r.votes])
                for r in w.readers]
    encoder = None
    if a.backend == "embeddings":
        from digestd.eval_methods import DiskVectors
        from digestd.rank.embeddings import load_embedder
        from digestd.rank.encode_once import PaperEncoder

        model = load_embedder()
        encoder = PaperEncoder(model, DiskVectors(Path(a.cache), model.name))
    t = time.perf_counter()
    space = fit_space(background, a.backend, encoder=encoder)
    bg = featurize(space, background)
    feats = featurize(space, day)
    print(f"{a.users} readers, {len(day)} papers today, {len(background)} in the background, {a.backend}: "
          f"space and vectors {time.perf_counter() - t:.1f} s", flush=True)
    params = params_for(space.backend)
    batch = a.batch or BATCH_SIZE
    profiler = None
    if a.profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)   # CPU, not wall: the machine is shared
    for rep in range(a.repeat):
        profiling = profiler is not None and rep == a.repeat - 1    # the steady state: caches warm
        wall: dict[str, float] = {}
        dumped: dict[str, list] = {}
        cpu: dict[str, float] = {}

        def timed(name, fn):
            t, c = time.perf_counter(), time.process_time()
            if profiling:
                profiler.enable()
            out = fn()
            if profiling:
                profiler.disable()
            wall[name] = wall.get(name, 0.0) + time.perf_counter() - t
            cpu[name] = cpu.get(name, 0.0) + time.process_time() - c
            return out

        def train(chunk):
            for p in chunk:
                persist.fingerprint(p, "bench", params)
            return train_readers(chunk, space, bg, COLD_AT, params=params)

        for lo in range(0, len(profiles), batch):
            chunk = profiles[lo:lo + batch]
            b = len(chunk)
            models = timed("train", lambda: train(chunk))
            pool = timed("score", lambda: prepare_pool(space, feats))
            scores = timed("score", lambda: score_readers(models, pool))
            eligible = np.ones((b, len(day)), dtype=bool)
            sels = timed("select", lambda: select_readers(models, pool, scores, eligible, [10] * b, explore=[True] * b,
                                                          min_scores=[None] * b, now=COLD_AT, explain=False))
            if a.dump:
                dumped.setdefault("scores", []).append(scores)
                dumped.setdefault("thresholds", []).append(np.array([m.threshold for m in models]))
                dumped.setdefault("picks", []).append(np.array([",".join(f"{p.key}{'*' if p.explore else ''}"
                                                                         for p in s.picks) for s in sels]))
        n = len(profiles)
        for clock, got in (("wall", wall), ("cpu", cpu)):
            per = {k: got[k] / n * 1000 for k in ("train", "score", "select")}
            print(f"{clock} ms per reader: " + ", ".join(f"{k} {v:.3f}" for k, v in per.items())
                  + f" | train+score+select {sum(per.values()):.3f}", flush=True)
        if a.dump:
            np.savez(a.dump, **{k: np.concatenate(v) for k, v in dumped.items()})
    if profiler is not None:
        profiler.dump_stats(a.profile)

if __name__ == "__main__":
    main()
