"""The hand-off to the mailer: one sending thread per pass, and the claimed batches in flight.

The pass composes and renders batch N+1 while this thread hands batch N to SMTP (socket waits
release the GIL, and the mail server is another process), so neither waits for the other. A batch
stays claimed under its lease until its last message is through; then its outcomes are flushed,
its lease stopped, and whatever it did not finish released for the next pass.
"""
from __future__ import annotations

import datetime as dt
import os
import queue
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ..config import UserSettings
from ..logs import get_logger
from ..store import Digest, Finish
from .timing import stage

if TYPE_CHECKING:
    from ..app import App

log = get_logger("digestd.deliver")

LEASE = dt.timedelta(seconds=30)          # a dead pass's digests are taken over this soon after it stops renewing
RENEW_EVERY = 10.0                        # seconds between lease renewals while a batch is in flight
# A message's outcome is written as soon as the mailer took it: a process killed right after would
# otherwise send it again on takeover. One small UPDATE per message, against one mail per reader.
FINISH_EVERY = 1
BATCHES_IN_FLIGHT = 2                     # one being sent, one being composed: bounds memory


@dataclass
class Message:
    digest: Digest
    user: UserSettings
    raw: object             # bytes; or a render_pool.Rendered a worker process is rendering (a RenderJob before)
    message_id: str
    papers: int

    def raw_bytes(self) -> bytes:
        return self.raw if isinstance(self.raw, bytes) else self.raw.result()


def owner_is_dead(claimed_by: str) -> bool:
    """Whether the pass that wrote this claim (``host:pid#claim``, App.worker_id) was a process on
    this host that no longer runs: killed, its claims need not wait out their lease. A pid that was
    reused since, or another host's pass, counts as alive; its lease still lapses in ``LEASE``."""
    owner = claimed_by.rpartition("#")[0] or claimed_by
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:   # killed but not yet reaped by its parent: a zombie holds nothing
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def end_dead_leases(app: "App") -> int:
    """End the leases of claims whose process on this host is gone; returns how many."""
    dead = [i for i, by in app.store.live_claims(app.clock.now()) if owner_is_dead(by)]
    if dead:
        log.warning("taking over %d digests of a process that is no longer running", len(dead))
        app.store.end_leases(dead)
    return len(dead)


class Lease:
    """Renews a batch's leases every ``RENEW_EVERY`` seconds until stopped."""

    def __init__(self, app: "App", ids: list[int]) -> None:
        self.app, self.ids = app, ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="digestd-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            try:
                self.app.store.renew_leases(self.ids, self.app.clock.now(), LEASE)
            except Exception as e:  # a missed renewal only risks a takeover, which the claim makes safe
                log.warning("lease renewal failed: %s", e)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Batch:
    """One claimed batch: its lease, its outcomes (written on one connection held for it), and the
    digests it has not finished yet. Shared by the thread that renders and the one that sends."""

    app: "App"
    won: list[Digest]
    outcomes: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.unfinished = {d.id for d in self.won}
        self._pending: list[Finish] = []
        self._lock = threading.Lock()
        self._lease = Lease(self.app, [d.id for d in self.won])
        self._writer = self.app.store.finishing()
        self._write = self._writer.__enter__()

    def done(self, f: Finish, outcome) -> None:
        with self._lock:
            self._pending.append(f)
            self.outcomes.append(outcome)
            if len(self._pending) >= FINISH_EVERY:
                self._flush()
            self.unfinished.discard(f.digest_id)

    def _flush(self) -> None:
        if self._pending:
            with stage(self.app, "store"):
                self._write(self._pending)
            self._pending = []

    def close(self) -> None:
        with self._lock:
            try:
                self._flush()
            finally:
                self._writer.__exit__(None, None, None)
                self._lease.stop()
                if self.unfinished:   # a shutdown or a bug: hand the rest back for the next pass at once
                    self.app.store.release_digests(sorted(self.unfinished))


class Sender:
    """The pass's sending thread. ``put`` queues a rendered message of a batch, ``end`` says the batch
    has no more; ``send`` does the handing over and says how it ended (a ``Finish`` and an outcome)."""

    def __init__(self, app: "App", mailer, should_stop: Callable[[], bool],
                 send: Callable[["App", object, Message], tuple]) -> None:
        self.app, self.mailer, self.should_stop, self._send = app, mailer, should_stop, send
        self.queue: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self._open = threading.Semaphore(BATCHES_IN_FLIGHT)
        self._thread = threading.Thread(target=self._run, name="digestd-smtp", daemon=True)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def begin(self) -> None:
        """Wait until a batch may be taken on: at most ``BATCHES_IN_FLIGHT`` are claimed at once."""
        self._open.acquire()

    def cancel(self) -> None:
        """A ``begin`` that claimed nothing."""
        self._open.release()

    def put(self, batch: Batch, msg: Message) -> None:
        self.queue.put((batch, msg))

    def end(self, batch: Batch) -> None:
        self.queue.put((batch, None))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            batch, msg = item
            if msg is None:
                try:
                    batch.close()
                except Exception as e:
                    log.exception("closing a batch failed: %s", e)
                finally:
                    self._open.release()
                continue
            if self.error is not None or self.should_stop():
                continue                                  # left unfinished: released with its batch
            try:
                batch.done(*self._send(self.app, self.mailer, msg))
            except BaseException as e:   # a bug in the mailer, or a kill: stop sending, tell the pass
                self.error = e

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.queue.put(None)
        self._thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error
