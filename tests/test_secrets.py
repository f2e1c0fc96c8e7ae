"""Secrets stay secret: private files, a signing key that is never silently replaced, feed URLs
printed only when asked, and no token in any log line, also when the store fails."""
from __future__ import annotations

import re
import stat
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from digestd import accounts, cli, links, pipeline
from digestd.app import build_app
from digestd.config import parse_config
from digestd.errors import ConfigError
from digestd.tokens import load_or_create_secret
from digestd.web import create_app, redact
from test_daemon_support import RecordingMailer, config_text, real_papers, user_block, write_hf_list

PAPER = real_papers("2025-05-20", 1)[0]["id"]


@pytest.fixture(autouse=True)
def _logging_restored():
    # cli.main points the digestd logger at the stderr capsys lends it; later tests must not log there.
    import logging

    root = logging.getLogger("digestd")
    saved = (list(root.handlers), root.propagate, root.level)
    yield
    root.handlers[:], root.propagate, root.level = saved[0], saved[1], saved[2]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def world(tmp_path, clock):
    write_hf_list(tmp_path / "lists", "2025-05-20", real_papers("2025-05-20", 10))
    cfg = tmp_path / "digestd.toml"
    cfg.write_text(config_text(users=user_block("alice", tz="UTC", send_at="08:00") + user_block("bob", tz="UTC")))
    return tmp_path, cfg


def _app(tmp_path, clock, sent=None):
    settings = parse_config((tmp_path / "digestd.toml").read_text(), config_dir=tmp_path)
    return build_app(settings, clock=clock, mailer_factory=lambda: RecordingMailer(sent if sent is not None else []))


def test_the_database_its_wal_files_and_the_key_are_created_readable_by_the_owner_only(world, clock):
    """The landed code created the database 0644: every local user could read every address and vote."""
    tmp_path, _ = world
    app = _app(tmp_path, clock)
    pipeline.fetch_all(app)
    with app.store.engine.connect() as c:       # a reader keeps the WAL and its index open
        c.execute(sa.text("SELECT count(*) FROM papers"))
        var = tmp_path / "var"
        files = [var / "digestd.db", var / "digestd.db-wal", var / "digestd.db-shm", var / "secret.key"]
        assert all(f.exists() for f in files), [f for f in files if not f.exists()]
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    assert _mode(var) & 0o077 == 0
    app.close()


def test_a_short_secret_key_file_is_an_error_naming_it_and_is_left_as_it_was(tmp_path, capsys):
    """The landed code silently wrote a new key over a short one, breaking every link in every mail."""
    key = tmp_path / "my.key"
    key.write_bytes(b"too-short\n")
    with pytest.raises(ConfigError, match=re.escape(str(key)) + ".*9 bytes, fewer than 32"):
        load_or_create_secret(key)
    assert key.read_bytes() == b"too-short\n"

    (tmp_path / "lists").mkdir()
    cfg = tmp_path / "digestd.toml"
    cfg.write_text(config_text(extra='secret_key_file = "my.key"', users=user_block("alice")))
    for command in ("status", "check-config"):
        assert cli.main(["--config", str(cfg), command]) == 2
        err = capsys.readouterr().err
        assert re.search(r"digestd\.secret_key_file: the secret key file " + re.escape(str(key)) + " holds 9 bytes", err), err
    assert key.read_bytes() == b"too-short\n"


def test_check_config_lists_a_bad_key_file_beside_the_other_problems(tmp_path, capsys):
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "secret.key").mkdir()     # unreadable as a file
    cfg = tmp_path / "digestd.toml"
    cfg.write_text(config_text(users=user_block("alice")))   # and its replay directory "lists" is missing
    assert cli.main(["--config", str(cfg), "check-config"]) == 2
    err = capsys.readouterr().err
    assert "digestd.secret_key_file: cannot read the secret key file" in err and "sources[0].path" in err


def test_an_unreadable_secret_key_file_is_an_error_naming_it(tmp_path):
    key = tmp_path / "secret.key"
    key.mkdir()                                   # unreadable as a file, even for root
    with pytest.raises(ConfigError, match="cannot read the secret key file " + re.escape(str(key))):
        load_or_create_secret(key)
    assert key.is_dir()


def test_rotating_the_secret_key_is_a_command_that_says_what_it_invalidates(world, clock, capsys):
    tmp_path, cfg = world
    app = _app(tmp_path, clock)
    pipeline.fetch_all(app)
    old_link = links.feedback_url(app, "alice", PAPER, "up").split("/f/")[1]
    old_feed = links.feed_url(app, links.feed_token(app, "alice"))
    app.close()
    key = tmp_path / "var" / "secret.key"
    before = key.read_bytes()

    assert cli.main(["--config", str(cfg), "rotate-secret-key"]) == 0
    out = capsys.readouterr().out
    assert str(key) in out and "feedback link" in out and "unsubscribe link" in out and "feed URL" in out
    assert key.read_bytes() != before and len(key.read_bytes()) >= 32 and _mode(key) == 0o600

    assert cli.main(["--config", str(cfg), "feed-url", "alice"]) == 0
    new_feed = capsys.readouterr().out.strip()
    assert new_feed != old_feed and new_feed.startswith("http://digest.test/feeds/")
    app = _app(tmp_path, clock)
    with TestClient(create_app(app)) as client:
        assert client.get(new_feed.removeprefix("http://digest.test")).status_code == 200
        assert client.get(old_feed.removeprefix("http://digest.test")).status_code == 404
        assert client.get(f"/f/{old_link}").status_code == 400
    app.close()


def test_a_short_key_can_be_replaced_by_the_rotate_command(world, capsys):
    tmp_path, cfg = world
    key = tmp_path / "var" / "secret.key"
    key.parent.mkdir()
    key.write_bytes(b"short")
    assert cli.main(["--config", str(cfg), "status"]) == 2
    assert cli.main(["--config", str(cfg), "rotate-secret-key"]) == 0
    assert len(key.read_bytes()) >= 32
    capsys.readouterr()
    assert cli.main(["--config", str(cfg), "status"]) == 0


def test_feed_url_prints_one_readers_url_and_run_once_prints_none(world, capsys):
    tmp_path, cfg = world
    assert cli.main(["--config", str(cfg), "run", "--once"]) == 0
    out = capsys.readouterr().out
    assert "fetch demo" in out and "/feeds/" not in out and "/f/" not in out
    assert cli.main(["--config", str(cfg), "feed-url", "bob"]) == 0
    [url] = capsys.readouterr().out.split()
    assert re.fullmatch(r"http://digest\.test/feeds/[\w-]{40,}\.atom", url)
    assert cli.main(["--config", str(cfg), "feed-url", "nobody"]) == 1
    assert "nobody" in capsys.readouterr().err


def test_redact_hides_the_token_of_every_private_path():
    for path in ("/feeds/SECRET.atom", "/f/SECRET", "/f/SECRET/done?vote=up&undo=clear", "/u/SECRET", "/profile/SECRET"):
        assert "SECRET" not in redact(path)
    assert redact("/f/SECRET/done?vote=up") == "/f/…/done?vote=up"


def test_when_the_store_fails_every_page_is_a_503_with_a_retry_and_no_token_is_logged(world, clock, caplog):
    tmp_path, _ = world
    app = _app(tmp_path, clock)
    pipeline.fetch_all(app)
    pipeline.deliver_due(app)
    feed = links.feed_url(app, links.feed_token(app, "alice")).removeprefix("http://digest.test")
    profile = accounts.export_user(app, "alice")["profile_url"].removeprefix("http://digest.test")
    vote = links.feedback_url(app, "alice", PAPER, "up").removeprefix("http://digest.test")
    unsub = links.unsubscribe_url(app, "alice").removeprefix("http://digest.test")
    tokens = [p.split("/")[2].removesuffix(".atom") for p in (feed, profile, vote, unsub)]
    # The database goes away under the running server (a disk unmounted, PostgreSQL stopped).
    app.store.engine.dispose()
    healthy, app.store.engine = app.store.engine, sa.create_engine(f"sqlite:///{tmp_path}/gone/nowhere/digestd.db")
    caplog.set_level("DEBUG")
    with TestClient(create_app(app), raise_server_exceptions=False) as client:
        pages = {"feed": client.get(feed), "profile": client.get(profile), "vote page": client.get(vote),
                 "done page": client.get(vote + "/done?vote=up"), "unsubscribe": client.get(unsub)}
        press = client.post(vote, data={"vote": "up", "press": app.signer.press_token(tokens[2])})
        posts = {profile: client.post(profile + "/vote", data={"paper": PAPER, "vote": "up"}),
                 unsub: client.post(unsub, data={"List-Unsubscribe": "One-Click"})}
    for page, r in posts.items():                 # the form is gone: the retry leads back to its page
        assert r.status_code == 503 and r.headers["retry-after"].isdigit(), (page, r.status_code)
        assert re.search(r'<form method="get" id="retry" action="' + re.escape(page) + '">', r.text), page
    for name, r in [*pages.items(), ("press", press)]:
        assert r.status_code == 503, (name, r.status_code, r.text[:300])
        assert r.headers["retry-after"].isdigit() and 'id="retry"' in r.text, name
    assert 'name="press"' in press.text and 'name="vote" value="up"' in press.text
    logged = "\n".join(r.getMessage() + " " + str(getattr(r, "exc_text", "") or "") for r in caplog.records
                       if r.name.startswith(("digestd", "uvicorn", "starlette")))
    assert "store unavailable" in logged
    assert not [t for t in tokens if t in logged]
    assert not any(t in r.text for t in tokens for r in pages.values() if r is not pages["vote page"])
    app.store.engine = healthy
    with TestClient(create_app(app)) as client:   # the database is back: the retries lead somewhere
        assert [client.get(page).status_code for page in posts] == [200, 200]
    app.close()
