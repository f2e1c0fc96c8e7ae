"""The daily pass on the bundled demo: fetch ten days of lists, then compose every reader's digest.

Prints wall time per step and the peak memory of the process (ru_maxrss).
"""
import datetime as dt
import resource
import shutil
import tempfile
import time
from pathlib import Path

from digestd import pipeline
from digestd.app import build_app
from digestd.config import load_config

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="digestd-bench-"))
    text = (REPO / "examples" / "demo.toml").read_text()
    text = text.replace('data_dir = "../var"', f'data_dir = "{tmp / "var"}"')
    text = text.replace('path = "lists/', f'path = "{REPO / "examples" / "lists"}/')
    (tmp / "demo.toml").write_text(text)
    app = build_app(load_config(str(tmp / "demo.toml")))
    t = time.perf_counter()
    outcomes = pipeline.fetch_all(app)
    t_fetch = time.perf_counter() - t
    n = sum(o.papers for o in outcomes)
    print(f"fetch: {n} listed papers from {len(outcomes)} lists in {t_fetch:.2f} s")
    now = app.clock.now()
    t = time.perf_counter()
    pipeline.warm_corpus(app)
    print(f"feature space and background vectors over {app.store.counts()['papers']} papers: {time.perf_counter() - t:.2f} s")
    for user in app.settings.users:
        t = time.perf_counter()
        comp = pipeline.compose_one(app, user, dt.date(2099, 1, 1), now)
        print(f"compose {user.id}: {len(comp.picks)} picks of {comp.candidates} candidates in {(time.perf_counter() - t) * 1000:.0f} ms")
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    app.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
