"""PostgreSQL advisory locks: who migrates, and which process is the scheduler.

Every lock is the two-key form (purpose, hashtext(current_schema())): two digestd sites that share
one PostgreSQL database under different schemas never hold each other up. SQLite has no such locks;
one process per SQLite database is assumed, so there the scheduler lock is simply always held.
"""
from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from ..logs import get_logger

log = get_logger("digestd.store")

MIGRATION_LOCK = 0x64670001        # "dg" 1: schema upgrades, one process at a time
SCHEDULER_LOCK = 0x64670002        # "dg" 2: the one process that fetches
_KEYS = "(:purpose, hashtext(current_schema()))"


def lock(conn: sa.Connection, purpose: int) -> None:
    """Wait for the session lock ``purpose`` on ``conn`` (held until ``unlock`` or the session ends)."""
    conn.execute(sa.text(f"SELECT pg_advisory_lock{_KEYS}"), {"purpose": purpose})
    conn.commit()


def unlock(conn: sa.Connection, purpose: int) -> None:
    conn.execute(sa.text(f"SELECT pg_advisory_unlock{_KEYS}"), {"purpose": purpose})
    conn.commit()


class SchedulerLock:
    """The right to fetch, held as a session advisory lock on one connection of its own.

    The lock lives exactly as long as that database session: a process that exits, is killed or
    loses its connection gives it up at once, and the next process that asks takes it over.
    ``acquire`` never waits; a process that does not hold the lock asks again later."""

    def __init__(self, engine: sa.Engine, name: str) -> None:
        self.postgres = engine.dialect.name == "postgresql"
        self._name = name
        self._engine = (sa.create_engine(engine.url, poolclass=sa.pool.NullPool,
                                         connect_args={"application_name": f"digestd scheduler {name}"[:63]})
                        if self.postgres else None)
        self._conn: sa.Connection | None = None
        self._mutex = threading.Lock()
        self.held = not self.postgres

    def acquire(self) -> bool:
        """Take the lock if it is free, or check it is still ours; returns whether we hold it."""
        if not self.postgres:
            return True
        with self._mutex:
            try:
                if self._conn is None:
                    self._conn = self._engine.connect()
                    got = self._conn.execute(sa.text(f"SELECT pg_try_advisory_lock{_KEYS}"),
                                             {"purpose": SCHEDULER_LOCK}).scalar()
                    self._conn.commit()
                    if not got:
                        self._close()
                    self.held = bool(got)
                else:
                    # Our session is the lock: if it still answers, the lock is still ours.
                    self._conn.execute(sa.text("SELECT 1"))
                    self._conn.commit()
            except SQLAlchemyError as e:
                if self.held:
                    log.warning("lost the scheduler lock (the database session ended: %s)", e.__class__.__name__)
                self._close()
                self.held = False
            return self.held

    def release(self) -> None:
        if not self.postgres:
            return
        with self._mutex:
            if self._conn is not None and self.held:
                try:
                    unlock(self._conn, SCHEDULER_LOCK)
                except SQLAlchemyError:
                    pass                  # closing the session below frees it anyway
            self._close()
            self.held = False
            self._engine.dispose()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except SQLAlchemyError:
                pass
            self._conn = None
