"""Digests: claims under leases, their items, and what was sent.

A (reader, day) row is the claim that prevents a double send. A pass claims a whole batch of rows
in two statements, holds them under a lease (``claimed_by``, ``lease_until``) that it renews while
it works, and finishes them in one transaction. A process that dies leaves leases that lapse, and
the next pass, on any day, takes those digests over and delivers them: a claimed digest is never
lost, and its papers (already reserved for it) are never counted as sent without it.
"""
from __future__ import annotations

import datetime as dt
import uuid
from contextlib import contextmanager
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import select

from .records import Item
from .tables import Digest, DigestItem, Paper, dialect_insert

# Statuses whose items are promised to the reader: never offer those papers again.
RESERVED = ("sent", "claimed", "retry")
# Statuses that close a digest and say what it covered.
COVERED = ("sent", "empty", "skipped")
_CHUNK = 500      # rows of an IN list: well under SQLite's and PostgreSQL's parameter limits


@dataclass
class Finish:
    """How one claimed digest ended, written with the others of its batch in one transaction."""

    digest_id: int
    status: str                           # sent | empty | retry | failed
    at: dt.datetime
    message_id: str | None = None
    error: str | None = None
    next_attempt_at: dt.datetime | None = None


@dataclass
class Composed:
    """What a pass composed for one claimed digest."""

    digest_id: int
    user_id: str
    items: list[Item]
    covers_from: dt.datetime | None
    covers_until: dt.datetime
    note: str | None


def _chunks(seq: Sequence, n: int = _CHUNK):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


class DigestQueries:
    """Mixed into ``Store``, which provides ``session()`` and ``engine``."""

    engine: sa.Engine

    # -- reading ---------------------------------------------------------------------------------
    def get_digest(self, user_id: str, day: dt.date) -> Digest | None:
        with self.session() as s:
            return s.exec(select(Digest).where(Digest.user_id == user_id, Digest.day == day)).first()

    def digest_rows(self, pairs: Iterable[tuple[str, dt.date]]) -> dict[tuple[str, dt.date], Digest]:
        """The digest rows of these (reader, day) pairs that exist."""
        pairs = list(dict.fromkeys(pairs))
        out: dict[tuple[str, dt.date], Digest] = {}
        with self.session() as s:
            for chunk in _chunks(pairs):
                q = select(Digest).where(sa.tuple_(Digest.user_id, Digest.day).in_(chunk))
                out.update({(d.user_id, d.day): d for d in s.exec(q)})
        return out

    def last_digest(self, user_id: str, before_day: dt.date | None = None) -> Digest | None:
        """The newest digest that covered papers (sent, empty or skipped), optionally before a day."""
        with self.session() as s:
            q = select(Digest).where(Digest.user_id == user_id, Digest.status.in_(COVERED))
            if before_day is not None:
                q = q.where(Digest.day < before_day)
            return s.exec(q.order_by(Digest.day.desc())).first()

    def covered_until(self, user_ids: Sequence[str], before_day: dt.date) -> dict[str, dt.datetime]:
        """Per reader, the end of what their digests before ``before_day`` covered (missing: none yet).
        ``covers_until`` grows with the day, so the newest is the maximum: one grouped query."""
        out: dict[str, dt.datetime] = {}
        with self.session() as s:
            for chunk in _chunks(list(user_ids)):
                q = (select(Digest.user_id, sa.func.max(Digest.covers_until))
                     .where(Digest.user_id.in_(chunk), Digest.status.in_(COVERED), Digest.day < before_day)
                     .group_by(Digest.user_id))
                out.update({u: _aware(t) for u, t in s.exec(q) if t is not None})
        return out

    def owed_digests(self, now: dt.datetime, user_ids: Sequence[str] | None = None) -> list[Digest]:
        """Digests of any day that must still go out: a retry whose time has come, or a claim whose
        lease lapsed (its process died). Rows claimed before leases existed count by their age."""
        with self.session() as s:
            q = select(Digest).where(sa.or_(
                sa.and_(Digest.status == "retry", sa.or_(Digest.next_attempt_at.is_(None), Digest.next_attempt_at <= now)),
                sa.and_(Digest.status == "claimed", _lapsed(now)),
            ))
            if user_ids is not None:
                rows: list[Digest] = []
                for chunk in _chunks(list(user_ids)):
                    rows.extend(s.exec(q.where(Digest.user_id.in_(chunk))))
                return sorted(rows, key=lambda d: (d.user_id, d.day))
            return list(s.exec(q.order_by(Digest.user_id, Digest.day)))

    def digest_items(self, digest_id: int) -> list[Item]:
        return self.items_of([digest_id]).get(digest_id, [])

    def items_of(self, digest_ids: Sequence[int]) -> dict[int, list[Item]]:
        t = DigestItem.__table__.c
        out: dict[int, list[Item]] = {}
        with self.session() as s:
            for chunk in _chunks(list(digest_ids)):
                q = (sa.select(t.digest_id, t.paper_key, t.position, t.score, t.reason, t.highlight, t.explore)
                     .where(t.digest_id.in_(chunk)).order_by(t.digest_id, t.position))
                for did, *fields in s.execute(q):
                    out.setdefault(did, []).append(Item(*fields))
        return out

    def sent_keys(self, user_id: str, excluding_digest: int | None = None) -> set[str]:
        with self.session() as s:
            q = (select(DigestItem.paper_key).join(Digest, Digest.id == DigestItem.digest_id)
                 .where(DigestItem.user_id == user_id, Digest.status.in_(RESERVED)))
            if excluding_digest is not None:
                q = q.where(Digest.id != excluding_digest)
            return set(s.exec(q))

    def reserved_keys(self, user_ids: Sequence[str], paper_keys: Sequence[str],
                      excluding: Iterable[int] = ()) -> dict[str, set[str]]:
        """Per reader, which of ``paper_keys`` their digests already hold (sent, or promised to a
        claimed or retrying digest other than ``excluding``). Restricted to the pool's papers, so the
        cost follows the day, not the length of every reader's history."""
        excluding = list(excluding)
        out: dict[str, set[str]] = {}
        with self.session() as s:
            for users in _chunks(list(user_ids)):
                for keys in _chunks(list(paper_keys)):
                    q = (select(DigestItem.user_id, DigestItem.paper_key).join(Digest, Digest.id == DigestItem.digest_id)
                         .where(DigestItem.user_id.in_(users), DigestItem.paper_key.in_(keys), Digest.status.in_(RESERVED)))
                    if excluding:
                        q = q.where(Digest.id.not_in(excluding))
                    for u, k in s.exec(q):
                        out.setdefault(u, set()).add(k)
        return out

    def digests(self, user_id: str) -> list[tuple[Digest, list[str]]]:
        with self.session() as s:
            ds = list(s.exec(select(Digest).where(Digest.user_id == user_id).order_by(Digest.day)))
        items = self.items_of([d.id for d in ds])
        return [(d, [i.paper_key for i in items.get(d.id, [])]) for d in ds]

    def feed_items(self, user_id: str, limit: int = 200) -> list[tuple[DigestItem, Paper, Digest]]:
        """Papers delivered to the user (mailed, or feed-only), newest digest first."""
        with self.session() as s:
            rows = s.exec(select(DigestItem, Paper, Digest)
                          .join(Paper, Paper.key == DigestItem.paper_key)
                          .join(Digest, Digest.id == DigestItem.digest_id)
                          .where(DigestItem.user_id == user_id, Digest.status == "sent")
                          .order_by(Digest.day.desc(), DigestItem.position).limit(limit)).all()
        return list(rows)

    # -- claiming --------------------------------------------------------------------------------
    def claim_digests(self, pairs: Sequence[tuple[str, dt.date]], now: dt.datetime, owner: str,
                      lease: dt.timedelta, *, force: bool = False) -> list[Digest]:
        """Claim these (reader, day) digests for one pass; returns the rows this call won.

        New rows are inserted (a conflict means someone else has the row); existing rows are taken
        only when free for it: a retry whose time has come, or a lapsed lease (with ``force``:
        anything not under a live lease, so a sent digest can be sent again). The takeover is one
        conditional UPDATE over rows locked with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
        passes never win the same row and never wait on each other. Each call marks its rows with
        its own claim id, which is how it tells them apart from rows claimed by anybody else."""
        pairs = list(dict.fromkeys(pairs))
        if not pairs:
            return []
        claim = f"{owner}#{uuid.uuid4().hex[:8]}"[-128:]
        until = now + lease
        insert = dialect_insert(self.engine)
        won: list[Digest] = []
        with self.session() as s:
            for chunk in _chunks(pairs, 200):
                rows = [{"user_id": u, "day": d, "status": "claimed", "claimed_at": now, "claimed_by": claim,
                         "lease_until": until, "attempts": 0} for u, d in chunk]
                s.execute(insert(Digest.__table__).values(rows).on_conflict_do_nothing(index_elements=["user_id", "day"]))
                if force:
                    free = sa.or_(Digest.status != "claimed", _lapsed(now))
                else:
                    free = sa.or_(
                        sa.and_(Digest.status == "retry",
                                sa.or_(Digest.next_attempt_at.is_(None), Digest.next_attempt_at <= now)),
                        sa.and_(Digest.status == "claimed", _lapsed(now)))
                takeable = (select(Digest.id).where(sa.tuple_(Digest.user_id, Digest.day).in_(chunk), free,
                                                    sa.or_(Digest.claimed_by.is_(None), Digest.claimed_by != claim))
                            .with_for_update(skip_locked=True))
                s.execute(sa.update(Digest).where(Digest.id.in_(takeable))
                          .values(status="claimed", claimed_at=now, claimed_by=claim, lease_until=until)
                          .execution_options(synchronize_session=False))
                s.commit()
                won.extend(s.exec(select(Digest).where(Digest.claimed_by == claim, Digest.status == "claimed",
                                                       sa.tuple_(Digest.user_id, Digest.day).in_(chunk))))
        return sorted(won, key=lambda d: (d.user_id, d.day))

    def renew_leases(self, digest_ids: Sequence[int], now: dt.datetime, lease: dt.timedelta) -> int:
        """Extend the leases of the pass's digests still in flight; returns how many it still holds."""
        n = 0
        with self.session() as s:
            for chunk in _chunks(list(digest_ids)):
                res = s.execute(sa.update(Digest).where(Digest.id.in_(chunk), Digest.status == "claimed")
                                .values(lease_until=now + lease).execution_options(synchronize_session=False))
                n += res.rowcount
            s.commit()
        return n

    def live_claims(self, now: dt.datetime) -> list[tuple[int, str]]:
        """(id, claimed_by) of every digest claimed under a lease that has not run out."""
        with self.session() as s:
            q = select(Digest.id, Digest.claimed_by).where(Digest.status == "claimed", Digest.lease_until >= now)
            return [(i, by or "") for i, by in s.exec(q)]

    def end_leases(self, digest_ids: Sequence[int]) -> None:
        """Let the claims of a process known to be dead lapse now, so the next claim takes them over
        without waiting out the lease."""
        with self.session() as s:
            for chunk in _chunks(list(digest_ids)):
                s.execute(sa.update(Digest).where(Digest.id.in_(chunk), Digest.status == "claimed")
                          .values(lease_until=Digest.claimed_at).execution_options(synchronize_session=False))
            s.commit()

    def release_digests(self, digest_ids: Sequence[int]) -> None:
        """Give claims back (shutdown, or a batch that failed): the next pass may take them at once."""
        with self.session() as s:
            for chunk in _chunks(list(digest_ids)):
                s.execute(sa.update(Digest).where(Digest.id.in_(chunk), Digest.status == "claimed")
                          .values(status="retry", next_attempt_at=None, lease_until=None)
                          .execution_options(synchronize_session=False))
            s.commit()

    # -- writing a batch ---------------------------------------------------------------------------
    def save_compositions(self, composed: Sequence[Composed]) -> None:
        """Every composed digest of a batch, items and coverage, in one short transaction."""
        if not composed:
            return
        ids = [c.digest_id for c in composed]
        rows = [{"digest_id": c.digest_id, "user_id": c.user_id, "paper_key": it.paper_key, "position": it.position,
                 "score": float(it.score), "reason": it.reason, "highlight": it.highlight, "explore": bool(it.explore)}
                for c in composed for it in c.items]
        with self.session() as s:
            for chunk in _chunks(ids):
                s.execute(sa.delete(DigestItem).where(DigestItem.digest_id.in_(chunk)))
            for chunk in _chunks(rows, 100):
                s.execute(sa.insert(DigestItem.__table__), chunk)
            s.execute(sa.update(Digest.__table__).where(Digest.__table__.c.id == sa.bindparam("b_id"))
                      .values(covers_from=sa.bindparam("b_from"), covers_until=sa.bindparam("b_until"),
                              note=sa.bindparam("b_note")),
                      [{"b_id": c.digest_id, "b_from": c.covers_from, "b_until": c.covers_until, "b_note": c.note}
                       for c in composed])
            s.commit()

    def save_digest_items(self, digest: Digest, items: list, covers_from, covers_until, note: str | None) -> None:
        self.save_compositions([Composed(digest.id, digest.user_id, items, covers_from, covers_until, note)])

    def finish_digests(self, finishes: Sequence[Finish]) -> None:
        """Close digests of a batch in one transaction: sent (with its Message-ID), empty, a retry
        later, or failed. Attempts count the tries that reached the mailer."""
        with self.finishing() as write:
            write(finishes)

    @contextmanager
    def finishing(self):
        """A writer of digest outcomes on one connection held for a batch, one commit a call: a pass
        records each message the moment the mailer took it, so cheaply that it can afford to. On
        PostgreSQL the commit does not wait for the disk (synchronous_commit off): a database crash
        may forget the last instant's outcomes (those mails go again), a digestd crash forgets none."""
        t = Digest.__table__
        stmt = (sa.update(t).where(t.c.id == sa.bindparam("b_id"))
                .values(status=sa.bindparam("b_status"), attempts=t.c.attempts + sa.bindparam("b_inc"),
                        sent_at=sa.func.coalesce(sa.bindparam("b_sent", type_=t.c.sent_at.type), t.c.sent_at),
                        message_id=sa.func.coalesce(sa.bindparam("b_mid", type_=t.c.message_id.type), t.c.message_id),
                        error=sa.bindparam("b_err"), next_attempt_at=sa.bindparam("b_next", type_=t.c.next_attempt_at.type),
                        lease_until=None))
        with self.engine.connect() as c:
            if self.engine.dialect.name == "postgresql":
                c.exec_driver_sql("SET synchronous_commit TO off")
                c.commit()

            def write(finishes: Sequence[Finish]) -> None:
                if not finishes:
                    return
                c.execute(stmt, [{"b_id": f.digest_id, "b_status": f.status, "b_sent": f.at if f.status == "sent" else None,
                                  "b_mid": f.message_id, "b_err": None if f.status == "sent" else f.error,
                                  "b_next": None if f.status == "sent" else f.next_attempt_at,
                                  "b_inc": 1 if f.status in ("sent", "retry", "failed") else 0} for f in finishes])
                c.commit()
            yield write

    def finish_digest(self, digest_id: int, status: str, now: dt.datetime, *, message_id: str | None = None,
                      error: str | None = None, next_attempt_at: dt.datetime | None = None) -> Digest:
        self.finish_digests([Finish(digest_id, status, now, message_id, error, next_attempt_at)])
        with self.session() as s:
            return s.get(Digest, digest_id)


def _lapsed(now: dt.datetime):
    return sa.or_(Digest.lease_until < now,
                  sa.and_(Digest.lease_until.is_(None), Digest.claimed_at < now - LEGACY_STALE_CLAIM))


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


# A claim written before leases existed carries no lease: trust it as long as the old rule did.
LEGACY_STALE_CLAIM = dt.timedelta(minutes=15)
