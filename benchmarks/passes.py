"""One phase of the benchmark in its own process, so each pass's peak memory (ru_maxrss) is its own.

    python -m benchmarks.passes setup --config C --at ISO --log F --votes FILE --out FILE   # background + votes
    python -m benchmarks.passes pass  --config C --at ISO --log F --out FILE                # the measured pass
    python -m benchmarks.passes vote  --config C --at ISO --log F --users FILE --day D --out FILE

``pass`` writes ``wall_s`` (fetch to the last SMTP hand-off), ``startup_s`` (config and app, not
part of the pass: the daemon has them when 06:00 comes), the pass's own ``timings`` (stage ->
seconds, null when the pass does not report one), ``peak_rss_mb`` and the outcomes by status.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import resource
import threading
import time
from collections import Counter
from pathlib import Path

STAGES = ("fetch", "encode", "store", "featurise", "train", "score", "select", "explain", "render", "smtp")


def has_pipeline() -> bool:
    """Whether this checkout's digestd has the batched pass. Only a real package beside this
    ``digestd`` counts: an editable install can make another checkout's folder look importable."""
    import digestd

    spec = importlib.util.find_spec("digestd.pipeline")
    if spec is None or spec.origin is None:
        return False
    if not Path(spec.origin).resolve().is_relative_to(Path(digestd.__file__).resolve().parent):
        return False
    from digestd import pipeline

    return hasattr(pipeline, "run_once") and hasattr(pipeline, "fetch_all")


def run_pass(app, outside: dict) -> tuple[list, list]:
    """The pass under test, the one place that knows which code drives it: the batched
    ``digestd.pipeline.run_once`` once it exists, else today's ``digestd.jobs`` (the same two steps)."""
    if has_pipeline():
        from digestd import pipeline

        return pipeline.run_once(app)
    from digestd import jobs

    t = time.perf_counter()
    fetched = jobs.fetch_all(app)
    outside["fetch_all"] = time.perf_counter() - t
    t = time.perf_counter()
    delivered = jobs.deliver_due(app)
    outside["deliver"] = time.perf_counter() - t
    return fetched, delivered


def fetch_all(app) -> list:
    """Fetch every enabled source (setup, not measured), from wherever the pass lives."""
    if has_pipeline():
        from digestd import pipeline

        return pipeline.fetch_all(app)
    from digestd import jobs

    return jobs.fetch_all(app)


def _time_store_writes(app, outside: dict) -> None:
    """Charge the store's paper writes to ``store`` from outside, for a pass that does not time them."""
    upsert = app.store.upsert_papers
    outside["store"] = 0.0

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return upsert(*args, **kwargs)
        finally:
            outside["store"] += time.perf_counter() - t

    app.store.upsert_papers = timed


def _app(config: str, at: dt.datetime, log_file: str):
    """The app as `digestd run` builds it, logging as the daemon does (to a file: a line per reader)."""
    from digestd.app import build_app
    from digestd.clock import FixedClock
    from digestd.config import load_config
    from digestd.logs import setup_logging

    settings = load_config(config)
    setup_logging(settings.digestd.log_level, open(log_file, "a", encoding="utf-8"))
    return build_app(settings, clock=FixedClock(at))


def phase_pass(config: str, at: dt.datetime, log_file: str) -> dict:
    t0 = time.perf_counter()
    app = _app(config, at, log_file)
    startup = time.perf_counter() - t0
    outside: dict = {}
    _time_store_writes(app, outside)
    sampler = ChildrenRss()
    t = time.perf_counter()
    fetched, delivered = run_pass(app, outside)
    wall = time.perf_counter() - t
    reported = dict(getattr(app, "timings", None) or {})
    timings = {s: reported.get(s) for s in STAGES}
    timed_outside = []
    if timings["store"] is None:
        timings["store"] = outside["store"]
        timed_outside.append("store")
    if timings["fetch"] is None and "fetch_all" in outside:
        timings["fetch"] = outside["fetch_all"] - outside["store"]
        timed_outside.append("fetch")
    app.close()
    sampler.stop()
    workers = _render_workers(len(delivered))
    return {
        "wall_s": wall, "startup_s": startup, "timings": timings, "timed_outside": timed_outside,
        "render_workers": workers, "workers_rss_mb": sampler.peak_mb,
        "other_timings": {k: v for k, v in reported.items() if k not in STAGES},
        "deliver_s": outside.get("deliver"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "fetched_papers": sum(getattr(o, "papers", 0) or 0 for o in fetched),
        "fetch_errors": [o.error for o in fetched if getattr(o, "error", None)],
        "outcomes": dict(Counter(str(getattr(o, "status", "?")) for o in delivered)),
        "driver": "digestd.pipeline.run_once" if has_pipeline() else "digestd.jobs.fetch_all + deliver_due",
    }


class ChildrenRss(threading.Thread):
    """The largest summed RSS of this process's children (the render workers, which run beside the
    pass), sampled from /proc every 0.2 s. Not ``RUSAGE_CHILDREN``: a spawned child is forked before it
    execs, and Linux keeps that moment's RSS, the whole pass's, as the child's peak."""

    def __init__(self) -> None:
        super().__init__(name="bench-children-rss", daemon=True)
        self.peak_mb = 0.0
        self._done = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._done.wait(0.2):
            self.peak_mb = max(self.peak_mb, sum(_rss_mb(pid) for pid in _children()))

    def stop(self) -> None:
        self._done.set()
        self.join()


def _children() -> list[int]:
    out = []
    for task in Path("/proc/self/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _render_workers(messages: int) -> int:
    try:
        from digestd.pipeline.render_pool import workers_wanted
    except ImportError:       # a checkout from before the render workers
        return 0
    return workers_wanted(messages)


def phase_setup(config: str, at: dt.datetime, log_file: str, votes_file: str) -> dict:
    """The state before the pass: the earlier days fetched, every reader's votes through the store's API."""
    t = time.perf_counter()
    app = _app(config, at, log_file)
    fetched = fetch_all(app)
    t_fetch = time.perf_counter() - t
    votes = json.loads(Path(votes_file).read_text())
    t = time.perf_counter()
    n = 0
    for user_id, plan in votes.items():
        for age, (paper, vote) in enumerate(reversed(plan), start=1):
            app.store.set_vote(user_id, paper, vote, "web", at - dt.timedelta(hours=age))
            n += 1
    app.close()
    return {"fetched_papers": sum(o.papers for o in fetched), "fetch_errors": [o.error for o in fetched if o.error],
            "votes": n, "fetch_s": t_fetch, "votes_s": time.perf_counter() - t}


def phase_vote(config: str, at: dt.datetime, log_file: str, users_file: str, day: dt.date) -> dict:
    """Between the passes: each listed reader votes on the digest they got, up on the first paper
    and down on the last (what a reader skimming a digest does)."""
    app = _app(config, at, log_file)
    n = 0
    for user_id in json.loads(Path(users_file).read_text()):
        digest = app.store.get_digest(user_id, day)
        items = app.store.digest_items(digest.id) if digest is not None else []
        if not items:
            continue
        app.store.set_vote(user_id, items[0].paper_key, "up", "email", at)
        n += 1
        if len(items) > 1:
            app.store.set_vote(user_id, items[-1].paper_key, "down", "email", at)
            n += 1
    app.close()
    return {"votes": n}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=("setup", "pass", "vote"))
    ap.add_argument("--config", required=True)
    ap.add_argument("--at", required=True, type=dt.datetime.fromisoformat)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log", required=True, help="digestd's log lines go here")
    ap.add_argument("--votes")
    ap.add_argument("--users")
    ap.add_argument("--day", type=dt.date.fromisoformat)
    a = ap.parse_args(argv)
    if a.phase == "setup":
        result = phase_setup(a.config, a.at, a.log, a.votes)
    elif a.phase == "vote":
        result = phase_vote(a.config, a.at, a.log, a.users, a.day)
    else:
        result = phase_pass(a.config, a.at, a.log)
    Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
