"""The schema is alembic migrations: a fresh database, one made by the landed code (create_all,
before migrations), concurrent starts on PostgreSQL, and what every command says when it is behind."""
from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from digestd import cli
from digestd.config import UserSettings
from digestd.errors import StoreError
from digestd.store import migrate_store, open_store
from digestd.store.schema import head_revision, schema_state

DATA = Path(__file__).parent / "data" / "schema"
T0 = dt.datetime(2025, 5, 20, 9, 0, tzinfo=dt.timezone.utc)


def landed_database(path: Path, *, without_leases: bool = False) -> str:
    """A SQLite file with the DDL the landed 0.1.0 code made, and a reader with a sent digest in it."""
    con = sqlite3.connect(path)
    con.executescript((DATA / "landed-0.1.0.sqlite.sql").read_text())
    if without_leases:      # the release before leases
        con.execute("ALTER TABLE digests DROP COLUMN lease_until")
    con.execute("INSERT INTO users (id, email, timezone, active, subscribed, unsubscribed_via_link, settings_json) "
                "VALUES ('alice', 'alice@example.org', 'UTC', 1, 1, 0, '{}')")
    con.execute("INSERT INTO papers (key, title) VALUES ('2505.10575', 'A paper')")
    con.execute("INSERT INTO digests (user_id, day, status, attempts, message_id) "
                "VALUES ('alice', '2025-05-19', 'sent', 1, '<digest.1.2025-05-19@x>')")
    con.commit()
    con.close()
    return f"sqlite:///{path}"


def schema_differences(url: str) -> list:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            return compare_metadata(MigrationContext.configure(c), SQLModel.metadata)
    finally:
        eng.dispose()


def test_a_fresh_database_gets_every_table_the_models_declare(any_database_url):
    open_store(any_database_url).dispose()
    # Catches a table or column added to tables.py without its migration.
    assert schema_differences(any_database_url) == []
    assert schema_state(sa.create_engine(any_database_url)).current == head_revision()


@pytest.mark.parametrize("without_leases", [False, True], ids=["0.1.0", "before-leases"])
def test_a_database_made_by_the_landed_code_upgrades_in_place_and_keeps_its_rows(tmp_path, without_leases):
    url = landed_database(tmp_path / "old.db", without_leases=without_leases)
    before, after = migrate_store(url)
    assert before.legacy and after.current == head_revision()
    assert schema_differences(url) == []
    s = open_store(url, migrate=False)
    assert s.get_user("alice").email == "alice@example.org"
    d = s.get_digest("alice", dt.date(2025, 5, 19))
    assert d.status == "sent" and d.message_id == "<digest.1.2025-05-19@x>" and d.lease_until is None
    s.sync_users([UserSettings(id="alice", email="alice@example.org")], T0)
    assert [u.id for u in s.users()] == ["alice"]


def test_a_postgresql_database_made_by_the_landed_code_upgrades_in_place(pg_schema):
    _base, _schema, url = pg_schema
    eng = sa.create_engine(url)
    SQLModel.metadata.create_all(eng)                      # what the landed code did at start
    with eng.begin() as c:
        c.execute(sa.text("ALTER TABLE digests DROP COLUMN lease_until"))
        c.execute(sa.text("INSERT INTO users (id, email, timezone, active, subscribed, unsubscribed_via_link, "
                          "settings_json) VALUES ('bob', 'bob@example.org', 'UTC', true, true, false, '{}')"))
    eng.dispose()
    with pytest.raises(StoreError, match=r"made before schema migrations .*run `digestd migrate`"):
        open_store(url, migrate=False)
    before, after = migrate_store(url)
    assert before.legacy and after.up_to_date
    assert schema_differences(url) == []
    s = open_store(url, migrate=False)
    assert s.get_user("bob").email == "bob@example.org"
    s.dispose()


def test_processes_starting_together_on_postgresql_migrate_once_and_none_fails(pg_schema):
    _base, _schema, url = pg_schema
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_one():
        try:
            start.wait()
            open_store(url).dispose()
        except BaseException as e:   # noqa: BLE001  (the test reports every one)
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert schema_differences(url) == []
    eng = sa.create_engine(url)
    with eng.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    eng.dispose()


def test_a_database_from_a_newer_digestd_is_refused_with_what_to_do(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    open_store(url).dispose()
    con = sqlite3.connect(tmp_path / "x.db")
    con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=r"revision 9999, newer than this digestd knows .*upgrade digestd"):
        open_store(url)


@pytest.fixture
def quiet_cli():
    """cli.main sets up digestd's logging for a command; put it back so later tests see their logs."""
    import logging

    loggers = [logging.getLogger(), logging.getLogger("digestd")]
    saved = [(lg.level, list(lg.handlers), lg.propagate) for lg in loggers]
    yield
    for lg, (level, handlers, propagate) in zip(loggers, saved):
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.propagate = propagate


def _config(tmp_path: Path, url: str) -> str:
    path = tmp_path / "digestd.toml"
    path.write_text(f'[digestd]\ndata_dir = "var"\ndatabase_url = "{url}"\n\n'
                    '[[users]]\nid = "alice"\nemail = "alice@example.org"\n')
    return str(path)


def test_a_command_on_an_old_database_says_in_one_line_to_run_migrate_and_migrate_fixes_it(tmp_path, capsys, quiet_cli):
    cfg = _config(tmp_path, landed_database(tmp_path / "old.db"))
    assert cli.main(["--config", cfg, "status"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith("run `digestd migrate`"), err
    assert cli.main(["--config", cfg, "migrate"]) == cli.EXIT_OK
    assert f"migrated to revision {head_revision()}" in capsys.readouterr().out
    assert cli.main(["--config", cfg, "migrate"]) == cli.EXIT_OK
    assert "nothing to do" in capsys.readouterr().out
    assert cli.main(["--config", cfg, "status"]) == cli.EXIT_OK


def test_a_command_on_a_fresh_database_sets_it_up_without_an_extra_step(tmp_path, capsys, quiet_cli):
    cfg = _config(tmp_path, f"sqlite:///{tmp_path / 'new.db'}")
    assert cli.main(["--config", cfg, "status"]) == cli.EXIT_OK
    assert "alice" in capsys.readouterr().out


def test_the_head_read_from_the_migration_files_is_alembics_head():
    from digestd.store import schema

    assert schema._plain_head() == head_revision()


def test_a_current_database_is_known_current_without_importing_alembic(tmp_path):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'x.db'}"
    open_store(url).dispose()
    code = ("import sys; from digestd.store import open_store; open_store(sys.argv[1]).dispose(); "
            "print('alembic' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"
    assert schema_state(sa.create_engine(url)).up_to_date
