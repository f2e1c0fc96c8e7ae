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


def _fresh_pg_url(base: str) -> str:
    """A PostgreSQL URL whose search_path is a new, empty schema: tests never see each other's rows."""
    import uuid

    import sqlalchemy as sa

    schema = "t_" + uuid.uuid4().hex[:12]
    eng = sa.create_engine(base)
    with eng.begin() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    eng.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'digestd.db'}"
    base = postgres_url()
    if not base:
        pytest.skip("DIGESTD_TEST_DATABASE_URL is not set")
    return _fresh_pg_url(base)
