"""A killed process loses nothing: real `digestd fetch` and `digestd run --once` processes on SQLite,
SIGKILLed at random points of fetching and of delivery (to a Maildir, and to a real SMTP server on
loopback), then started again. The database stays intact, every reader ends with one digest for the
day, and a digest sent again after a kill keeps its Message-ID.

The kill points are drawn from a seed printed on failure; DIGESTD_KILL_SEED=N replays one.
"""
from __future__ import annotations

import email
import email.policy
import mailbox
import os
import queue
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from digestd import accounts
from digestd.app import build_app
from digestd.config import load_config
from digestd.sources import parse_any

REPO = Path(__file__).resolve().parent.parent
LISTS = REPO / "examples" / "lists"
DAYS = ("2025-05-28", "2025-05-29")
READERS = {"alice": ["retrieval", "embedding models"], "bob": ["diffusion models", "image generation"],
           "carol": ["reinforcement learning", "robot manipulation"]}


class Proc:
    """A digestd subprocess whose log lines the test can wait for."""

    def __init__(self, cfg: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        self.p = subprocess.Popen([sys.executable, "-m", "digestd", "--config", str(cfg), *args], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.p.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 300) -> bool:
        """Block until a log line contains ``text``; False if the process ended first. The first
        fetch encodes the demo's papers before it reports (about 35 s on a quiet 2-core machine,
        over 60 s on a busy one), so the wait is generous: it bounds a hang, not the speed."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=end - time.monotonic())
            except queue.Empty:
                break
            if line is None:
                return False
            self.seen.append(line)
            if text in line:
                return True
        raise AssertionError(f"no log line with {text!r} within {timeout}s:\n{''.join(self.seen)}")

    def kill(self) -> None:
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()     # reaped: its claims belong to a process that is gone

    def finish(self) -> int:
        self.p.wait(timeout=120)
        while (line := self.lines.get()) is not None:
            self.seen.append(line)
        return self.p.returncode


def make_config(tmp_path: Path, smtp_port: int | None) -> Path:
    for kind, ext in (("arxiv", "atom"), ("hf", "json")):
        (tmp_path / "lists" / kind).mkdir(parents=True)
        for day in DAYS:
            shutil.copy(LISTS / kind / f"{day}.{ext}", tmp_path / "lists" / kind)
    smtp = (f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\nfrom = "digest@example.org"\n'
            if smtp_port else "")
    users = "".join(f'\n[[users]]\nid = "{u}"\nemail = "{u}@example.org"\nsend_at = "00:00"\n'
                    f'days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]\nkeywords = {kw!r}\n'.replace("'", '"')
                    for u, kw in READERS.items())
    cfg = tmp_path / "digestd.toml"
    cfg.write_text(f'[digestd]\ndata_dir = "var"\n{smtp}\n'
                   f'[[sources]]\nname = "arxiv"\ntype = "replay"\npath = "lists/arxiv"\n\n'
                   f'[[sources]]\nname = "hf"\ntype = "replay"\npath = "lists/hf"\n{users}')
    return cfg


def kill_at(rng: random.Random, cfg: Path, args: tuple[str, ...], line: str, jitter: float) -> str:
    """Start digestd, SIGKILL it ``0..jitter`` seconds after it logs ``line``; says where it died."""
    proc = Proc(cfg, *args)
    if not proc.wait_for(line):
        return f"{' '.join(args)} ended before {line!r}"
    delay = rng.uniform(0, jitter)
    time.sleep(delay)
    proc.kill()
    return f"{' '.join(args)} killed {delay * 1000:.0f} ms after {line!r}"


def check_intact(cfg: Path, tmp_path: Path, delivered: dict[str, list[str]], where: str) -> None:
    with sqlite3.connect(tmp_path / "var" / "digestd.db") as db:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok", where
    app = build_app(load_config(str(cfg)))
    try:
        keys = {p.key for kind in ("arxiv", "hf") for f in sorted((tmp_path / "lists" / kind).iterdir())
                for p in parse_any(f.read_bytes(), source=kind)}
        assert len(app.store.papers_by_keys(sorted(keys))) == len(keys), where   # no paper lost by a killed fetch
        for user in READERS:
            digests = [d for d in accounts.export_user(app, user)["digests"] if d["status"] == "sent"]
            assert len(digests) == 1, (where, user, digests)
            (mid,) = {m for m in delivered[f"{user}@example.org"]}   # a copy sent again keeps its Message-ID
            assert digests[0]["message_id"] == mid, (where, user)
    finally:
        app.close()


def message_ids(raws: list[bytes]) -> list[str]:
    return [email.message_from_bytes(r, policy=email.policy.default)["Message-ID"] for r in raws]


@pytest.fixture
def rng():
    seed = int(os.environ.get("DIGESTD_KILL_SEED") or time.time_ns() % 100_000)
    r = random.Random(seed)
    r.seed_value = seed
    return r


@pytest.mark.slow
def test_a_killed_fetch_and_a_killed_delivery_to_a_maildir_lose_nothing_and_send_once(tmp_path, rng):
    cfg = make_config(tmp_path, None)
    where = [f"seed {rng.seed_value}",
             kill_at(rng, cfg, ("fetch",), "fetched", 0.3),
             kill_at(rng, cfg, ("run", "--once"), rng.choice(["profiles trained", "digest sent"]), 0.05)]
    restart = Proc(cfg, "run", "--once")
    assert restart.finish() == 0, (where, "".join(restart.seen))
    box = mailbox.Maildir(tmp_path / "var" / "outbox", create=False)
    by_reader: dict[str, list[bytes]] = {}
    for m in box:
        by_reader.setdefault(m["To"], []).append(m.as_bytes())
    assert Counter({to: len(raws) for to, raws in by_reader.items()}) == \
        {f"{u}@example.org": 1 for u in READERS}, where
    check_intact(cfg, tmp_path, {to: message_ids(raws) for to, raws in by_reader.items()}, " / ".join(where))


@pytest.mark.slow
def test_a_delivery_to_smtp_killed_at_random_goes_out_again_with_the_same_message_id(tmp_path, rng, smtp):
    rec, port = smtp
    cfg = make_config(tmp_path, port)
    assert Proc(cfg, "fetch").finish() == 0
    # "digest sent" is logged the moment the server took a message, before it is recorded: the
    # narrowest window, where a kill makes the restart send that message again.
    where = [f"seed {rng.seed_value}", kill_at(rng, cfg, ("run", "--once"), "digest sent", 0.02)]
    restart = Proc(cfg, "run", "--once")
    assert restart.finish() == 0, (where, "".join(restart.seen))
    by_reader: dict[str, list[bytes]] = {}
    for _session, rcpts, raw in rec.messages:
        by_reader.setdefault(rcpts[0], []).append(raw)
    assert sorted(by_reader) == [f"{u}@example.org" for u in READERS], where
    # SMTP cannot tell a kill after the server's "250" from one before it: such a message goes out
    # again, and only then, under the Message-ID it had, so a mail client shows it once.
    assert all(len(raws) <= 2 for raws in by_reader.values()), where
    check_intact(cfg, tmp_path, {to: message_ids(raws) for to, raws in by_reader.items()}, " / ".join(where))


class Killed(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs, not even a release."""


def test_a_digest_in_the_maildir_but_not_yet_recorded_is_not_written_twice_when_taken_over(tmp_path, clock, monkeypatch):
    from digestd import pipeline
    from digestd.mail import MaildirMailer
    from digestd.pipeline import handoff

    cfg = make_config(tmp_path, None)
    app = build_app(load_config(str(cfg)), clock=clock)
    outbox = tmp_path / "var" / "outbox"

    class DiesAfterHandingOver(MaildirMailer):
        def send_raw(self, raw, to, sender=None):
            super().send_raw(raw, to, sender)
            raise Killed()       # the message is in the Maildir; its digest is not marked sent

    try:
        pipeline.fetch_all(app)
        app.mailer_factory = lambda: DiesAfterHandingOver(outbox)
        monkeypatch.setattr(app.store, "release_digests", lambda ids: None)
        with pytest.raises(Killed):
            pipeline.deliver_due(app)
        monkeypatch.undo()
        app.mailer_factory = lambda: MaildirMailer(outbox)
        clock.advance(seconds=handoff.LEASE.total_seconds() + 1)
        assert Counter(o.status for o in pipeline.deliver_due(app)) == {"sent": len(READERS)}
        stored = [(m["To"], m["Message-ID"]) for m in mailbox.Maildir(outbox, create=False)]
        assert Counter(to for to, _ in stored) == {f"{u}@example.org": 1 for u in READERS}
        for user in READERS:
            [d] = accounts.export_user(app, user)["digests"]
            assert (f"{user}@example.org", d["message_id"]) in stored
    finally:
        app.close()


def test_claims_of_a_process_that_is_gone_are_taken_over_at_once_and_a_live_ones_are_not(any_database_url, clock):
    import datetime as dt
    import socket

    from digestd.pipeline import handoff
    from digestd.store import open_store

    gone = subprocess.Popen(["true"])
    gone.wait()
    from digestd.config import parse_config

    store = open_store(any_database_url)
    users = "".join(f'[[users]]\nid = "{u}"\nemail = "{u}@example.org"\n' for u in ("dead-reader", "live-reader", "far-reader"))
    store.sync_users(parse_config(users).users, clock.now())
    try:
        host = socket.gethostname()
        day = clock.now().date()
        store.claim_digests([("dead-reader", day)], clock.now(), f"{host}:{gone.pid}", handoff.LEASE)
        store.claim_digests([("live-reader", day)], clock.now(), f"{host}:{os.getppid()}", handoff.LEASE)
        store.claim_digests([("far-reader", day)], clock.now(), f"elsewhere:{gone.pid}", handoff.LEASE)
        owners = dict((i, by) for i, by in store.live_claims(clock.now()))
        assert sorted(handoff.owner_is_dead(by) for by in owners.values()) == [False, False, True]
        store.end_leases([i for i, by in owners.items() if handoff.owner_is_dead(by)])
        won = store.claim_digests([(u, day) for u in ("dead-reader", "live-reader", "far-reader")],
                                  clock.now() + dt.timedelta(seconds=1), "next", handoff.LEASE)
        assert [d.user_id for d in won] == ["dead-reader"]
    finally:
        store.dispose()
