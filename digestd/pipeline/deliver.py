"""Deliver: picks -> messages -> mailer, a batch of due readers at a time, under leases.

A batch is claimed in one go (``Store.claim_digests``), held under a lease that a small thread
renews while the batch works, composed together, rendered and handed to one mail connection, and
finished in a few short transactions. Whatever the batch did not finish (a shutdown, a bug) is
released for the next pass; whatever a dead process held is taken over once its lease lapses.
One reader's failure is recorded on their digest and retried with backoff; it never stops the batch.
"""
from __future__ import annotations

import datetime as dt
import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence
from urllib.parse import urlsplit

from ..config import UserSettings
from ..errors import PermanentDeliveryError, TemporaryDeliveryError
from ..logs import get_logger
from ..schedule import due_day, local_now
from ..store import Composed, Digest, Finish
from .compose import Request, compose_batch, items_from
from .fetch import backoff, fetch_all
from .timing import stage
from .view import ViewRequest, build_views

if TYPE_CHECKING:
    from ..app import App

log = get_logger("digestd.deliver")

BATCH_SIZE = 1000                         # readers per batch: bounds memory whatever the number of readers
LEASE = dt.timedelta(seconds=30)          # a dead pass's digests are taken over this soon after it stops renewing
RENEW_EVERY = 10.0                        # seconds between lease renewals while a batch works
# A message's outcome is written as soon as the mailer took it: a process killed right after would
# otherwise send it again on takeover. One small UPDATE per message, against one mail per reader.
FINISH_EVERY = 1
SEND_BACKOFF_BASE = dt.timedelta(minutes=2)
SEND_BACKOFF_MAX = dt.timedelta(hours=1)

Work = tuple[UserSettings, dt.date]


@dataclass
class DeliveryOutcome:
    user: str
    day: dt.date
    status: str            # sent / empty / retry / failed / already / feed-only / unsubscribed
    papers: int = 0
    message_id: str | None = None
    error: str | None = None


# -- what is due -----------------------------------------------------------------------------------
def due_work(app: "App", now: dt.datetime, *, only_user: str | None = None, day: dt.date | None = None) -> list[Work]:
    """Today's digests due by ``now`` (each reader's local day), or the one asked for."""
    if only_user:
        user = app.reader(only_user)
        return [(user, day or local_now(user, now).date())]
    work = []
    for user in app.settings.users:
        d = day if day is not None else due_day(user, now)
        if d is not None:
            work.append((user, d))
    return work


def owed_work(app: "App", now: dt.datetime, *, only_user: str | None = None) -> list[Work]:
    """Digests of any day still owed: retries whose time has come and claims whose lease lapsed."""
    rows = app.store.owed_digests(now, [only_user] if only_user else None)
    out = []
    for d in rows:
        user = app.settings.user(d.user_id)
        if user is not None:
            out.append((user, d.day))
    return out


def pending_deliveries(app: "App", now: dt.datetime, only_user: str | None = None) -> list[Work]:
    """What the daemon owes now: every owed digest, plus today's due ones nobody has taken yet."""
    owed = owed_work(app, now, only_user=only_user)
    due = [w for w in due_work(app, now) if only_user is None or w[0].id == only_user]
    taken = app.store.digest_rows((u.id, d) for u, d in due)
    seen = {(u.id, d) for u, d in owed}
    return owed + [(u, d) for u, d in due if (u.id, d) not in taken and (u.id, d) not in seen]


def deliver_due(app: "App", *, only_user: str | None = None, day: dt.date | None = None,
                force: bool = False) -> list[DeliveryOutcome]:
    """`send` and `run --once`: today's due digests (or the one asked for), and every owed one."""
    now = app.clock.now()
    work = due_work(app, now, only_user=only_user, day=day)
    if day is None and not force:
        have = {(u.id, d) for u, d in work}
        work += [w for w in owed_work(app, now, only_user=only_user) if (w[0].id, w[1]) not in have]
    return deliver_work(app, work, force=force)


def deliver_pending(app: "App", *, only_user: str | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> list[DeliveryOutcome]:
    """The daemon's pass; ``should_stop`` is asked between messages, so a shutdown finishes the
    message in flight and releases the rest for the next start."""
    return deliver_work(app, pending_deliveries(app, app.clock.now(), only_user), should_stop=should_stop)


def run_once(app: "App"):
    fetched = fetch_all(app)
    delivered = deliver_due(app)
    return fetched, delivered


# -- the pass --------------------------------------------------------------------------------------
def deliver_work(app: "App", work: Sequence[Work], *, force: bool = False,
            should_stop: Callable[[], bool] = lambda: False) -> list[DeliveryOutcome]:
    """Deliver ``work`` in batches of ``BATCH_SIZE`` readers through one mail connection."""
    outcomes: list[DeliveryOutcome] = []
    work = list(dict.fromkeys((u.id, d) for u, d in work))
    users = {u.id: u for u in app.settings.users}
    if not work:
        return outcomes
    # Every batch composes as of the pass's start, so they share one pool; claims and leases
    # follow the real clock, so a long pass never claims with a lease that has already run out.
    composed_at = app.clock.now()
    with app.mailer() as mailer:
        for i in range(0, len(work), BATCH_SIZE):
            if should_stop():
                break
            chunk = [(users[uid] if uid in users else app.reader(uid), d) for uid, d in work[i:i + BATCH_SIZE]]
            outcomes.extend(_deliver_batch(app, chunk, mailer, composed_at, force=force, should_stop=should_stop))
    return outcomes


class _Lease:
    """Renews the batch's leases every ``RENEW_EVERY`` seconds until stopped."""

    def __init__(self, app: "App", ids: list[int]) -> None:
        self.app, self.ids = app, ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="digestd-lease", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            try:
                self.app.store.renew_leases(self.ids, self.app.clock.now(), LEASE)
            except Exception as e:  # a missed renewal only risks a takeover, which the claim makes safe
                log.warning("lease renewal failed: %s", e)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _deliver_batch(app: "App", chunk: list[Work], mailer, now: dt.datetime, *, force: bool,
                   should_stop: Callable[[], bool]) -> list[DeliveryOutcome]:
    store = app.store
    user_of = {u.id: u for u, _ in chunk}
    with stage(app, "store"):
        won = store.claim_digests([(u.id, d) for u, d in chunk], app.clock.now(), app.worker_id, LEASE, force=force)
    outcomes: list[DeliveryOutcome] = []
    won_pairs = {(d.user_id, d.day) for d in won}
    lost = [(u.id, d) for u, d in chunk if (u.id, d) not in won_pairs]
    if lost:
        rows = store.digest_rows(lost)
        outcomes += [DeliveryOutcome(uid, d, "already", message_id=getattr(rows.get((uid, d)), "message_id", None))
                     for uid, d in lost]
    if not won:
        return outcomes
    unfinished = {d.id for d in won}
    try:
        with _Lease(app, [d.id for d in won]), store.finishing() as write:
            outcomes += _work_batch(app, won, user_of, mailer, now, force, should_stop, _Finisher(app, unfinished, write))
    finally:
        if unfinished:   # a shutdown or a bug: hand the rest back for the next pass at once
            store.release_digests(sorted(unfinished))
    return outcomes


def _work_batch(app: "App", won: list[Digest], user_of: dict[str, UserSettings], mailer, now: dt.datetime,
                force: bool, should_stop: Callable[[], bool], done: "_Finisher") -> list[DeliveryOutcome]:
    store = app.store
    with stage(app, "store"):
        items = store.items_of([d.id for d in won])
    notes = {d.id: d.note for d in won}
    unfinished = done.unfinished
    # A retry sends exactly what was composed before; only a first attempt composes.
    fresh = [d for d in won if not items.get(d.id) and not (d.attempts and d.note)]
    composed = _compose_isolated(app, [Request(user_of[d.user_id], d.day, d.id) for d in fresh], now)
    saved = []
    for d, comp in zip(fresh, composed):
        if isinstance(comp, Exception):
            done(_retry(app, d, comp, now), DeliveryOutcome(d.user_id, d.day, "retry", error=str(comp)))
            continue
        its = items_from(comp)
        items[d.id], notes[d.id] = its, comp.note
        saved.append(Composed(d.id, d.user_id, its, comp.covers_from, comp.covers_until, comp.note))
    with stage(app, "store"):
        store.save_compositions(saved)
    todo = [d for d in won if d.id in unfinished]
    views = build_views(app, [ViewRequest(user_of[d.user_id], d.day, items.get(d.id, []), notes[d.id]) for d in todo], now)
    with stage(app, "store"):
        subscribed = {u.id: u.subscribed for u in store.users_by_ids(d.user_id for d in todo).values()}
    with _Sender(app, mailer, done, should_stop) as sender:
        for d, view in zip(todo, views):
            if should_stop() or sender.failed:
                break
            user = user_of[d.user_id]
            ready = _prepare(app, user, d, view, subscribed.get(user.id, False), force)
            if isinstance(ready, _Message):
                sender.put(ready)
            else:
                done(*ready)
    return done.outcomes


class _Finisher:
    """Records each digest's end as soon as it is known (see FINISH_EVERY), on one connection held
    for the batch; shared by the thread that renders and the one that sends."""

    def __init__(self, app: "App", unfinished: set[int], write: Callable[[list[Finish]], None]) -> None:
        self.app, self.unfinished, self.write = app, unfinished, write
        self.outcomes: list[DeliveryOutcome] = []
        self._pending: list[Finish] = []
        self._lock = threading.Lock()

    def __call__(self, f: Finish, o: DeliveryOutcome) -> None:
        with self._lock:
            self._pending.append(f)
            self.outcomes.append(o)
            if len(self._pending) >= FINISH_EVERY:
                self.flush()
            self.unfinished.discard(f.digest_id)

    def flush(self) -> None:
        if self._pending:
            with stage(self.app, "store"):
                self.write(self._pending)
            self._pending = []


@dataclass
class _Message:
    digest: Digest
    user: UserSettings
    raw: bytes
    message_id: str
    papers: int


class _Sender:
    """Hands rendered messages to the mailer from a thread of its own, so the next messages are
    rendered while this one crosses the wire (the socket waits release the GIL). The queue is short:
    a shutdown leaves at most a few rendered messages unsent, released with the rest."""

    QUEUE = 32

    def __init__(self, app: "App", mailer, done: _Finisher, should_stop: Callable[[], bool]) -> None:
        import queue

        self.app, self.mailer, self.done, self.should_stop = app, mailer, done, should_stop
        self.queue: queue.Queue = queue.Queue(self.QUEUE)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="digestd-smtp", daemon=True)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def put(self, msg: _Message) -> None:
        self.queue.put(msg)

    def _run(self) -> None:
        while (msg := self.queue.get()) is not None:
            if self.error is not None or self.should_stop():
                continue                                  # drain: left unfinished, released later
            try:
                self.done(*_send(self.app, self.mailer, msg))
            except BaseException as e:   # a bug in the mailer or a kill: stop sending, tell the pass
                self.error = e

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.queue.put(None)
        self._thread.join()
        self.done.flush()
        if self.error is not None and exc[0] is None:
            raise self.error


def _compose_isolated(app: "App", requests: list[Request], now: dt.datetime) -> list:
    """The batch composed together; should that fail, each reader alone, so one bad reader costs
    only their own digest (returned as the exception, and retried later)."""
    if not requests:
        return []
    try:
        return compose_batch(app, requests, now)
    except Exception as e:
        log.exception("composing a batch of %d failed (%s); composing one by one", len(requests), e)
    out: list = []
    for r in requests:
        try:
            out.append(compose_batch(app, [r], now)[0])
        except Exception as e:
            log.exception("compose failed: %s", e, extra={"user": r.user.id})
            out.append(e)
    return out


def message_id_for(app: "App", digest_id: int, day: dt.date, resend: bool) -> str:
    host = urlsplit(app.settings.digestd.base_url).hostname or "digestd.local"
    suffix = f".{secrets.token_hex(4)}" if resend else ""
    return f"<digest.{digest_id}.{day.isoformat()}{suffix}@{host}>"


def _prepare(app: "App", user: UserSettings, d: Digest, view, subscribed: bool,
             force: bool) -> _Message | tuple[Finish, DeliveryOutcome]:
    """The rendered message for one digest, or how it ends without one."""
    from ..render import render_message

    now = app.clock.now()
    n = len(view.papers)
    if not n and user.on_empty == "skip":
        return Finish(d.id, "empty", now), DeliveryOutcome(user.id, d.day, "empty")
    if "email" not in user.formats or not subscribed:
        # Feed-only (or unsubscribed): the digest is delivered by appearing in the feed.
        return (Finish(d.id, "sent" if n else "empty", now),
                DeliveryOutcome(user.id, d.day, "feed-only" if subscribed else "unsubscribed", papers=n))
    try:
        mid = message_id_for(app, d.id, d.day, force and d.sent_at is not None)
        with stage(app, "render"):
            raw = render_message(view, from_addr=app.from_addr, message_id=mid, date=now, list_id=app.list_id)
        return _Message(d, user, raw, mid, n)
    except Exception as e:  # one reader's bug must not stop the others; the digest is retried later
        log.exception("digest failed: %s", e, extra={"user": user.id})
        return _retry(app, d, e, now), DeliveryOutcome(user.id, d.day, "retry", error=str(e))


def _send(app: "App", mailer, msg: _Message) -> tuple[Finish, DeliveryOutcome]:
    d, user = msg.digest, msg.user
    now = app.clock.now()
    try:
        with stage(app, "smtp"):
            mailer.send_raw(msg.raw, user.email)
        log.info("digest sent: %d papers", msg.papers, extra={"user": user.id})
        return Finish(d.id, "sent", app.clock.now(), message_id=msg.message_id), \
            DeliveryOutcome(user.id, d.day, "sent", papers=msg.papers, message_id=msg.message_id)
    except TemporaryDeliveryError as e:
        attempts = (d.attempts or 0) + 1
        if attempts >= app.max_send_attempts:
            log.error("digest failed after %d attempts: %s", attempts, e, extra={"user": user.id})
            return Finish(d.id, "failed", now, error=str(e)), DeliveryOutcome(user.id, d.day, "failed", error=str(e))
        wait = backoff(SEND_BACKOFF_BASE, attempts, SEND_BACKOFF_MAX)
        log.warning("digest delivery will be retried in %s: %s", wait, e, extra={"user": user.id})
        return (Finish(d.id, "retry", now, error=str(e), next_attempt_at=now + wait),
                DeliveryOutcome(user.id, d.day, "retry", error=str(e)))
    except PermanentDeliveryError as e:
        log.error("digest refused by the mail server: %s", e, extra={"user": user.id})
        return Finish(d.id, "failed", now, error=str(e)), DeliveryOutcome(user.id, d.day, "failed", error=str(e))
    except Exception as e:  # one reader's bug must not stop the others; the digest is retried later
        log.exception("digest failed: %s", e, extra={"user": user.id})
        return _retry(app, d, e, now), DeliveryOutcome(user.id, d.day, "retry", error=str(e))


def _retry(app: "App", d: Digest, e: Exception, now: dt.datetime) -> Finish:
    wait = backoff(SEND_BACKOFF_BASE, (d.attempts or 0) + 1, SEND_BACKOFF_MAX)
    return Finish(d.id, "retry", now, error=f"{e.__class__.__name__}: {e}", next_attempt_at=now + wait)
