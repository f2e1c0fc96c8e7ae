"""Profile training on the bundled demo: `python benchmarks/bench_profile.py`.

Loads the demo lists (1,100+ real arXiv papers) into a temporary SQLite database, gives each of the
four demo readers 0, 10 and 50 votes (liked: papers their keywords rank high; disliked: a few
from the bottom), and prints per reader:

* fit: the per-user part of training (anchors, interests, linear model; ``rank.fit``), wall
  time and CPU time (medians; on a busy machine the CPU time is the steadier of the two),
* calibrate: the per-background part (``rank.calibrate``),
* the stored model's size and load time,
* a whole compose with training (after a new vote) and with the stored model (no new vote).

Runs with one BLAS thread, as the daemon does (``cli._limit_blas_threads``).
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import datetime as dt  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digestd import pipeline  # noqa: E402
from digestd.pipeline.compose import reader_profiles  # noqa: E402
from digestd.app import build_app  # noqa: E402
from digestd.config import load_config  # noqa: E402
from digestd.rank import calibrate, fit, persist, rank_scores, train  # noqa: E402

VOTES = (0, 10, 50)
REPEAT = 7


def median_ms(fn, repeat: int = REPEAT, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeat):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times) * 1000


def demo_app(tmp: Path):
    text = (REPO / "examples" / "demo.toml").read_text()
    text = text.replace('data_dir = "../var"', f'data_dir = "{tmp / "var"}"')
    text = text.replace('path = "lists/', f'path = "{REPO / "examples" / "lists"}/')
    (tmp / "demo.toml").write_text(text)
    return build_app(load_config(str(tmp / "demo.toml")))


def vote_plan(app, user, corpus, now: dt.datetime, n: int) -> list[tuple[str, str]]:
    """``n`` votes like a reader's: 4 in 5 up on papers their keywords rank high, every 5th down on
    a paper from the bottom. Any prefix of the plan keeps that mix."""
    model = train(reader_profiles(app, [user])[0], corpus.space, corpus.featurized, now)
    order = rank_scores(model, corpus.space, corpus.featurized).argsort()[::-1]
    ups, downs = iter(order), iter(order[::-1])
    return [(corpus.papers[next(downs) if i % 5 == 4 else next(ups)].key, "down" if i % 5 == 4 else "up")
            for i in range(n)]


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="digestd-bench-"))
    app = demo_app(tmp)
    try:
        pipeline.fetch_all(app)
        now = app.clock.now()
        t = time.perf_counter()
        corpus = pipeline.current_corpus(app)
        t_space = time.perf_counter() - t
        t = time.perf_counter()
        corpus.featurized
        t_feat = time.perf_counter() - t
        t = time.perf_counter()
        corpus.identity
        t_id = time.perf_counter() - t
        print(f"once per corpus version ({len(corpus.papers)} papers): fit space {t_space:.2f} s, "
              f"featurise background {t_feat:.2f} s, space identity {t_id * 1000:.0f} ms")
        bg = corpus.featurized
        day = dt.date(2099, 1, 1)
        fits: dict[int, list[float]] = {n: [] for n in VOTES}
        print(f"{'reader':<8}{'votes':>6}{'fit ms':>9}{'(cpu)':>7}{'calib ms':>10}{'model KB':>10}{'load ms':>9}"
              f"{'compose: retrain ms':>21}{'stored ms':>11}")
        plans = {u.id: vote_plan(app, u, corpus, now, max(VOTES)) for u in app.settings.users}
        for n in VOTES:
            for user in app.settings.users:
                done = len(app.store.votes(user.id))
                for age, (key, vote) in enumerate(plans[user.id][done:n], start=done):
                    app.store.set_vote(user.id, key, vote, "cli", now - dt.timedelta(days=age + 1))
                profile = reader_profiles(app, [user])[0]
                fit(profile, corpus.space, bg, now)                      # warm caches (the background graph)
                t_fit = median_ms(lambda: fit(profile, corpus.space, bg, now))
                t_cpu = median_ms(lambda: fit(profile, corpus.space, bg, now), clock=time.process_time)
                model = fit(profile, corpus.space, bg, now)
                t_cal = median_ms(lambda: calibrate(model, corpus.space, bg))
                blob = persist.dumps(model)
                t_load = median_ms(lambda: persist.loads(blob))
                fits[n].append((t_fit, t_cpu))
                # A whole compose: first after the votes changed (trains, stores), then with the stored model.
                t = time.perf_counter()
                pipeline.compose_one(app, user, day, now)
                t_cold = (time.perf_counter() - t) * 1000
                t_warm = median_ms(lambda: pipeline.compose_one(app, user, day, now), 3)
                print(f"{user.id:<8}{len(profile.votes):>6}{t_fit:>9.1f}{t_cpu:>7.1f}{t_cal:>10.1f}{len(blob) / 1024:>10.0f}"
                      f"{t_load:>9.1f}{t_cold:>21.0f}{t_warm:>11.0f}")
        for n in VOTES:
            wall, cpu = (statistics.median(x) for x in zip(*fits[n]))
            print(f"typical fit with {n} votes (median of {len(fits[n])} readers): {wall:.1f} ms ({cpu:.1f} ms CPU)")
    finally:
        app.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
