"""Many processes on one PostgreSQL: one scheduler fetches, every process delivers, a dead
process's work is taken over (issue 11). The end-to-end test runs real `digestd run` processes."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from digestd.app import build_app
from digestd.config import load_config
from digestd.daemon import Daemon
from test_daemon_support import REPO, RecordingMailer, config_text, real_papers, user_block, write_hf_list


def two_daemons(tmp_path: Path, url: str) -> tuple[Daemon, Daemon]:
    write_hf_list(tmp_path / "lists", "2025-05-19", real_papers("2025-05-19", 10))
    cfg = tmp_path / "digestd.toml"
    cfg.write_text(config_text(extra=f'database_url = "{url}"', users=user_block("alice")))
    daemons = []
    for _ in range(2):
        app = build_app(load_config(str(cfg)), mailer_factory=lambda: RecordingMailer([]))
        daemons.append(Daemon(app, cfg, own_mailer=False))
    daemons[1].app.worker_id += "-second"
    return daemons[0], daemons[1]


def fetched(d: Daemon) -> bool:
    return d.app.store.source_state("demo").last_success_at is not None


def test_only_the_scheduler_fetches_and_another_process_takes_over_when_its_session_dies(tmp_path, pg_schema):
    _base, _schema, url = pg_schema
    first, second = two_daemons(tmp_path, url)
    try:
        assert first.scheduler_lock.acquire() and first.is_scheduler
        assert not second.scheduler_lock.acquire() and not second.is_scheduler
        second.fetch("demo")
        assert not fetched(second)                     # a process that is not the scheduler never fetches
        # The scheduler's database session ends (its process was killed, its host lost): the lock is free.
        eng = sa.create_engine(_base, poolclass=sa.pool.NullPool)
        with eng.begin() as c:
            n = c.execute(sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE application_name = :a"), {"a": f"digestd scheduler {first.app.worker_id}"}).scalar()
        eng.dispose()
        assert n == 1
        first.hold_scheduler_lock()
        assert not first.is_scheduler                  # it notices on its next beat and stops fetching
        second.startup_done.set()
        second.hold_scheduler_lock()                   # the next beat of another process takes over ...
        assert second.is_scheduler
        assert fetched(second)                         # ... and fetches what the schedule says is owed
        first.hold_scheduler_lock()
        assert not first.is_scheduler                  # one scheduler at a time
    finally:
        for d in (first, second):
            d.scheduler_lock.release()
            d.app.close()


def test_a_scheduler_that_stops_hands_the_lock_over_at_the_next_beat(tmp_path, pg_schema):
    first, second = two_daemons(tmp_path, pg_schema[2])
    try:
        assert first.scheduler_lock.acquire() and not second.scheduler_lock.acquire()
        first.stop()
        second.hold_scheduler_lock()
        assert second.is_scheduler
    finally:
        for d in (first, second):
            d.scheduler_lock.release()
            d.app.close()


def test_on_sqlite_the_one_process_is_always_the_scheduler(tmp_path):
    first, _ = two_daemons(tmp_path, f"sqlite:///{tmp_path / 'var' / 'digestd.db'}")
    assert first.scheduler_lock.acquire() and first.is_scheduler
    first.fetch("demo")
    assert fetched(first)


# -- end to end: three `digestd run` processes ---------------------------------------------------------
class Sink:
    """aiosmtpd handler: every message accepted, with its recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


READERS = 500


@pytest.mark.slow
@pytest.mark.postgres
def test_three_processes_deliver_exactly_one_digest_to_each_of_500_readers_though_one_is_killed(tmp_path, pg_schema):
    from aiosmtpd.controller import Controller

    _base, _schema, url = pg_schema
    sink = Sink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    today = dt.datetime.now(dt.timezone.utc).date()
    write_hf_list(tmp_path / "lists", today.isoformat(), real_papers("2025-05-19", 30))
    smtp_table = ('\n[smtp]\nhost = "127.0.0.1"\nport = %d\nsecurity = "none"\n'
                  'from = "Paper digest <digest@example.org>"\ntimeout_seconds = 10\n' % smtp.port)
    # send_at 00:00 UTC: every reader is due now, whenever today the test runs.
    users = "".join(user_block(f"r{i:03d}", tz="UTC", send_at="00:00", size=3) for i in range(READERS))
    configs = []
    for n in range(3):
        cfg = tmp_path / f"digestd{n}.toml"
        cfg.write_text(config_text(listen=f"127.0.0.1:{free_port()}", smtp=smtp_table, users=users,
                                   extra=f'database_url = "{url}"\nsweep_seconds = 2'))
        configs.append(cfg)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.pop("DIGESTD_CONFIG", None)
    # The site has today's list already (and its secret key): what the processes do is deliver.
    subprocess.run([sys.executable, "-m", "digestd", "--config", str(configs[0]), "fetch"], cwd=REPO, env=env,
                   check=True, capture_output=True, timeout=60)
    procs: list[subprocess.Popen] = []
    logs = [tmp_path / f"run{n}.log" for n in range(3)]
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    started = time.monotonic()
    try:
        for cfg, log in zip(configs, logs):
            with open(log, "wb") as fh:
                procs.append(subprocess.Popen([sys.executable, "-m", "digestd", "--config", str(cfg), "run"],
                                              cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT))

        def claimers() -> Counter:
            with engine.connect() as c:
                rows = c.execute(sa.text("SELECT claimed_by FROM digests WHERE status = 'claimed'")).scalars()
                return Counter(int(re.search(r":(\d+)#", r).group(1)) for r in rows)

        # Mid-delivery: some mail is out and some readers are still claimed by the process sending it.
        victim = None
        deadline = time.monotonic() + 60
        while victim is None and time.monotonic() < deadline:
            if len(sink.messages) >= 20:
                busy = claimers()
                if busy:
                    victim = busy.most_common(1)[0][0]
            for p, log in zip(procs, logs):
                assert p.poll() is None, log.read_text()[-3000:]
            time.sleep(0.02)
        assert victim is not None, "no process was caught mid-delivery"
        killed = next(p for p in procs if p.pid == victim)
        os.kill(victim, signal.SIGKILL)
        killed.wait(10)
        sent_at_kill = len(sink.messages)
        assert sent_at_kill < READERS

        def delivered() -> set[str]:
            return {r for rcpts, _ in sink.messages for r in rcpts}

        deadline = time.monotonic() + 75
        while len(delivered()) < READERS and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(5)                                   # two more sweeps: nothing more may come
        per_reader: dict[str, set[str]] = defaultdict(set)
        for rcpts, raw in sink.messages:
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            for r in rcpts:
                per_reader[r].add(msg["Message-ID"])
        assert len(per_reader) == READERS, f"{READERS - len(per_reader)} readers got no digest"
        assert all(len(ids) == 1 for ids in per_reader.values()), \
            {r: ids for r, ids in per_reader.items() if len(ids) != 1}
        # The one message that was being handed over at the kill may go twice (same Message-ID):
        # the mail server's "250" and the database's commit cannot be one atomic step.
        assert len(sink.messages) <= READERS + 1
        with engine.connect() as c:
            assert c.execute(sa.text("SELECT count(*) FROM digests WHERE status = 'sent'")).scalar() == READERS
        alive = [p for p in procs if p is not killed]
        assert all(p.poll() is None for p in alive)
        schedulers = sum("this process is the scheduler" in log.read_text() for log in logs)
        assert schedulers >= 1
        print(f"\n{READERS} readers, 3 processes, pid {victim} killed after {sent_at_kill} messages: "
              f"{time.monotonic() - started:.1f} s, {len(sink.messages)} messages")
        for p in alive:
            p.send_signal(signal.SIGTERM)
        for p, log in zip(procs, logs):
            if p is not killed:
                assert p.wait(30) == 0, log.read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        engine.dispose()
        smtp.stop()
