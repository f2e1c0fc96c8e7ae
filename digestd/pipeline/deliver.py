"""Deliver: picks -> messages -> mailer, a batch of due readers at a time, under leases.

A batch is claimed in one go (``Store.claim_digests``), held under a lease that a small thread
renews while the batch works, composed together, rendered and handed to one mail connection, and
finished in a few short transactions. Whatever the batch did not finish (a shutdown, a bug) is
released for the next pass; whatever a dead process held is taken over once its lease lapses.
One reader's failure is recorded on their digest and retried with backoff; it never stops the batch.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence
from urllib.parse import urlsplit

from ..collector import collector_paused
from ..config import UserSettings
from ..errors import ConfigError, PermanentDeliveryError, TemporaryDeliveryError
from ..logs import get_logger
from ..render_job import RenderJob, render_one
from ..schedule import due_day, local_now
from ..store import Composed, Digest, Finish
from .compose import Request, compose_batch, items_from
from .fetch import backoff, fetch_all
from .handoff import LEASE, Batch, Message, Sender, end_dead_leases
from .render_pool import RenderPool, workers_wanted
from .timing import add_seconds, stage
from .view import ViewRequest, build_views

if TYPE_CHECKING:
    from ..app import App

log = get_logger("digestd.deliver")

BATCH_SIZE = 1000                         # readers per batch: bounds memory whatever the number of readers
SEND_BACKOFF_BASE = dt.timedelta(minutes=2)
SEND_BACKOFF_MAX = dt.timedelta(hours=1)

Work = tuple[UserSettings, dt.date]


@dataclass
class DeliveryOutcome:
    user: str
    day: dt.date
    status: str            # sent / empty / retry / failed / already / in-progress / feed-only / unsubscribed / paused
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
    """Digests of any day still owed: retries whose time has come and claims whose lease lapsed
    (or whose process, on this host, is gone)."""
    end_dead_leases(app)
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
    """Deliver ``work`` in batches of ``BATCH_SIZE`` readers through one mail connection: each batch
    is composed and rendered while the one before it is being sent."""
    work = list(dict.fromkeys((u.id, d) for u, d in work))
    users = {u.id: u for u in app.settings.users}
    if not work:
        return []
    end_dead_leases(app)    # a killed pass's digests go out now, not after their lease runs out
    # Every batch composes as of the pass's start, so they share one pool; claims and leases
    # follow the real clock, so a long pass never claims with a lease that has already run out.
    composed_at = app.clock.now()
    already: list[DeliveryOutcome] = []
    batches: list[Batch] = []
    workers = workers_wanted(len(work))
    renderer = RenderPool(workers, lambda s: add_seconds(app, "render", s)) if workers else contextlib.nullcontext()
    # The pool outlives the sender: the sending thread waits for the workers' bytes.
    with app.mailer() as mailer, renderer as pool, Sender(app, mailer, should_stop, _send) as sender:
        for i in range(0, len(work), BATCH_SIZE):
            if should_stop() or sender.failed:
                break
            chunk = [(users[uid] if uid in users else app.reader(uid), d) for uid, d in work[i:i + BATCH_SIZE]]
            sender.begin()
            with collector_paused():
                batch = _deliver_batch(app, chunk, sender, composed_at, force=force, should_stop=should_stop,
                                       already=already, pool=pool)
            if batch is not None:
                batches.append(batch)
    return already + [o for b in batches for o in b.outcomes]


def _deliver_batch(app: "App", chunk: list[Work], sender: Sender, now: dt.datetime, *, force: bool,
                   should_stop: Callable[[], bool], already: list, pool: RenderPool | None = None) -> Batch | None:
    store = app.store
    user_of = {u.id: u for u, _ in chunk}
    try:
        with stage(app, "store"):
            won = store.claim_digests([(u.id, d) for u, d in chunk], app.clock.now(), app.worker_id, LEASE,
                                      force=force)
        won_pairs = {(d.user_id, d.day) for d in won}
        lost = [(u.id, d) for u, d in chunk if (u.id, d) not in won_pairs]
        if lost:
            rows = store.digest_rows(lost)
            already += [_not_claimed(uid, d, rows.get((uid, d))) for uid, d in lost]
        batch = Batch(app, won) if won else None
    except BaseException:
        sender.cancel()
        raise
    if batch is None:
        sender.cancel()
        return None
    try:
        _work_batch(app, batch, user_of, sender, now, force, should_stop, pool)
    finally:
        sender.end(batch)     # closed (flushed, lease stopped, the rest released) once its messages are out
    return batch


def _work_batch(app: "App", batch: Batch, user_of: dict[str, UserSettings], sender: Sender, now: dt.datetime,
                force: bool, should_stop: Callable[[], bool], pool: RenderPool | None = None) -> None:
    store = app.store
    won = batch.won
    with stage(app, "store"):
        items = store.items_of([d.id for d in won])
    notes = {d.id: d.note for d in won}
    # A retry sends exactly what was composed before; only a first attempt composes.
    fresh = [d for d in won if not items.get(d.id) and not (d.attempts and d.note)]
    composed = _compose_isolated(app, [Request(user_of[d.user_id], d.day, d.id) for d in fresh], now)
    saved = []
    for d, comp in zip(fresh, composed):
        if isinstance(comp, Exception):
            batch.done(_retry(app, d, comp, now), DeliveryOutcome(d.user_id, d.day, "retry", error=str(comp)))
            continue
        its = items_from(comp)
        items[d.id], notes[d.id] = its, comp.note
        saved.append(Composed(d.id, d.user_id, its, comp.covers_from, comp.covers_until, comp.note))
    with stage(app, "store"):
        store.save_compositions(saved)
    todo = [d for d in won if d.id in batch.unfinished]
    windows = {c.digest_id: (c.covers_from, c.covers_until) for c in saved}
    # With render workers, they convert the papers' TeX too.
    views = build_views(app, [ViewRequest(user_of[d.user_id], d.day, items.get(d.id, []), notes[d.id],
                                          *windows.get(d.id, (d.covers_from, d.covers_until))) for d in todo], now,
                        readable_text=pool is None)
    with stage(app, "store"):
        rows = store.users_by_ids(d.user_id for d in todo)
    paused = {uid: u.paused_until for uid, u in rows.items() if u.paused_until is not None}
    subscribed = {u.id: u.subscribed for u in rows.values()}
    to_render: list[Message] = []       # their ``raw`` is the job for the render workers
    for d, view in zip(todo, views):
        if should_stop() or sender.failed:
            break
        user = user_of[d.user_id]
        if user.id in paused and d.day < paused[user.id]:
            # A paused reader (a holiday) gets no mail until the pause ends; the feed goes on.
            batch.done(Finish(d.id, "sent" if view.papers else "empty", app.clock.now()),
                       DeliveryOutcome(user.id, d.day, "paused", papers=len(view.papers)))
            continue
        ready = _prepare(app, user, d, view, subscribed.get(user.id, False), force, render=pool is None)
        if not isinstance(ready, Message):
            batch.done(*ready)
        elif isinstance(ready.raw, RenderJob):
            to_render.append(ready)
        else:
            sender.put(batch, ready)
    if to_render:
        for msg, rendered in zip(to_render, pool.submit([m.raw for m in to_render])):
            msg.raw = rendered
            sender.put(batch, msg)


def _not_claimed(user_id: str, day: dt.date, row) -> DeliveryOutcome:
    """What a digest this pass could not claim is: only a closed one is "already" (sent or empty);
    a retry not yet due stays "retry", a failed one "failed", one another pass holds "in-progress"."""
    status = getattr(row, "status", None)
    if status in ("retry", "failed"):
        when = getattr(row, "next_attempt_at", None)
        note = f"next attempt at {when.isoformat()}" if status == "retry" and when else None
        error = "; ".join(x for x in (getattr(row, "error", None), note) if x) or None
        return DeliveryOutcome(user_id, day, status, error=error)
    if status == "claimed":
        return DeliveryOutcome(user_id, day, "in-progress", error=f"being delivered by {row.claimed_by}")
    return DeliveryOutcome(user_id, day, "already", message_id=getattr(row, "message_id", None))


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


def _prepare(app: "App", user: UserSettings, d: Digest, view, subscribed: bool, force: bool,
             render: bool = True) -> Message | tuple[Finish, DeliveryOutcome]:
    """The rendered message for one digest, or how it ends without one; with ``render`` False, the
    message whose ``raw`` is still the job that renders it (in a worker process)."""
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
        # Without workers the view's texts were made readable in the pass (build_views).
        job = RenderJob(view, app.from_addr, mid, now, app.list_id, as_stored=not render)
        if not render:
            return Message(d, user, job, mid, n)
        with stage(app, "render"):
            raw = render_one(job)
        return Message(d, user, raw, mid, n)
    except Exception as e:  # one reader's bug must not stop the others; the digest is retried later
        log.exception("digest failed: %s", e, extra={"user": user.id})
        return _retry(app, d, e, now), DeliveryOutcome(user.id, d.day, "retry", error=str(e))


def _send(app: "App", mailer, msg: Message) -> tuple[Finish, DeliveryOutcome]:
    d, user = msg.digest, msg.user
    now = app.clock.now()
    try:
        raw = msg.raw_bytes()    # a worker may still be rendering it
        with stage(app, "smtp"):
            mailer.send_raw(raw, user.email)
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
    except ConfigError:
        raise    # the operator's to fix (say, the SMTP password went missing): stop; the digest stays pending
    except PermanentDeliveryError as e:
        log.error("digest refused by the mail server: %s", e, extra={"user": user.id})
        return Finish(d.id, "failed", now, error=str(e)), DeliveryOutcome(user.id, d.day, "failed", error=str(e))
    except Exception as e:  # one reader's bug must not stop the others; the digest is retried later
        log.exception("digest failed: %s", e, extra={"user": user.id})
        return _retry(app, d, e, now), DeliveryOutcome(user.id, d.day, "retry", error=str(e))


def _retry(app: "App", d: Digest, e: Exception, now: dt.datetime) -> Finish:
    wait = backoff(SEND_BACKOFF_BASE, (d.attempts or 0) + 1, SEND_BACKOFF_MAX)
    return Finish(d.id, "retry", now, error=f"{e.__class__.__name__}: {e}", next_attempt_at=now + wait)
