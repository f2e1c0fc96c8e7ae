"""The schema's version: alembic migrations (``store/migrations``), applied under a lock.

A database is *fresh* (no digestd tables), *legacy* (tables made by ``create_all`` before
migrations existed, no version), *behind* (an older revision), *current*, or *ahead* (a revision this
code does not know: a newer digestd migrated it). On PostgreSQL every upgrade holds a session
advisory lock, so processes that start together migrate one after the other, and the later ones
find nothing left to do.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa

from . import locks

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Tables every digestd database has had since the first release: one of them means "not fresh".
_KNOWN_TABLES = {"papers", "users", "digests"}


@dataclass(frozen=True)
class SchemaState:
    current: str | None          # the stored revision; None: fresh or legacy
    head: str                    # the revision this code needs
    legacy: bool = False         # tables without a version: made before migrations
    known: bool = True           # False: a revision from a newer digestd
    url: str = ""                # the database, password hidden (for messages)

    @property
    def fresh(self) -> bool:
        return self.current is None and not self.legacy

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        if self.legacy:
            return "was made before schema migrations (digestd 0.1.0)"
        return f"is at schema revision {self.current}" if self.current else "is empty"


def _config(connection: sa.Connection | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def _scripts():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    return _scripts().get_current_head()


def _state(conn: sa.Connection) -> SchemaState:
    from alembic.migration import MigrationContext

    current = MigrationContext.configure(conn).get_current_revision()
    head = head_revision()
    if current is None:
        legacy = bool(_KNOWN_TABLES & set(sa.inspect(conn).get_table_names()))
        return SchemaState(None, head, legacy=legacy)
    known = current in {s.revision for s in _scripts().walk_revisions()}
    return SchemaState(current, head, known=known)


_REVISION = re.compile(r"^revision\s*=\s*[\"']([^\"']+)[\"']\s*$", re.M)
_DOWN_REVISION = re.compile(r"^down_revision\s*=\s*(None|[\"']([^\"']+)[\"'])\s*$", re.M)


@lru_cache(maxsize=1)
def _plain_head() -> str | None:
    """The head revision read from the migration files as text, without alembic; None unless the
    history is one plain line (one ``revision`` and one string-or-None ``down_revision`` a file)."""
    revisions, downs = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        rev, down = _REVISION.findall(text), _DOWN_REVISION.findall(text)
        if not rev and not down:
            continue                          # __init__.py
        if len(rev) != 1 or len(down) != 1:
            return None
        revisions.add(rev[0])
        if down[0][1]:
            downs.add(down[0][1])
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def _stored_revision(conn: sa.Connection) -> str | None:
    try:
        rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except sa.exc.DBAPIError:             # no version table: fresh or legacy, alembic tells which
        conn.rollback()
        return None
    conn.rollback()
    return rows[0][0] if len(rows) == 1 else None


def schema_state(engine: sa.Engine) -> SchemaState:
    # Every command checks the schema at start; importing alembic and reading its scripts to learn
    # that a database is current cost a quarter of a second. That common answer comes from one
    # query and the migration files' text; anything else (fresh, legacy, behind, ahead) asks alembic.
    with engine.connect() as conn:
        head = _plain_head()
        if head is not None and _stored_revision(conn) == head:
            return SchemaState(head, head)
        return _state(conn)


def upgrade(engine: sa.Engine) -> tuple[SchemaState, SchemaState]:
    """Apply every pending migration; returns the state before and after. Safe to call from many
    processes at once: on PostgreSQL they take turns under an advisory lock."""
    from alembic import command

    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        if postgres:
            locks.lock(conn, locks.MIGRATION_LOCK)
        try:
            before = _state(conn)
            conn.rollback()
            if not before.known:
                return before, before
            if not before.up_to_date:
                with conn.begin():
                    command.upgrade(_config(conn), "head")
            after = _state(conn)
            conn.rollback()
            return before, after
        finally:
            if postgres:
                locks.unlock(conn, locks.MIGRATION_LOCK)
