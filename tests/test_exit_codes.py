"""Exit codes tell the truth: `run --once`, `send` and `status` say when a source failed or a digest
was not delivered, and `send` never calls a digest that never went out "already sent"."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from digestd import pipeline
from digestd.app import build_app
from digestd.config import parse_config
from digestd.errors import ConfigError
from digestd.mail import Mailer

REPO = Path(__file__).resolve().parent.parent


def digestd(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digestd", "--config", str(cfg), *args], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)


@pytest.mark.slow
def test_run_once_exits_1_when_sources_fail_and_digests_are_not_delivered(tmp_path, smtp):
    rec, port = smtp
    rec.refuse["ann@example.org"] = "451 4.3.0 try again later"
    rec.refuse["ben@example.org"] = "550 5.1.1 no such user"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "2025-05-20.json").write_text("{not json")
    users = "".join(f"""
[[users]]
id = "{u}"
email = "{u}@example.org"
send_at = "00:00"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
""" for u in ("ann", "ben"))
    cfg = tmp_path / "digestd.toml"
    cfg.write_text(f"""
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
from = "digest@example.org"

[[sources]]
name = "broken"
type = "replay"
path = "{broken}"
{users}""")
    r = digestd(cfg, "run", "--once")
    assert r.returncode == 1, r.stderr
    assert "summary: sources 0 ok, 1 failed (broken); digests 0 sent, 1 pending, 1 failed" in r.stderr
    assert "Traceback" not in r.stderr

    # `send` tells a pending retry and a failure apart from a digest that went out, and exits 1.
    r = digestd(cfg, "send")
    assert r.returncode == 1
    out = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert out["ann"].split(": ", 1)[1].startswith("pending retry (") and "next attempt at" in out["ann"]
    assert out["ben"].split(": ", 1)[1].startswith("FAILED (") and "550" in out["ben"]
    assert "already" not in r.stdout

    r = digestd(cfg, "status", "--json")
    st = json.loads(r.stdout)
    assert r.returncode == 1 and st["ok"] is False
    assert "source broken failing" in st["problems"] and any("ben" in p and "failed" in p for p in st["problems"])
    r = digestd(cfg, "status")
    assert r.returncode == 1 and r.stdout.startswith("digestd: NOT OK: source broken failing")

    # Once the server takes ann's digest, `send` says so; a later `send` says "already sent" with its Message-ID.
    del rec.refuse["ann@example.org"]
    r = digestd(cfg, "send", "--user", "ann", "--force")
    assert r.returncode == 0 and ": sent" in r.stdout
    r = digestd(cfg, "send", "--user", "ann")
    assert r.returncode == 0 and "already sent as <digest." in r.stdout
    assert rec.recipients() == ["ann@example.org"]


class RefusingConfig(Mailer):
    """A mailer that finds the configuration wanting in the middle of a batch (a key file gone)."""

    def send_raw(self, raw: bytes, to: str, sender: str | None = None) -> None:
        raise ConfigError("smtp.dkim_key_file: cannot read /gone.pem", [("smtp.dkim_key_file", "cannot read /gone.pem")])


class Recording(Mailer):
    def __init__(self, sent: list) -> None:
        self.sent = sent

    def send_raw(self, raw: bytes, to: str, sender: str | None = None) -> None:
        self.sent.append(to)


def test_a_config_error_while_sending_stops_the_pass_and_leaves_the_digest_pending(tmp_path, clock):
    lists = tmp_path / "lists"
    lists.mkdir()
    shutil.copy(REPO / "examples" / "lists" / "arxiv" / "2025-05-20.atom", lists)
    settings = parse_config(f"""
[[sources]]
name = "arxiv"
type = "replay"
path = "{lists}"

[[users]]
id = "alice"
email = "alice@example.org"
send_at = "07:00"
days = ["tue"]
""", config_dir=tmp_path)
    sent: list[str] = []
    mailer = {"now": RefusingConfig}
    app = build_app(settings, clock=clock, mailer_factory=lambda: mailer["now"]())
    try:
        pipeline.fetch_all(app)
        with pytest.raises(ConfigError):
            pipeline.deliver_due(app)
        row = app.store.digest_rows([("alice", clock.now().date())])[("alice", clock.now().date())]
        assert row.status == "retry" and row.sent_at is None      # pending, never "refused" nor "failed"
        mailer["now"] = lambda: Recording(sent)
        assert [o.status for o in pipeline.deliver_due(app)] == ["sent"] and sent == ["alice@example.org"]
    finally:
        app.close()


def test_under_the_daemon_a_config_error_while_sending_makes_healthz_not_ok_until_a_pass_succeeds(tmp_path, clock):
    from digestd.config import load_config
    from digestd.daemon import Daemon
    from digestd.web import health
    from test_daemon_support import config_text, real_papers, user_block, write_hf_list

    write_hf_list(tmp_path / "lists", "2025-05-19", real_papers("2025-05-19", 10))
    cfg = tmp_path / "digestd.toml"
    cfg.write_text(config_text(users=user_block("alice")))
    sent: list[str] = []
    mailer = {"now": RefusingConfig}
    app = build_app(load_config(str(cfg)), clock=clock, mailer_factory=lambda: mailer["now"]())
    d = Daemon(app, cfg, own_mailer=False)
    try:
        d.start()
        assert d.startup_done.wait(60)
        live, body = health(app, d.scheduler)
        assert live and body["ok"] is False and body["status"] == "degraded" and "dkim_key_file" in body["config"]
        assert sent == []
        mailer["now"] = lambda: Recording(sent)
        d.deliver()
        live, body = health(app, d.scheduler)
        assert live and body["ok"] is True and body["config"] is None and sent == ["alice@example.org"]
    finally:
        d.stop()
        app.close()
