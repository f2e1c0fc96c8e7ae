"""Shared fixtures: a config in a temp dir, an app on a temporary SQLite database, a fixed clock."""
from __future__ import annotations

import datetime as dt
import os
import textwrap
from pathlib import Path

import pytest

from smtp_recorder import Recorder, start

from digestd.clock import FixedClock
from digestd.config import parse_config

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def auto_backend_is_tfidf(request, monkeypatch):
    """``backend = "auto"`` (the default) ranks with tfidf in tests, unless a test is marked
    ``embeddings``: most tests are about the pass, not the encoder, and the real encoder would encode
    every test's papers again (minutes of CPU). The encoder's own tests choose it explicitly."""
    if request.node.get_closest_marker("embeddings") is None:
        from digestd.rank import embeddings

        monkeypatch.setattr(embeddings, "runnable", lambda: False)


@pytest.fixture
def clock():
    return FixedClock(dt.datetime(2025, 5, 20, 9, 0, tzinfo=dt.timezone.utc))


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on loopback that records what it accepts: (recorder, port)."""
    rec = Recorder()
    ctl = start(rec)
    yield rec, ctl.port
    ctl.stop()


@pytest.fixture
def make_settings(tmp_path):
    def make(text: str):
        (tmp_path / "digestd.toml").write_text(textwrap.dedent(text))
        return parse_config(textwrap.dedent(text), config_dir=tmp_path)
    return make


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'var' / 'digestd.db'}"


def postgres_url() -> str | None:
    return os.environ.get("DIGESTD_TEST_DATABASE_URL") or None


# Every schema this run creates, so the session's end can check that none was left behind.
_PG_SCHEMAS: set[str] = set()


def _admin(base: str, sql: str) -> None:
    import sqlalchemy as sa

    eng = sa.create_engine(base, poolclass=sa.pool.NullPool)
    try:
        with eng.begin() as c:
            c.execute(sa.text(sql))
    finally:
        eng.dispose()


def fresh_pg_schema(base: str) -> tuple[str, str]:
    """A new, empty schema and a URL whose search_path is it: tests never see each other's rows.
    The caller drops it (``drop_pg_schema``); the ``pg_schema`` fixture does that itself."""
    import uuid

    schema = "t_" + uuid.uuid4().hex[:12]
    _admin(base, f'CREATE SCHEMA "{schema}"')
    _PG_SCHEMAS.add(schema)
    sep = "&" if "?" in base else "?"
    return schema, f"{base}{sep}options=-csearch_path%3D{schema}"


def drop_pg_schema(base: str, schema: str) -> None:
    import sqlalchemy as sa

    eng = sa.create_engine(base, poolclass=sa.pool.NullPool)
    try:
        with eng.begin() as c:
            c.execute(sa.text("SET lock_timeout = '20s'"))
            c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        eng.dispose()
    _PG_SCHEMAS.discard(schema)


@pytest.fixture
def pg_schema():
    """(base URL, schema, URL into the schema) on the test PostgreSQL; skipped without one."""
    base = postgres_url()
    if not base:
        pytest.skip("DIGESTD_TEST_DATABASE_URL is not set")
    schema, url = fresh_pg_schema(base)
    yield base, schema, url
    drop_pg_schema(base, schema)


def _dispose_engines() -> None:
    # Engines the test left open hold connections into its schema; DROP SCHEMA would wait on them.
    import gc

    import sqlalchemy as sa

    for obj in gc.get_objects():
        if isinstance(obj, sa.Engine) and obj.dialect.name == "postgresql":
            obj.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'var' / 'digestd.db'}"
        return
    base = postgres_url()
    if not base:
        pytest.skip("DIGESTD_TEST_DATABASE_URL is not set")
    schema, url = fresh_pg_schema(base)
    yield url
    _dispose_engines()
    drop_pg_schema(base, schema)


def pytest_sessionfinish(session, exitstatus):
    """No t_* schema of this run may outlive it: a fixture that forgot to drop one fails the run."""
    base = postgres_url()
    if not base or not _PG_SCHEMAS:
        return
    import sqlalchemy as sa

    eng = sa.create_engine(base, poolclass=sa.pool.NullPool)
    try:
        with eng.connect() as c:
            left = set(c.execute(sa.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%'")).scalars())
    finally:
        eng.dispose()
    left &= _PG_SCHEMAS
    if left:
        print(f"\nerror: this run left {len(left)} test schemas in {base}: {sorted(left)}")
        session.exitstatus = 1
