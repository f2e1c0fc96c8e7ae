"""Render: digests -> RFC 5322 bytes in worker processes, while the pass composes the next batch.

A pass is one Python thread of CPU work (the GIL), and rendering a message (templates, quoted-
printable, MIME) was a fifth of it: about 1.6 ms a reader. Rendering is pure (``render.render_message``
takes a view and returns bytes), so a large pass hands it to other processes on the other cores;
the sending thread waits for each message's bytes just before handing them to SMTP. A small pass
(``digest USER``, a lab's morning), a machine with one core, or ``DIGESTD_RENDER_WORKERS=0``
renders in the pass itself, as before.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor

from ..errors import RenderError
from ..logs import get_logger
from ..render_job import RenderJob, render_chunk, render_one

log = get_logger("digestd.render")

POOL_MIN_MESSAGES = 200       # fewer than this in a pass: starting a process costs more than it saves
CHUNK = 50                    # messages per task: amortises the pickling round trip
MAX_WORKERS = 4


class Rendered:
    """One message's bytes, once its worker has rendered them."""

    def __init__(self, pool: "RenderPool", chunk: Future, index: int, job: RenderJob) -> None:
        self._pool, self._chunk, self._index, self.job = pool, chunk, index, job

    def result(self) -> bytes:
        try:
            results, _ = self._chunk.result()
        except Exception as e:
            # No worker to render it (one was killed, or none could start): the pass renders it itself.
            self._pool.broken(e)
            return render_one(self.job)
        ok, value = results[self._index]
        if not ok:
            raise RenderError(f"rendering the digest failed: {value}", user=self.job.view.user_id)
        return value


def workers_wanted(messages: int) -> int:
    """Worker processes for a pass of ``messages``: 0 (render inline) for a small pass or one core."""
    setting = os.environ.get("DIGESTD_RENDER_WORKERS", "").strip()
    if setting:
        try:
            return max(0, int(setting))
        except ValueError:
            log.warning("DIGESTD_RENDER_WORKERS=%r is not a number; choosing from the cores", setting)
    if messages < POOL_MIN_MESSAGES:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(MAX_WORKERS, cores - 1))    # one core stays with the pass itself


class RenderPool:
    """Worker processes for one pass (a context manager); ``submit`` returns one ``Rendered`` per job.

    Workers are spawned, not forked: the pass has threads (the lease, the sender, the encoder's)
    whose locks a fork could copy held. A spawned worker imports the program's main module as
    ``__mp_main__`` (digestd's own entry points guard theirs) and ``digestd.render_job``, which
    needs only the templates: not this package, numpy or the database. Should workers die or fail
    to start, the sending thread renders each message itself, so a pass never loses a digest to them."""

    def __init__(self, workers: int, on_seconds=lambda s: None) -> None:
        self.workers = workers
        self._on_seconds = on_seconds
        self._pool: ProcessPoolExecutor | None = None
        self._warned = False

    def __enter__(self) -> "RenderPool":
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def submit(self, jobs: list[RenderJob]) -> list[Rendered]:
        out: list[Rendered] = []
        for i in range(0, len(jobs), CHUNK):
            part = jobs[i:i + CHUNK]
            try:
                future = self._pool.submit(render_chunk, part)
                future.add_done_callback(self._count)
            except Exception as e:           # the pool broke since (BrokenProcessPool): see Rendered.result
                future = Future()
                future.set_exception(e)
            out += [Rendered(self, future, j, job) for j, job in enumerate(part)]
        return out

    def broken(self, e: BaseException) -> None:
        if not self._warned:
            self._warned = True
            log.warning("the render workers failed (%s: %s); rendering in the pass", e.__class__.__name__, e)

    def _count(self, future: Future) -> None:
        if not future.cancelled() and future.exception() is None:
            self._on_seconds(future.result()[1])
