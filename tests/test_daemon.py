"""The daemon: jobs follow the config, reload, catch-up, retries, orderly stop (in process), and
`digestd run` as a real process delivering through SMTP on loopback."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import httpx
import pytest

from digestd import accounts, links, pipeline
from digestd.app import build_app
from digestd.config import load_config
from digestd.daemon import Daemon
from digestd.errors import TemporaryDeliveryError
from test_daemon_support import REPO, RecordingMailer, config_text, real_papers, user_block, write_hf_list


def wait_for(predicate, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# -- in process --------------------------------------------------------------------------------------
@pytest.fixture
def setup(tmp_path, clock):
    write_hf_list(tmp_path / "lists", "2025-05-19", real_papers("2025-05-19", 10))
    cfg = tmp_path / "digestd.toml"

    def write(users: str, extra: str = "") -> None:
        cfg.write_text(config_text(users=users, extra=extra))

    write(user_block("alice"))
    sent: list = []
    app = build_app(load_config(str(cfg)), clock=clock, mailer_factory=lambda: RecordingMailer(sent))
    daemons: list[Daemon] = []

    def start() -> Daemon:
        d = Daemon(app, cfg, own_mailer=False)
        d.start()
        daemons.append(d)
        assert d.startup_done.wait(60), "the catch-up never finished"
        return d

    yield SimpleNamespace(app=app, cfg=cfg, write=write, sent=sent, start=start, clock=clock, tmp=tmp_path)
    for d in daemons:
        d.stop()
    app.close()


def job_ids(d: Daemon) -> set[str]:
    return {j.id for j in d.scheduler.get_jobs()}


def test_on_start_it_fetches_new_sources_and_sends_the_digest_due_earlier_today(setup):
    # The fixed clock says 11:00 in Berlin; alice's 07:30 digest was due while nothing ran.
    d = setup.start()
    assert [to for _m, to in setup.sent] == ["alice@example.org"]
    assert job_ids(d) == {"fetch:demo", "digest:alice", "sweep"}
    assert accounts.status(setup.app)["sources"][0]["last_success"] is not None


def test_a_restart_the_same_day_sends_nothing_more(setup):
    setup.start().stop()
    setup.start()
    assert len(setup.sent) == 1


def test_a_digest_not_yet_due_is_left_to_its_trigger(setup):
    setup.clock.at = dt.datetime(2025, 5, 20, 5, 0, tzinfo=dt.timezone.utc)   # 07:00 in Berlin
    d = setup.start()
    assert setup.sent == []
    nxt = d.next_digest("alice")
    assert nxt.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") == "07:30"


def test_reload_adds_changes_and_removes_users_without_a_restart(setup):
    d = setup.start()
    setup.write(user_block("bob", tz="Asia/Tokyo", send_at="06:00") + user_block("carol", days=[]))
    assert d.reload() is True
    assert job_ids(d) >= {"digest:bob", "fetch:demo", "sweep"}
    assert "digest:alice" not in job_ids(d) and "digest:carol" not in job_ids(d)
    assert d.next_digest("bob").astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M") == "06:00"
    users = {u["id"]: u["active"] for u in accounts.status(setup.app)["users"]}
    assert users == {"alice": False, "bob": True, "carol": True}
    # Bob's 06:00 Tokyo digest is already due: the sweep after the reload sends it.
    wait_for(lambda: "bob@example.org" in [to for _m, to in setup.sent], 30, "bob's digest")
    assert sorted(to for _m, to in setup.sent) == ["alice@example.org", "bob@example.org"]


def test_an_invalid_config_on_reload_is_logged_in_full_and_the_old_one_kept(setup, caplog):
    d = setup.start()
    before = job_ids(d)
    setup.cfg.write_text(setup.cfg.read_text().replace('timezone = "Europe/Berlin"', 'timezone = "Mars/Olympus"')
                         .replace('send_at = "07:30"', 'send_at = "25:00"'))
    assert d.reload() is False
    problems = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("users[0].timezone" in p for p in problems) and any("users[0].send_at" in p for p in problems)
    assert job_ids(d) == before and setup.app.settings.user("alice").timezone == "Europe/Berlin"


def test_a_temporary_mail_failure_is_retried_by_the_sweep(setup):
    calls = []

    class Flaky(RecordingMailer):
        def send(self, msg, to):
            calls.append(to)
            if len(calls) == 1:
                raise TemporaryDeliveryError("451 try again later", user="alice")
            super().send(msg, to)

    setup.app.mailer_factory = lambda: Flaky(setup.sent)
    d = setup.start()
    assert setup.sent == [] and accounts.status(setup.app)["users"][0]["last_status"] == "retry"
    d.sweep()                                   # too early: the backoff has not run out
    assert len(calls) == 1
    setup.clock.advance(minutes=10)
    d.sweep()
    assert [to for _m, to in setup.sent] == ["alice@example.org"]
    assert accounts.status(setup.app)["users"][0]["last_status"] == "sent"


def test_a_missed_day_is_merged_into_the_next_digest_not_sent_late(setup):
    setup.start().stop()
    # Down for two days; the lists of those days arrive while it is down.
    write_hf_list(setup.tmp / "lists", "2025-05-20", real_papers("2025-05-20", 10))
    write_hf_list(setup.tmp / "lists", "2025-05-21", real_papers("2025-05-21", 10))
    setup.clock.advance(days=2)
    setup.start()
    days = [d["date"] for d in accounts.export_user(setup.app, "alice")["digests"]]
    assert days == ["2025-05-20", "2025-05-22"] and len(setup.sent) == 2


def test_stop_waits_for_the_message_being_handed_over(setup):
    entered, release = threading.Event(), threading.Event()

    class Slow(RecordingMailer):
        def send(self, msg, to):
            entered.set()
            assert release.wait(30)
            super().send(msg, to)

    setup.app.mailer_factory = lambda: Slow(setup.sent)
    d = Daemon(setup.app, setup.cfg, own_mailer=False)
    d.start()
    assert entered.wait(30)
    stopper = threading.Thread(target=d.stop)
    stopper.start()
    stopper.join(0.3)
    assert stopper.is_alive()          # still waiting for the send in flight
    release.set()
    stopper.join(30)
    assert not stopper.is_alive()
    assert [to for _m, to in setup.sent] == ["alice@example.org"]
    assert accounts.status(setup.app)["users"][0]["last_status"] == "sent"


# -- `digestd run` as a real process ----------------------------------------------------------------------
class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"

    def to(self, addr: str) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(c, policy=email.policy.default) for rcpts, c in self.messages if addr in rcpts]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """`digestd run` in a subprocess; its stdout and stderr go to files the test can read."""

    def __init__(self, tmp: Path, cfg: Path, n: int) -> None:
        self.out, self.err = tmp / f"run{n}.out", tmp / f"run{n}.err"
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        env.pop("DIGESTD_CONFIG", None)
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.p = subprocess.Popen([sys.executable, "-m", "digestd", "--config", str(cfg), "run"],
                                      cwd=REPO, env=env, stdout=out, stderr=err)

    def log(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def stop(self) -> int:
        self.p.send_signal(signal.SIGTERM)
        return self.p.wait(60)


@pytest.mark.slow
def test_digestd_run_delivers_once_on_schedule_and_never_again_that_day(tmp_path):
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    procs: list[Proc] = []
    try:
        write_hf_list(tmp_path / "lists", "2025-05-19", real_papers("2025-05-19", 12))
        write_hf_list(tmp_path / "lists", "2025-05-20", real_papers("2025-05-20", 12))
        tz = ZoneInfo("America/New_York")
        # Due at the next full minute that leaves the process time to start (at least 25 s).
        due = (dt.datetime.now(tz) + dt.timedelta(seconds=85)).replace(second=0, microsecond=0)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cfg = tmp_path / "digestd.toml"
        smtp_table = ("\n[smtp]\nhost = \"127.0.0.1\"\nport = %d\nsecurity = \"none\"\n"
                      "from = \"Paper digest <digest@example.org>\"\ntimeout_seconds = 10\n" % smtp.port)
        cfg.write_text(config_text(base_url=base, listen=f"127.0.0.1:{port}", smtp=smtp_table,
                                   users=user_block("ana", tz="America/New_York", send_at=due.strftime("%H:%M"))))

        first = Proc(tmp_path, cfg, 1)
        procs.append(first)
        http = httpx.Client(base_url=base, timeout=5)

        def healthy():
            try:
                return http.get("/healthz").status_code == 200
            except httpx.TransportError:
                assert first.p.poll() is None, first.log()
                return False

        wait_for(healthy, 60, "the HTTP server")
        wait_for(lambda: "catch-up done" in first.log(), 60, "the catch-up")
        out = first.out.read_text()
        assert f"mail goes to SMTP 127.0.0.1:{smtp.port}" in out
        assert re.search(r"ana: next digest [^\n]*\n", out) and "/feeds/" not in out   # no feed URL on stdout
        feed_url = subprocess.run([sys.executable, "-m", "digestd", "--config", str(cfg), "feed-url", "ana"], cwd=REPO,
                                  check=True, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                                  text=True).stdout.strip()
        assert inbox.messages == []            # not due yet at start

        wait_for(lambda: inbox.messages, 150, "the digest at send_at", step=0.5)
        [msg] = inbox.to("ana@example.org")
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert base + "/u/" in msg["List-Unsubscribe"]

        # The feed the process printed serves the digest; a conditional GET is answered 304.
        feed = http.get(feed_url.removeprefix(base))
        assert feed.status_code == 200 and feed.text.count("<entry>") >= 1
        assert http.get(feed_url.removeprefix(base), headers={"If-None-Match": feed.headers["etag"]}).status_code == 304

        # 👍 from the mail: the link's page records nothing, the button does.
        text = msg.get_body(("plain",)).get_content()
        up = re.search(re.escape(base) + r"/f/\S+", text).group(0)
        page = http.get(up.removeprefix(base))
        assert page.status_code == 200 and 'method="post"' in page.text
        export = lambda: __import__("json").loads(subprocess.run(  # noqa: E731
            [sys.executable, "-m", "digestd", "--config", str(cfg), "export", "ana"], cwd=REPO, check=True,
            env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True).stdout)
        assert export()["feedback"] == []
        field = re.search(r'name="press" value="([^"]+)"', page.text).group(1)
        assert http.post(up.removeprefix(base), data={"vote": "up", "press": field}).status_code == 303
        assert [(f["vote"], f["via"]) for f in export()["feedback"]] == [("up", "email")]
        # Neither the feed token nor the link token reached the process's output (stdout is the journal).
        assert feed_url.split("/feeds/")[1].removesuffix(".atom") not in first.log()
        assert up.split("/f/")[1] not in first.log()

        # SIGHUP: a user added to the config is live at once, and owed today's digest already.
        cfg.write_text(cfg.read_text() + user_block("ben", tz="America/New_York", send_at="00:00"))
        first.p.send_signal(signal.SIGHUP)
        wait_for(lambda: inbox.to("ben@example.org"), 60, "ben's digest after the reload")
        assert "config reloaded" in first.log()

        assert first.stop() == 0
        assert "SIGTERM: shutting down" in first.log()

        second = Proc(tmp_path, cfg, 2)
        procs.append(second)
        wait_for(lambda: "catch-up done" in second.log(), 60, "the catch-up after the restart")
        second.p.send_signal(signal.SIGINT)    # Ctrl-C stops as cleanly as SIGTERM
        assert second.p.wait(60) == 0
        assert len(inbox.to("ana@example.org")) == 1 and len(inbox.to("ben@example.org")) == 1
    finally:
        for p in procs:
            if p.p.poll() is None:
                p.p.kill()
        smtp.stop()


def test_digestd_run_refuses_a_port_that_is_taken_with_one_clear_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        write_hf_list(tmp_path / "lists", "2025-05-19", real_papers("2025-05-19", 3))
        cfg = tmp_path / "digestd.toml"
        cfg.write_text(config_text(listen=f"127.0.0.1:{port}", users=user_block("ana")))
        r = subprocess.run([sys.executable, "-m", "digestd", "--config", str(cfg), "run"], cwd=REPO,
                           env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith(f"digestd: error: cannot listen on 127.0.0.1:{port}")


# -- a real browser -------------------------------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (no browser is downloaded)")
def test_in_chromium_the_thumbs_up_button_records_the_vote(setup):
    from playwright.sync_api import sync_playwright

    from digestd.http_server import HttpThread, bind
    from digestd.web import create_app

    pipeline.fetch_all(setup.app)
    sock = bind("127.0.0.1:0")
    base = "http://127.0.0.1:%d" % sock.getsockname()[1]
    server = HttpThread(create_app(setup.app), sock)
    server.start()
    try:
        paper = real_papers("2025-05-19", 1)[0]
        link = links.feedback_url(setup.app, "alice", paper["id"], "up").replace("http://digest.test", base)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = browser.new_page()
            page.goto(link)
            assert paper["title"] in page.content()
            assert accounts.export_user(setup.app, "alice")["feedback"] == []
            page.click("#vote-up button")
            page.wait_for_selector("#confirmation")
            browser.close()
        assert [(f["paper"], f["vote"], f["via"]) for f in accounts.export_user(setup.app, "alice")["feedback"]] == [
            (paper["id"], "up", "email")]
    finally:
        server.stop()
        sock.close()


def test_on_start_a_source_whose_scheduled_fetch_fell_into_the_downtime_is_fetched(setup):
    d = setup.start()
    d.stop()
    # The replay source runs hourly at :07; fetched at 09:00, so 09:07 was missed by 09:30 ...
    setup.clock.at = dt.datetime(2025, 5, 20, 9, 5, tzinfo=dt.timezone.utc)
    assert d.missed_fetches(setup.clock.now()) == []
    setup.clock.at = dt.datetime(2025, 5, 20, 9, 30, tzinfo=dt.timezone.utc)
    assert d.missed_fetches(setup.clock.now()) == ["demo"]


def test_send_times_that_fire_together_make_one_pass_and_one_more_not_one_each(setup, monkeypatch):
    d = Daemon(setup.app, setup.cfg, own_mailer=False)
    passes, release = [], threading.Event()

    def a_slow_pass():
        passes.append(1)
        if len(passes) == 1:
            assert release.wait(30)
        return []
    monkeypatch.setattr(d, "_deliver_all", a_slow_pass)
    first = threading.Thread(target=d.deliver, args=("alice",))
    first.start()
    wait_for(lambda: passes, 10, "the first pass")
    fires = [threading.Thread(target=d.deliver, args=(f"reader{i}",)) for i in range(50)]
    for t in fires:
        t.start()
    for t in fires:
        t.join()               # each fire returns at once: a pass is running
    release.set()
    first.join()
    assert len(passes) == 2    # the running pass, then one more for everything that fired meanwhile
