"""Readers: users, their votes and their stored profiles."""
from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from ..errors import StoreError, UserError
from .records import VoteRecord
from .tables import Feedback, FeedbackEvent, Paper, Profile, User, dialect_insert

VOTE_VALUES = {"up": 1, "down": -1}
_FEED_OWNER = (sa.select(User.__table__.c.id, User.__table__.c.feed_token_hash)
               .where(User.__table__.c.feed_token_hash == sa.bindparam("h"), User.__table__.c.active == sa.true()))


class ReaderQueries:
    """Mixed into ``Store``, which provides ``session()`` and ``engine``."""

    engine: sa.Engine

    # -- users -----------------------------------------------------------------------------------
    def sync_users(self, users: list, now: dt.datetime) -> tuple[list[str], list[str], list[str]]:
        """Make the users table match the config. Removed users are deactivated, never deleted."""
        added, changed, removed = [], [], []
        new_rows: list[dict] = []
        wanted = {u.id: u for u in users}
        with self.session() as s:
            existing = {u.id: u for u in s.exec(select(User))}
            for uid, cfg in wanted.items():
                settings_json = cfg.model_dump_json()
                row = existing.get(uid)
                if row is None:
                    new_rows.append(dict(id=uid, email=cfg.email, timezone=cfg.timezone, active=True,
                                         subscribed=cfg.subscribed, unsubscribed_via_link=False,
                                         settings_json=settings_json, created_at=now, updated_at=now))
                    added.append(uid)
                    continue
                if row.settings_json != settings_json or not row.active:
                    old = json.loads(row.settings_json or "{}")
                    row.email, row.timezone, row.active = cfg.email, cfg.timezone, True
                    # A one-click unsubscribe stands until the config itself changes `subscribed`.
                    if old.get("subscribed", True) != cfg.subscribed or not row.unsubscribed_via_link:
                        row.subscribed = cfg.subscribed
                        row.unsubscribed_via_link = False
                    row.settings_json = settings_json
                    row.updated_at = now
                    changed.append(uid)
            # Another process starting from the same config may add the same readers at the same
            # moment: do nothing on a conflict (its row is the same row). 100 rows a statement.
            for i in range(0, len(new_rows), 100):
                s.execute(dialect_insert(self.engine)(User.__table__).values(new_rows[i:i + 100])
                          .on_conflict_do_nothing(index_elements=["id"]))
            for uid, row in existing.items():
                if uid not in wanted and row.active:
                    row.active = False
                    row.updated_at = now
                    removed.append(uid)
            s.commit()
        return added, changed, removed

    def get_user(self, user_id: str) -> User:
        with self.session() as s:
            row = s.get(User, user_id)
        if row is None:
            raise UserError(f"unknown user {user_id!r}", user=user_id)
        return row

    def users(self, active_only: bool = True) -> list[User]:
        with self.session() as s:
            q = select(User).order_by(User.id)
            if active_only:
                q = q.where(User.active == True)  # noqa: E712
            return list(s.exec(q))

    def set_subscribed(self, user_id: str, subscribed: bool, now: dt.datetime, via_link: bool = False) -> None:
        with self.session() as s:
            row = s.get(User, user_id)
            if row is None:
                raise UserError(f"unknown user {user_id!r}", user=user_id)
            row.subscribed = subscribed
            row.unsubscribed_via_link = via_link and not subscribed
            row.unsubscribed_at = None if subscribed else now
            row.updated_at = now
            s.commit()

    def set_paused(self, user_id: str, until: dt.date | None, now: dt.datetime) -> None:
        with self.session() as s:
            row = s.get(User, user_id)
            if row is None:
                raise UserError(f"unknown user {user_id!r}", user=user_id)
            row.paused_until = until
            row.updated_at = now
            s.commit()

    def set_feed_token(self, user_id: str, nonce: str, token_hash: str) -> None:
        with self.session() as s:
            row = s.get(User, user_id)
            if row is None:
                raise UserError(f"unknown user {user_id!r}", user=user_id)
            row.feed_nonce, row.feed_token_hash = nonce, token_hash
            s.commit()

    def feed_token_owner(self, token_hash: str) -> tuple[str, str] | None:
        """(user id, stored hash) of the active reader whose feed token hashes to ``token_hash``.
        Two columns, no table row: every feed poll asks, and a 304 is little else."""
        with self.engine.connect() as c:
            row = c.execute(_FEED_OWNER, {"h": token_hash}).first()
        return (row[0], row[1]) if row else None

    # -- feedback --------------------------------------------------------------------------------
    def set_vote(self, user_id: str, paper_key: str, vote: str, via: str, now: dt.datetime) -> None:
        """Set the user's one current vote and keep the call in the history, in one short transaction.
        An upsert, never a read-then-insert: two presses at once (a double click, two devices) both
        succeed, the last one wins. On SQLite the first statement writes, so the transaction takes
        the write lock at once (waiting out the busy timeout) instead of failing to upgrade a read."""
        fb, ev = Feedback.__table__, FeedbackEvent.__table__
        try:
            with self.engine.begin() as c:
                if vote == "clear":
                    c.execute(sa.delete(fb).where(fb.c.user_id == user_id, fb.c.paper_key == paper_key))
                else:
                    stmt = dialect_insert(self.engine)(fb).values(
                        user_id=user_id, paper_key=paper_key, vote=VOTE_VALUES[vote], via=via, at=now)
                    c.execute(stmt.on_conflict_do_update(index_elements=["user_id", "paper_key"], set_={
                        "vote": stmt.excluded.vote, "via": stmt.excluded.via, "at": stmt.excluded.at}))
                c.execute(sa.insert(ev).values(user_id=user_id, paper_key=paper_key, vote=vote, via=via, at=now))
        except SQLAlchemyError as e:
            raise StoreError(f"cannot record the vote: {e.__class__.__name__}", user=user_id, paper=paper_key) from e

    def current_vote(self, user_id: str, paper_key: str) -> int | None:
        with self.session() as s:
            row = s.get(Feedback, (user_id, paper_key))
            return row.vote if row else None

    def votes(self, user_id: str) -> list[VoteRecord]:
        with self.session() as s:
            rows = s.exec(select(Feedback, Paper).join(Paper, Paper.key == Feedback.paper_key)
                          .where(Feedback.user_id == user_id).order_by(Feedback.at)).all()
        return [VoteRecord(paper=p, vote=f.vote, at=f.at, via=f.via) for f, p in rows]

    def feedback_events(self, user_id: str) -> list[FeedbackEvent]:
        with self.session() as s:
            return list(s.exec(select(FeedbackEvent).where(FeedbackEvent.user_id == user_id).order_by(FeedbackEvent.id)))

    def downvoted_keys(self, user_id: str) -> set[str]:
        with self.session() as s:
            return set(s.exec(select(Feedback.paper_key).where(Feedback.user_id == user_id, Feedback.vote < 0)))

    # -- profiles --------------------------------------------------------------------------------
    def get_profile(self, user_id: str) -> Profile | None:
        """The user's stored model with its fingerprint and training time, or None."""
        with self.session() as s:
            return s.get(Profile, user_id)

    def save_profile(self, user_id: str, fingerprint: str, model: bytes, now: dt.datetime) -> None:
        """Keep (or replace) one reader's trained model (see ``save_profiles``)."""
        self.save_profiles([(user_id, fingerprint, model)], now)

    def profile_trained_at(self) -> dict[str, dt.datetime | None]:
        """When each user's stored model was trained (without reading the models)."""
        with self.session() as s:
            return dict(s.exec(select(Profile.user_id, Profile.trained_at)).all())


    # -- a whole batch of readers at once ---------------------------------------------------------
    def users_by_ids(self, user_ids: Iterable[str]) -> dict[str, User]:
        ids = list(dict.fromkeys(user_ids))
        out: dict[str, User] = {}
        with self.session() as s:
            for i in range(0, len(ids), 500):
                out.update({u.id: u for u in s.exec(select(User).where(User.id.in_(ids[i:i + 500])))})
        return out

    def set_feed_tokens(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """(user id, nonce, token hash) for these readers, in one transaction (a new signing key)."""
        params = [{"b_id": u, "b_nonce": n, "b_hash": h} for u, n, h in rows]
        if not params:
            return
        t = User.__table__
        with self.session() as s:
            s.execute(sa.update(t).where(t.c.id == sa.bindparam("b_id"))
                      .values(feed_nonce=sa.bindparam("b_nonce"), feed_token_hash=sa.bindparam("b_hash")), params)
            s.commit()

    def mint_feed_tokens(self, rows: Iterable[tuple[str, str, str]]) -> dict[str, str]:
        """(user id, nonce, token hash) for readers who had no feed token yet, in one transaction.
        Only where there is still none: two processes starting together may both mint one, and the
        first write wins. Returns each reader's nonce as stored, whoever wrote it."""
        params = [{"b_id": u, "b_nonce": n, "b_hash": h} for u, n, h in rows]
        if not params:
            return {}
        t = User.__table__
        with self.session() as s:
            s.execute(sa.update(t).where(t.c.id == sa.bindparam("b_id"), t.c.feed_nonce.is_(None))
                      .values(feed_nonce=sa.bindparam("b_nonce"), feed_token_hash=sa.bindparam("b_hash")), params)
            s.commit()
            ids = [p["b_id"] for p in params]
            stored: dict[str, str] = {}
            for i in range(0, len(ids), 500):
                stored.update(s.execute(sa.select(t.c.id, t.c.feed_nonce).where(t.c.id.in_(ids[i:i + 500]))).all())
            return stored

    def votes_of(self, user_ids: Iterable[str]) -> dict[str, list[VoteRecord]]:
        """Every current vote of these readers, with the paper, oldest first. Readers vote on the same
        recent papers, so each voted paper is read once for the whole batch, not once per vote."""
        ids = list(dict.fromkeys(user_ids))
        out: dict[str, list[VoteRecord]] = {u: [] for u in ids}
        rows = []
        with self.session() as s:
            for i in range(0, len(ids), 500):
                rows += s.exec(select(Feedback.user_id, Feedback.paper_key, Feedback.vote, Feedback.at, Feedback.via)
                               .where(Feedback.user_id.in_(ids[i:i + 500])).order_by(Feedback.user_id, Feedback.at)).all()
        papers = self.papers_by_keys({r[1] for r in rows})
        for uid, key, vote, at, via in rows:
            if key in papers:
                out[uid].append(VoteRecord(paper=papers[key], vote=vote, at=at, via=via))
        return out

    def profile_heads(self, user_ids: Iterable[str]) -> dict[str, tuple[str, dt.datetime | None]]:
        """(fingerprint, trained_at) of each reader's stored model, without the model's bytes: most
        of them are read only if still valid (``profile_models``)."""
        ids = list(dict.fromkeys(user_ids))
        out: dict[str, tuple[str, dt.datetime | None]] = {}
        with self.session() as s:
            for i in range(0, len(ids), 500):
                out.update({uid: (fp, at) for uid, fp, at in s.exec(
                    select(Profile.user_id, Profile.fingerprint, Profile.trained_at)
                    .where(Profile.user_id.in_(ids[i:i + 500])))})
        return out

    def profile_models(self, user_ids: Iterable[str], chunk: int = 100) -> Iterator[list[tuple[str, bytes]]]:
        """The stored models' bytes, (user id, bytes), ``chunk`` readers at a time: a batch's models
        are over a hundred megabytes, and each chunk can be unpacked and let go before the next."""
        ids = list(dict.fromkeys(user_ids))
        for i in range(0, len(ids), chunk):
            with self.session() as s:
                rows = s.exec(select(Profile.user_id, Profile.model).where(Profile.user_id.in_(ids[i:i + chunk]))).all()
            yield [(uid, bytes(blob)) for uid, blob in rows]

    def save_profiles(self, rows: Iterable[tuple[str, str, bytes]], now: dt.datetime) -> None:
        """Keep (or replace) trained models, (user id, fingerprint, bytes) each, a hundred to a
        transaction: a batch's models are over a hundred megabytes, and one long write would hold up
        the pass's outcome writes behind it. ``rows`` is read a hundred at a time, so a generator's
        bytes need not all exist at once. An upsert: two processes training one reader at once both
        succeed, the last write wins, and either model is valid for its fingerprint."""
        insert = dialect_insert(self.engine)
        rows = iter(rows)
        saved = 0
        try:
            while values := [{"user_id": u, "fingerprint": f, "model": m, "trained_at": now}
                             for u, f, m in itertools.islice(rows, 100)]:
                with self.engine.begin() as c:
                    stmt = insert(Profile.__table__).values(values)
                    c.execute(stmt.on_conflict_do_update(index_elements=["user_id"], set_={
                        "fingerprint": stmt.excluded.fingerprint, "model": stmt.excluded.model,
                        "trained_at": stmt.excluded.trained_at}))
                saved += len(values)
        except SQLAlchemyError as e:
            raise StoreError(f"cannot save trained profiles (saved {saved} before): {e.__class__.__name__}") from e
