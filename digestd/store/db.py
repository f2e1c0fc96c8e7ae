"""Every query digestd makes. Nothing outside ``store/`` writes SQL."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import Session, SQLModel, create_engine, select

from ..errors import StoreError, UserError
from ..models import FetchedPaper, PaperText
from .tables import Digest, DigestItem, Feedback, FeedbackEvent, Listing, Paper, PaperEmbedding, Profile, SourceState, User

VOTE_VALUES = {"up": 1, "down": -1}
# A claim older than this belongs to a process that died mid-send and may be taken over.
STALE_CLAIM = dt.timedelta(minutes=15)

# One statement, built once: it runs on every feed poll. The outer join keeps a user without digests.
_FEED_STAMP = (
    sa.select(User.feed_nonce, User.created_at, sa.func.count(Digest.id), sa.func.sum(Digest.id), sa.func.max(Digest.id),
              sa.func.sum(Digest.attempts), sa.func.max(Digest.sent_at), sa.func.max(Digest.claimed_at))
    .select_from(User)
    .outerjoin(Digest, sa.and_(Digest.user_id == User.id, Digest.status == "sent"))
    .where(User.id == sa.bindparam("user_id"))
    .group_by(User.id, User.feed_nonce, User.created_at)
)


def _enable_sqlite_wal(dbapi_conn, _record) -> None:
    # WAL lets the HTTP server read while a digest job writes; busy_timeout rides out short write locks.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


@dataclass
class VoteRecord:
    paper: Paper
    vote: int
    at: dt.datetime
    via: str


def paper_text(p: Paper) -> PaperText:
    return PaperText(key=p.key, title=p.title, abstract=p.abstract, authors=json.loads(p.authors_json),
                     published=p.published_at)


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        try:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
                self.engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
                sa.event.listen(self.engine, "connect", _enable_sqlite_wal)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError) as e:
            raise StoreError(f"cannot open database {self.safe_url}: {e}") from e

    @property
    def safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def init_schema(self) -> None:
        try:
            SQLModel.metadata.create_all(self.engine)
        except SQLAlchemyError as e:
            raise StoreError(f"cannot create tables in {self.safe_url}: {e.__class__.__name__}: {e.orig if hasattr(e, 'orig') else e}") from e

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as c:
                c.execute(sa.text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def dispose(self) -> None:
        self.engine.dispose()

    # -- papers and listings ---------------------------------------------------------------------
    def upsert_papers(self, source: str, day: dt.date, papers: Iterable[FetchedPaper], now: dt.datetime) -> tuple[int, int]:
        """Store papers and their listing in ``source`` on ``day``. Returns (new papers, new listings)."""
        papers = list({fp.key: fp for fp in papers}.values())
        new_papers = new_listings = 0
        with self.session() as s:
            for i in range(0, len(papers), 500):
                chunk = papers[i:i + 500]
                keys = [fp.key for fp in chunk]
                # One query for the rows we have and one for the listings: a day's list is hundreds of papers.
                rows = {p.key: p for p in s.exec(select(Paper).where(Paper.key.in_(keys)))}
                listed = set(s.exec(select(Listing.paper_key).where(Listing.paper_key.in_(keys), Listing.source == source,
                                                                    Listing.day == day)))
                for fp in chunk:
                    row = rows.get(fp.key)
                    if row is None:
                        row = Paper(key=fp.key, title=fp.title, first_seen_at=now)
                        s.add(row)
                        new_papers += 1
                    self._merge_paper(row, fp, now)
                s.flush()
                for fp in chunk:
                    if fp.key not in listed:
                        s.add(Listing(paper_key=fp.key, source=source, day=day, announce_type=fp.announce_type, seen_at=now))
                        new_listings += 1
            s.commit()
        return new_papers, new_listings

    @staticmethod
    def _merge_paper(row: Paper, fp: FetchedPaper, now: dt.datetime) -> None:
        # Newer information wins, but never blank out what another source gave us.
        row.title = fp.title or row.title
        if fp.abstract and len(fp.abstract) >= len(row.abstract or ""):
            row.abstract = fp.abstract
        if fp.authors:
            row.authors_json = json.dumps(fp.authors, ensure_ascii=False)
        if fp.categories:
            row.categories_json = json.dumps(fp.categories)
        row.arxiv_id = fp.arxiv_id or row.arxiv_id
        if fp.version and (row.version or 0) < fp.version:
            row.version = fp.version
        row.url = fp.url or row.url
        row.pdf_url = fp.pdf_url or row.pdf_url
        row.published_at = fp.published or row.published_at
        if fp.upvotes is not None:
            row.upvotes = fp.upvotes
        if fp.extra:
            extra = json.loads(row.extra_json or "{}")
            extra.update(fp.extra)
            row.extra_json = json.dumps(extra, ensure_ascii=False, default=str)
        row.updated_at = now

    def get_paper(self, key: str) -> Paper | None:
        with self.session() as s:
            return s.get(Paper, key)

    def papers_by_keys(self, keys: Iterable[str]) -> dict[str, Paper]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, Paper] = {}
        with self.session() as s:
            for i in range(0, len(keys), 500):
                for p in s.exec(select(Paper).where(Paper.key.in_(keys[i:i + 500]))):
                    out[p.key] = p
        return out

    def sources_of(self, keys: Iterable[str]) -> dict[str, list[str]]:
        keys = list(keys)
        out: dict[str, list[str]] = {}
        with self.session() as s:
            for i in range(0, len(keys), 500):
                rows = s.exec(select(Listing.paper_key, Listing.source).where(Listing.paper_key.in_(keys[i:i + 500])))
                for k, src in rows:
                    out.setdefault(k, [])
                    if src not in out[k]:
                        out[k].append(src)
        return out

    def first_listed_day(self, keys: Iterable[str]) -> dict[str, dt.date]:
        keys = list(keys)
        out: dict[str, dt.date] = {}
        with self.session() as s:
            for i in range(0, len(keys), 500):
                q = select(Listing.paper_key, sa.func.min(Listing.day)).where(Listing.paper_key.in_(keys[i:i + 500])).group_by(Listing.paper_key)
                out.update({k: d for k, d in s.exec(q)})
        return out

    def candidate_papers(self, sources: list[str], since: dt.datetime | None, until: dt.datetime) -> list[Paper]:
        """Papers listed in any of ``sources`` and first seen by us in (since, until]."""
        with self.session() as s:
            q = select(Listing.paper_key).where(Listing.source.in_(sources), Listing.seen_at <= until)
            if since is not None:
                q = q.where(Listing.seen_at > since)
            keys = set(s.exec(q.distinct()))
        return list(self.papers_by_keys(keys).values())

    def recent_papers(self, limit: int) -> list[Paper]:
        """The newest listed papers, a background corpus for feature statistics and negatives.
        Papers known only from imports (never listed) have no first_seen_at and come last; PostgreSQL
        would otherwise put them first."""
        with self.session() as s:
            q = select(Paper).order_by(Paper.first_seen_at.desc().nulls_last(), Paper.key).limit(limit)
            return list(s.exec(q).all())

    def corpus_version(self) -> tuple[int, dt.datetime | None]:
        """Changes exactly when a new paper arrives: the cheap identity of ``recent_papers``."""
        with self.session() as s:
            return tuple(s.exec(select(sa.func.count(), sa.func.max(Paper.first_seen_at)).select_from(Paper)).one())

    def ensure_paper(self, fp: FetchedPaper, now: dt.datetime) -> None:
        """Keep a paper we learned of outside any list (imports, seeds), without listing it anywhere."""
        with self.session() as s:
            row = s.get(Paper, fp.key)
            if row is None:
                s.add(Paper(key=fp.key, title=fp.title or fp.key, abstract=fp.abstract or "", arxiv_id=fp.arxiv_id,
                            version=fp.version, authors_json=json.dumps(fp.authors, ensure_ascii=False),
                            url=fp.url, pdf_url=fp.pdf_url, first_seen_at=None, updated_at=now))
            else:
                # Fill in what a placeholder (an imported bare id) lacked; never overwrite real text.
                if fp.abstract and not row.abstract:
                    row.abstract = fp.abstract
                if fp.title and row.title in ("", row.key):
                    row.title = fp.title
                if fp.authors and row.authors_json in ("", "[]"):
                    row.authors_json = json.dumps(fp.authors, ensure_ascii=False)
            s.commit()

    # -- source state ----------------------------------------------------------------------------
    def source_state(self, name: str) -> SourceState:
        with self.session() as s:
            return s.get(SourceState, name) or SourceState(name=name)

    def all_source_states(self) -> dict[str, SourceState]:
        with self.session() as s:
            return {r.name: r for r in s.exec(select(SourceState))}

    def record_fetch_success(self, name: str, now: dt.datetime, count: int, etag: str | None = None,
                             last_modified: str | None = None) -> None:
        with self.session() as s:
            row = s.get(SourceState, name) or SourceState(name=name)
            row.last_attempt_at = row.last_success_at = now
            row.last_count = count
            if etag is not None:
                row.etag = etag
            if last_modified is not None:
                row.last_modified = last_modified
            row.error_count = 0
            row.next_retry_at = None
            s.add(row)
            s.commit()

    def record_fetch_error(self, name: str, now: dt.datetime, error: str, next_retry_at: dt.datetime | None) -> int:
        with self.session() as s:
            row = s.get(SourceState, name) or SourceState(name=name)
            row.last_attempt_at = row.last_error_at = now
            row.last_error = error
            row.error_count = (row.error_count or 0) + 1
            row.next_retry_at = next_retry_at
            s.add(row)
            s.commit()
            return row.error_count

    # -- users -----------------------------------------------------------------------------------
    def sync_users(self, users: list, now: dt.datetime) -> tuple[list[str], list[str], list[str]]:
        """Make the users table match the config. Removed users are deactivated, never deleted."""
        added, changed, removed = [], [], []
        wanted = {u.id: u for u in users}
        with self.session() as s:
            existing = {u.id: u for u in s.exec(select(User))}
            for uid, cfg in wanted.items():
                settings_json = cfg.model_dump_json()
                row = existing.get(uid)
                if row is None:
                    s.add(User(id=uid, email=cfg.email, timezone=cfg.timezone, active=True, subscribed=cfg.subscribed,
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

    def set_feed_token(self, user_id: str, nonce: str, token_hash: str) -> None:
        with self.session() as s:
            row = s.get(User, user_id)
            if row is None:
                raise UserError(f"unknown user {user_id!r}", user=user_id)
            row.feed_nonce, row.feed_token_hash = nonce, token_hash
            s.commit()

    def user_by_feed_token_hash(self, token_hash: str) -> User | None:
        with self.session() as s:
            return s.exec(select(User).where(User.feed_token_hash == token_hash, User.active == True)).first()  # noqa: E712

    # -- feedback --------------------------------------------------------------------------------
    def set_vote(self, user_id: str, paper_key: str, vote: str, via: str, now: dt.datetime) -> None:
        """Upsert the user's one current vote; every call is kept in the history."""
        with self.session() as s:
            current = s.get(Feedback, (user_id, paper_key))
            if vote == "clear":
                if current is not None:
                    s.delete(current)
            else:
                if current is None:
                    s.add(Feedback(user_id=user_id, paper_key=paper_key, vote=VOTE_VALUES[vote], via=via, at=now))
                else:
                    current.vote, current.via, current.at = VOTE_VALUES[vote], via, now
            s.add(FeedbackEvent(user_id=user_id, paper_key=paper_key, vote=vote, via=via, at=now))
            s.commit()

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

    # -- digests ---------------------------------------------------------------------------------
    def sent_keys(self, user_id: str, excluding_digest: int | None = None) -> set[str]:
        with self.session() as s:
            q = (select(DigestItem.paper_key).join(Digest, Digest.id == DigestItem.digest_id)
                 .where(DigestItem.user_id == user_id, Digest.status.in_(["sent", "claimed", "retry"])))
            if excluding_digest is not None:
                q = q.where(Digest.id != excluding_digest)
            return set(s.exec(q))

    def get_digest(self, user_id: str, day: dt.date) -> Digest | None:
        with self.session() as s:
            return s.exec(select(Digest).where(Digest.user_id == user_id, Digest.day == day)).first()

    def last_digest(self, user_id: str, before_day: dt.date | None = None) -> Digest | None:
        """The newest digest that covered papers (sent, empty or skipped), optionally before a day."""
        with self.session() as s:
            q = select(Digest).where(Digest.user_id == user_id, Digest.status.in_(["sent", "empty", "skipped"]))
            if before_day is not None:
                q = q.where(Digest.day < before_day)
            return s.exec(q.order_by(Digest.day.desc())).first()

    def claim_digest(self, user_id: str, day: dt.date, now: dt.datetime, worker: str,
                     stale_after: dt.timedelta = STALE_CLAIM, force: bool = False) -> Digest | None:
        """Claim (user, day) for sending. ``None``: someone already has it (sent, or in flight).

        The insert of the unique row is the claim; a retry or a stale claim is taken over with a
        conditional UPDATE, so two processes racing for one row cannot both win.
        """
        with self.session() as s:
            try:
                row = Digest(user_id=user_id, day=day, status="claimed", claimed_at=now, claimed_by=worker, attempts=0)
                s.add(row)
                s.commit()
                return row
            except IntegrityError:
                s.rollback()
            existing = s.exec(select(Digest).where(Digest.user_id == user_id, Digest.day == day)).one()
            cond = sa.and_(Digest.id == existing.id)
            if force:
                cond = sa.and_(cond, sa.or_(Digest.status != "claimed", Digest.claimed_at < now - stale_after))
            else:
                cond = sa.and_(cond, sa.or_(
                    sa.and_(Digest.status == "retry", sa.or_(Digest.next_attempt_at.is_(None), Digest.next_attempt_at <= now)),
                    sa.and_(Digest.status == "claimed", Digest.claimed_at < now - stale_after),
                ))
            res = s.execute(sa.update(Digest).where(cond).values(status="claimed", claimed_at=now, claimed_by=worker))
            s.commit()
            if res.rowcount != 1:
                return None
            return s.get(Digest, existing.id, populate_existing=True)

    def digest_items(self, digest_id: int) -> list[DigestItem]:
        with self.session() as s:
            return list(s.exec(select(DigestItem).where(DigestItem.digest_id == digest_id).order_by(DigestItem.position)))

    def save_digest_items(self, digest: Digest, items: list[DigestItem], covers_from, covers_until, note: str | None) -> None:
        with self.session() as s:
            s.execute(sa.delete(DigestItem).where(DigestItem.digest_id == digest.id))
            for it in items:
                it.digest_id = digest.id
                it.user_id = digest.user_id
                s.add(it)
            row = s.get(Digest, digest.id)
            row.covers_from, row.covers_until, row.note = covers_from, covers_until, note
            s.commit()

    def finish_digest(self, digest_id: int, status: str, now: dt.datetime, *, message_id: str | None = None,
                      error: str | None = None, next_attempt_at: dt.datetime | None = None) -> Digest:
        with self.session() as s:
            row = s.get(Digest, digest_id)
            row.status = status
            row.attempts = (row.attempts or 0) + (1 if status in ("sent", "retry", "failed") else 0)
            if status == "sent":
                row.sent_at = now
                row.message_id = message_id or row.message_id
                row.error = None
                row.next_attempt_at = None
            else:
                row.error = error
                row.next_attempt_at = next_attempt_at
            s.commit()
            return row

    # (issue 3, daemon) digests whose delivery failed temporarily and whose next attempt is due.
    def digests_to_retry(self, user_id: str, now: dt.datetime) -> list[Digest]:
        with self.session() as s:
            q = select(Digest).where(Digest.user_id == user_id, Digest.status == "retry",
                                     sa.or_(Digest.next_attempt_at.is_(None), Digest.next_attempt_at <= now))
            return list(s.exec(q.order_by(Digest.day)))

    def release_digest(self, digest_id: int) -> None:
        """Give a claim back (shutdown mid-run): the next pass may take it at once."""
        with self.session() as s:
            s.execute(sa.update(Digest).where(Digest.id == digest_id, Digest.status == "claimed")
                      .values(status="retry", next_attempt_at=None))
            s.commit()

    def digests(self, user_id: str) -> list[tuple[Digest, list[str]]]:
        with self.session() as s:
            ds = list(s.exec(select(Digest).where(Digest.user_id == user_id).order_by(Digest.day)))
            out = []
            for d in ds:
                keys = list(s.exec(select(DigestItem.paper_key).where(DigestItem.digest_id == d.id).order_by(DigestItem.position)))
                out.append((d, keys))
        return out

    def feed_items(self, user_id: str, limit: int = 200) -> list[tuple[DigestItem, Paper, Digest]]:
        """Papers delivered to the user (mailed, or feed-only), newest digest first."""
        with self.session() as s:
            rows = s.exec(select(DigestItem, Paper, Digest)
                          .join(Paper, Paper.key == DigestItem.paper_key)
                          .join(Digest, Digest.id == DigestItem.digest_id)
                          .where(DigestItem.user_id == user_id, Digest.status == "sent")
                          .order_by(Digest.day.desc(), DigestItem.position).limit(limit)).all()
        return list(rows)

    # -- profiles --------------------------------------------------------------------------------
    def get_profile(self, user_id: str) -> Profile | None:
        """The user's stored model with its fingerprint and training time, or None."""
        with self.session() as s:
            return s.get(Profile, user_id)

    def save_profile(self, user_id: str, fingerprint: str, model: bytes, now: dt.datetime) -> None:
        """Keep (or replace) the user's trained model. Two processes training the same user at once
        both succeed; the last write wins, and either model is valid for its fingerprint."""
        values = {"fingerprint": fingerprint, "model": model, "trained_at": now}
        try:
            with self.session() as s:
                res = s.execute(sa.update(Profile).where(Profile.user_id == user_id).values(**values))
                if res.rowcount == 0:
                    try:
                        s.add(Profile(user_id=user_id, **values))
                        s.commit()
                        return
                    except IntegrityError:       # inserted meanwhile by another process: update it
                        s.rollback()
                        s.execute(sa.update(Profile).where(Profile.user_id == user_id).values(**values))
                s.commit()
        except SQLAlchemyError as e:
            raise StoreError(f"cannot save the trained profile: {e.__class__.__name__}", user=user_id) from e

    def profile_trained_at(self) -> dict[str, dt.datetime | None]:
        """When each user's stored model was trained (without reading the models)."""
        with self.session() as s:
            return dict(s.exec(select(Profile.user_id, Profile.trained_at)).all())

    # -- paper embeddings --------------------------------------------------------------------------
    def paper_embeddings(self, model: str, keys: Iterable[str]) -> dict[str, tuple[str, np.ndarray]]:
        """paper key -> (text_hash, float32 vector) of the papers that have one for ``model``."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, tuple[str, np.ndarray]] = {}
        with self.session() as s:
            for i in range(0, len(keys), 500):
                q = select(PaperEmbedding.paper_key, PaperEmbedding.text_hash, PaperEmbedding.dim, PaperEmbedding.vector) \
                    .where(PaperEmbedding.model == model, PaperEmbedding.paper_key.in_(keys[i:i + 500]))
                for key, h, dim, blob in s.exec(q):
                    v = np.frombuffer(blob, dtype="<f4")
                    if len(v) == dim:
                        out[key] = (h, v)
        return out

    def save_paper_embeddings(self, model: str, vectors: dict[str, tuple[str, np.ndarray]]) -> None:
        """Insert or replace (paper key -> (text_hash, vector)); two processes may race to store the
        same paper, so this is an upsert, not an insert."""
        rows = [{"paper_key": k, "model": model, "text_hash": h, "dim": int(len(v)),
                 "vector": np.asarray(v, dtype="<f4").tobytes()} for k, (h, v) in vectors.items()]
        if not rows:
            return
        table = PaperEmbedding.__table__
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        with self.engine.begin() as c:
            for i in range(0, len(rows), 150):          # 5 parameters a row: under SQLite's old 999 limit
                stmt = insert(table).values(rows[i:i + 150])
                stmt = stmt.on_conflict_do_update(
                    index_elements=["paper_key", "model"],
                    set_={"text_hash": stmt.excluded.text_hash, "dim": stmt.excluded.dim, "vector": stmt.excluded.vector})
                c.execute(stmt)

    def embedding_cache(self, model: str) -> "EmbeddingCache":
        return EmbeddingCache(self, model)

    # -- status ----------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self.session() as s:
            def n(model):
                return s.exec(select(sa.func.count()).select_from(model)).one()
            return {"papers": n(Paper), "listings": n(Listing), "users": n(User), "votes": n(Feedback),
                    "digests": n(Digest), "digest_items": n(DigestItem), "paper_embeddings": n(PaperEmbedding)}

    def digest_status(self) -> dict[str, Digest]:
        """Each user's newest digest row."""
        with self.session() as s:
            out: dict[str, Digest] = {}
            for d in s.exec(select(Digest).order_by(Digest.day)):
                out[d.user_id] = d
            return out

    # -- feed stamp (web feed cache) -------------------------------------------------------------
    def feed_stamp(self, user_id: str) -> tuple | None:
        """A cheap value that changes whenever what the user's feed lists may have changed; None
        for an unknown user. The web cache compares it before trusting a cached ETag and body.

        Digest rows only, no items and no papers: a digest's items change only while it is not
        "sent" (they are saved after a claim), and every move to "sent" bumps ``attempts`` and
        stamps ``sent_at``. So count, ids, attempts and times of the sent digests, together with
        the user's token nonce, cover every input of the feed's ETag."""
        with self.engine.connect() as c:
            row = c.execute(_FEED_STAMP, {"user_id": user_id}).first()
        return None if row is None else tuple(row)


class EmbeddingCache:
    """The database as the ``VectorCache`` of rank.embeddings.PaperEncoder, for one model: a
    vector counts only while the paper's text still hashes the same."""

    def __init__(self, store: Store, model: str) -> None:
        self.store, self.model = store, model

    def load(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], np.ndarray]:
        have = self.store.paper_embeddings(self.model, (k for k, _ in keys))
        return {(k, h): have[k][1] for k, h in keys if k in have and have[k][0] == h}

    def save(self, vectors: dict[tuple[str, str], np.ndarray]) -> None:
        self.store.save_paper_embeddings(self.model, {k: (h, v) for (k, h), v in vectors.items()})


def open_store(url: str) -> Store:
    store = Store(url)
    try:
        store.init_schema()
    except OperationalError as e:
        raise StoreError(f"database unreachable at {store.safe_url}: {e.orig}") from e
    return store
