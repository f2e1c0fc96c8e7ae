"""`make bench`: the delivery pass at 10,000 readers x 2,000 papers, stage by stage, against
arxiv-sanity-lite. Writes bench-results.json and prints a table of targets.

    python -m benchmarks [--users N] [--papers M] [--seed S] [--asl-sample K] [--small-users N]
                         [--no-warm] [--quick] [--work DIR] [--out FILE] [--extra bench_rank ...]

``--small-users`` (default 1,000) adds a cold pass at that many readers, for the 1,000-reader target,
when the main run is larger. ``--extra`` also runs the older per-function benchmarks (bench_*.py).
Every phase runs in its own process with one BLAS thread, as the daemon does.
"""
import os

# Measure what the daemon runs: one BLAS thread (digestd.cli sets the same before numpy loads).
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import runpy  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from digestd.progress import steps  # noqa: E402

from .delivery import run_delivery, summary  # noqa: E402
from .report import judge, table  # noqa: E402

HERE = Path(__file__).parent


def feed_results(quick: bool) -> dict:
    """benchmarks/bench_feeds.py (another helper's) when it exists: its keys join the results."""
    if importlib.util.find_spec("benchmarks.bench_feeds") is None:
        return {}
    try:
        from . import bench_feeds

        return dict(bench_feeds.run(quick=quick))
    except Exception as e:  # minutes of delivery results must not be lost to another section's failure
        print(f"feed benchmark failed: {e.__class__.__name__}: {e}")
        return {"feeds_error": f"{e.__class__.__name__}: {e}"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--papers", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--asl-sample", type=int, default=300, help="readers timed with arxiv-sanity-lite's ranking (0: skip)")
    ap.add_argument("--small-users", type=int, default=1_000, help="also a cold pass at this many readers (0: skip)")
    ap.add_argument("--no-warm", action="store_true", help="skip the warm pass")
    ap.add_argument("--backend", help="ranking backend of the readers (default: the shipped default)")
    ap.add_argument("--quick", action="store_true", help="quick mode of the feed benchmark")
    ap.add_argument("--work", type=Path, help="keep the generated lists, configs and database here")
    ap.add_argument("--out", type=Path, default=Path("bench-results.json"))
    ap.add_argument("--extra", nargs="*", default=[], metavar="NAME", help="also run benchmarks/NAME.py (bench_rank, ...)")
    a = ap.parse_args(argv)

    work = a.work or Path(tempfile.mkdtemp(prefix="digestd-bench-"))
    small_run = bool(a.small_users and a.small_users < a.users)
    # One step per line a run reports: workload, setup, cold (then warm and the baseline).
    phases = 3 + (not a.no_warm) + bool(a.asl_sample) + (3 if small_run else 0)
    with steps(phases, "make bench") as progress:
        def log(line: str) -> None:
            progress.say(line)
            progress.advance()

        try:
            main_run = run_delivery(a.users, a.papers, a.seed, work / "main", asl_sample=a.asl_sample,
                                    warm=not a.no_warm, backend=a.backend, log=log)
            result = summary(main_run)
            result["driver"] = result["cold"]["driver"]
            if small_run:
                small = run_delivery(a.small_users, a.papers, a.seed, work / "small", asl_sample=0, warm=False,
                                     backend=a.backend, log=log)
                result["small"] = {"users": a.small_users, "papers": a.papers, "end_to_end_s": small["cold"]["wall_s"],
                                   "peak_rss_mb": small["cold"]["peak_rss_mb"], "timings": small["cold"]["timings"],
                                   "verified": small["cold"]["verified"]}
                result["verified"] = result["verified"] and small["cold"]["verified"]
        finally:
            if a.work is None:
                shutil.rmtree(work, ignore_errors=True)
    result.update(feed_results(a.quick))
    result["targets"] = judge(result)
    a.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print()
    print(table(result))
    print(f"\nwrote {a.out}")
    for name in a.extra:
        print(f"\n== {name}", flush=True)
        runpy.run_path(str(HERE / f"{name}.py"), run_name="__main__")
    return 0 if result["verified"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
