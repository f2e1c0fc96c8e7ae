"""The database: the engine, the schema, and the ``Store`` that gathers every query.

The queries live beside it by subject (papers, readers, digests); nothing outside ``store/`` writes SQL.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlmodel import Session, create_engine, select

from ..errors import StoreError
from . import schema
from .digests import DigestQueries
from .locks import SchedulerLock
from .papers import PaperQueries
from .readers import ReaderQueries
from .schema import SchemaState
from .vectors import TextVectorQueries
from .tables import Digest, DigestItem, Feedback, Listing, Paper, PaperEmbedding, TextEmbedding, User

# One statement, built once: it runs on every feed poll. The outer join keeps a user without digests.
_FEED_STAMP = (
    sa.select(User.feed_nonce, User.created_at, sa.func.count(Digest.id), sa.func.sum(Digest.id), sa.func.max(Digest.id),
              sa.func.sum(Digest.attempts), sa.func.max(Digest.sent_at), sa.func.max(Digest.claimed_at))
    .select_from(User)
    .outerjoin(Digest, sa.and_(Digest.user_id == User.id, Digest.status == "sent"))
    .where(User.id == sa.bindparam("user_id"))
    .group_by(User.id, User.feed_nonce, User.created_at)
)


# How long a writer waits for SQLite's one write lock before "database is locked". The same value
# as the driver's own timeout (a PRAGMA set below it once cut that to 10 s): a vote posted while a
# delivery or a fetch batch writes waits its turn. Writers keep their transactions short, so the
# wait is short; a lock held longer than this is a stuck writer, and a vote then gets a 503 page
# with a retry button rather than waiting on.
SQLITE_BUSY_SECONDS = 30


def _enable_sqlite_wal(dbapi_conn, _record) -> None:
    # WAL lets the HTTP server read while a digest job writes; busy_timeout rides out short write locks.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _create_private(path: Path) -> None:
    """Create the SQLite file readable by its owner only, before SQLite opens it: the database holds
    every reader's address and votes, and SQLite gives its -wal and -shm files the mode of the
    database file. An existing file keeps the mode its owner chose."""
    if str(path) in ("", ":memory:"):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as e:
        raise StoreError(f"cannot create the database file {path}: {e.strerror}") from e


class Store(PaperQueries, TextVectorQueries, ReaderQueries, DigestQueries):
    def __init__(self, url: str) -> None:
        self.url = url
        try:
            if url.startswith("sqlite:///"):
                _create_private(Path(url.removeprefix("sqlite:///")))
                self.engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS,
                                                               "check_same_thread": False})
                sa.event.listen(self.engine, "connect", _enable_sqlite_wal)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError) as e:
            raise StoreError(f"cannot open database {self.safe_url}: {e}") from e

    @property
    def safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def init_schema(self, *, migrate: bool = True) -> tuple[SchemaState, SchemaState]:
        """Bring the schema to this code's revision (``store/migrations``); returns (before, after).

        ``migrate=False`` is for commands other than `run` and `migrate`: they set up a fresh
        database themselves, but one that holds data at an older revision is left alone with a
        one-line error that says what to run."""
        try:
            state = schema.schema_state(self.engine)
            if not state.known:
                raise StoreError(f"database {self.safe_url} is at schema revision {state.current}, newer than this "
                                 f"digestd knows (it needs {state.head}): upgrade digestd")
            if not state.up_to_date and not state.fresh and not migrate:
                raise StoreError(f"database {self.safe_url} {state.describe()}; this digestd needs revision "
                                 f"{state.head}: run `digestd migrate`")
            if state.up_to_date:
                return state, state
            return schema.upgrade(self.engine)
        except OperationalError:
            raise
        except SQLAlchemyError as e:
            raise StoreError(f"cannot migrate the schema of {self.safe_url}: {e.__class__.__name__}: {e.orig if hasattr(e, 'orig') else e}") from e

    def scheduler_lock(self, name: str) -> SchedulerLock:
        """The lock whose holder is the one process that fetches (see ``store.locks``)."""
        return SchedulerLock(self.engine, name)

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

    # -- status ----------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self.session() as s:
            def n(model):
                return s.exec(select(sa.func.count()).select_from(model)).one()
            return {"papers": n(Paper), "listings": n(Listing), "users": n(User), "votes": n(Feedback),
                    "digests": n(Digest), "digest_items": n(DigestItem), "paper_embeddings": n(PaperEmbedding),
                    "text_embeddings": n(TextEmbedding)}

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



def open_store(url: str, *, migrate: bool = True) -> Store:
    """The store at ``url`` with its schema current (see ``Store.init_schema`` for ``migrate``)."""
    store = Store(url)
    try:
        store.init_schema(migrate=migrate)
    except OperationalError as e:
        store.dispose()
        raise StoreError(f"database unreachable at {store.safe_url}: {e.orig}") from e
    except BaseException:
        store.dispose()
        raise
    return store


def migrate_store(url: str) -> tuple[SchemaState, SchemaState]:
    """`digestd migrate`: apply every pending migration; the states before and after."""
    store = Store(url)
    try:
        before, after = store.init_schema(migrate=True)
    except OperationalError as e:
        raise StoreError(f"database unreachable at {store.safe_url}: {e.orig}") from e
    finally:
        store.dispose()
    return replace(before, url=store.safe_url), replace(after, url=store.safe_url)
