"""Seconds spent per stage of the pass, added up on the app (``app.timings``) for `make bench` and logs."""
from __future__ import annotations

import time
from contextlib import contextmanager

STAGES = ("fetch", "encode", "store", "featurise", "train", "score", "select", "explain", "render", "smtp")


@contextmanager
def stage(app, name: str):
    t = time.perf_counter()
    try:
        yield
    finally:
        add_seconds(app, name, time.perf_counter() - t)


def add_seconds(app, name: str, seconds: float) -> None:
    """Seconds of a stage added to the pass's: timed here (``stage``) or elsewhere (a render worker)."""
    app.timings[name] = app.timings.get(name, 0.0) + seconds
