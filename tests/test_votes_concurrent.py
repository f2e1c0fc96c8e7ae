"""Votes under load, against a real uvicorn server on loopback and a real database (SQLite in WAL,
and PostgreSQL when DIGESTD_TEST_DATABASE_URL is set).

The landed code read the current vote, then inserted: 48 of 500 concurrent presses during a delivery
got a 500, and a double click gave a 500 (7 of 80 pairs on SQLite, 34 of 80 on PostgreSQL)."""
from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
import sqlalchemy as sa

from digestd import accounts, links, pipeline
from digestd.app import build_app
from digestd.clock import FixedClock
from digestd.config import parse_config
from digestd.http_server import HttpThread
from digestd.web import create_app
from test_daemon_support import RecordingMailer, config_text, real_papers, user_block, write_hf_list

import datetime as dt

USERS = [f"reader{i:02d}" for i in range(20)]


def _serve(app) -> tuple[HttpThread, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)            # 500 connections at once: none refused by a short accept queue
    http = HttpThread(create_app(app), sock)
    http.start()
    deadline = time.monotonic() + 20
    while not http.server.started:
        assert time.monotonic() < deadline and http.is_alive(), f"the server did not start: {http.error}"
        time.sleep(0.02)
    return http, f"http://127.0.0.1:{sock.getsockname()[1]}"


class SlowMailer(RecordingMailer):
    """Hands each message over after a pause, like a real relay, and holds the last one until
    ``release`` is set, so the delivery is still writing while the votes arrive; ``started`` is set
    at the first message."""

    def __init__(self, sent: list, started: threading.Event, release: threading.Event) -> None:
        super().__init__(sent)
        self.started, self.release = started, release

    def send(self, msg, to: str) -> None:
        self.started.set()
        time.sleep(0.15)
        if len(self.sent) == len(USERS) - 1:
            self.release.wait(120)
        super().send(msg, to)


@pytest.fixture
def world(tmp_path, any_database_url):
    papers = real_papers("2025-05-20", 25)
    write_hf_list(tmp_path / "lists", "2025-05-20", papers)
    users = "".join(user_block(u, tz="UTC", send_at="08:00", size=5) for u in USERS)
    settings = parse_config(config_text(users=users, extra=f'database_url = "{any_database_url}"'), config_dir=tmp_path)
    sent: list = []
    started, release = threading.Event(), threading.Event()
    clock = FixedClock(dt.datetime(2025, 5, 20, 9, 0, tzinfo=dt.timezone.utc))
    app = build_app(settings, clock=clock, mailer_factory=lambda: SlowMailer(sent, started, release))
    pipeline.fetch_all(app)
    http, base = _serve(app)
    yield SimpleNamespace(app=app, base=base, papers=[p["id"] for p in papers], sent=sent, started=started,
                          release=release)
    release.set()
    http.stop()
    if app.store.engine.dialect.name == "postgresql":
        schema = app.store.engine.url.query["options"].split("=")[-1]
        with app.store.engine.begin() as c:
            c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    app.close()


def _press_form(app, user: str, paper: str, vote: str) -> tuple[str, dict]:
    """The path of a mail's link and the form its page sends when the button is pressed."""
    url = links.feedback_url(app, user, paper, vote)
    token = url.rsplit("/f/", 1)[1]
    return f"/f/{token}", {"vote": vote, "press": app.signer.press_token(token)}


async def _post_all(base: str, requests: list[tuple[str, dict]]) -> list[httpx.Response | Exception]:
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:
        return await asyncio.gather(*(client.post(path, data=data) for path, data in requests), return_exceptions=True)


def _statuses(responses) -> dict:
    out: dict = {}
    for r in responses:
        key = r.status_code if isinstance(r, httpx.Response) else type(r).__name__
        out[key] = out.get(key, 0) + 1
    return out


def test_500_concurrent_presses_during_a_delivery_all_succeed_and_are_all_recorded(world):
    app = world.app
    wanted = {(u, p): ("up" if (i + j) % 2 else "down") for i, u in enumerate(USERS) for j, p in enumerate(world.papers)}
    assert len(wanted) == 500
    requests = [_press_form(app, u, p, v) for (u, p), v in wanted.items()]

    delivered: list = []
    delivery = threading.Thread(target=lambda: delivered.extend(pipeline.deliver_due(app)))
    delivery.start()
    assert world.started.wait(120), "the delivery never reached the mailer"
    responses = asyncio.run(_post_all(world.base, requests))
    still_delivering = delivery.is_alive()
    world.release.set()
    delivery.join(300)

    assert _statuses(responses) == {303: 500}
    assert still_delivering, "the presses did not overlap the delivery"
    assert sorted(o.status for o in delivered) == ["sent"] * len(USERS)
    for u in USERS:
        data = accounts.export_user(app, u)
        assert {(u, f["paper"]): f["vote"] for f in data["feedback"]} == {k: v for k, v in wanted.items() if k[0] == u}
        assert {f["via"] for f in data["feedback"]} == {"email"}
        assert len(data["feedback_history"]) == 25


def test_80_double_clicks_give_no_error_and_leave_one_vote_each(world):
    app = world.app
    pairs = [(USERS[i % len(USERS)], world.papers[i % len(world.papers)], "up" if i % 3 else "down") for i in range(80)]
    assert len(set(pairs)) == 80
    requests = []
    for u, p, v in pairs:
        form = _press_form(app, u, p, v)
        requests += [form, form]                 # the same press twice, at once
    responses = asyncio.run(_post_all(world.base, requests))

    assert _statuses(responses) == {303: 160}
    votes = {}
    for u in USERS:
        data = accounts.export_user(app, u)
        votes.update({(u, f["paper"]): f["vote"] for f in data["feedback"]})
        assert len(data["feedback_history"]) == 2 * sum(1 for pu, _, _ in pairs if pu == u)
    assert votes == {(u, p): v for u, p, v in pairs}


def test_a_press_while_another_writer_holds_the_lock_waits_its_turn_and_is_recorded(world):
    """The landed code: a press during a long write waited 10 s and failed with "database is locked"."""
    app = world.app
    if app.store.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's single write lock")
    path, form = _press_form(app, USERS[0], world.papers[0], "up")
    writer = app.store.engine.raw_connection()
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE users SET updated_at = updated_at")
    # Longer than the 10 s the landed code waited before "database is locked".
    release = threading.Timer(11.0, writer.commit)
    release.start()
    try:
        t0 = time.monotonic()
        r = httpx.post(world.base + path, data=form, timeout=60)
        waited = time.monotonic() - t0
    finally:
        release.join()
        writer.close()
    assert r.status_code == 303 and 10.5 < waited < 25
    assert [f["vote"] for f in accounts.export_user(app, USERS[0])["feedback"]] == ["up"]


def test_a_press_the_store_cannot_take_gets_a_503_with_a_retry_that_then_records_it(world, monkeypatch):
    app = world.app
    path, form = _press_form(app, USERS[1], world.papers[1], "down")
    real = app.store.set_vote
    calls = []

    def refusing(*args, **kw):
        calls.append(args)
        if len(calls) == 1:
            with app.store.engine.connect() as c:   # a real driver error, as a stuck lock or a restart gives
                c.execute(sa.text("SELECT * FROM no_such_table"))
        return real(*args, **kw)

    monkeypatch.setattr(app.store, "set_vote", refusing)
    r = httpx.post(world.base + path, data=form, timeout=60)
    assert r.status_code == 503 and r.headers["retry-after"].isdigit()
    assert accounts.export_user(app, USERS[1])["feedback"] == []
    retry = re.search(r'<form method="post" id="retry">(.*?)</form>', r.text, re.S).group(1)
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', retry))
    assert fields == form
    again = httpx.post(world.base + path, data=fields, timeout=60)
    assert again.status_code == 303
    assert [f["vote"] for f in accounts.export_user(app, USERS[1])["feedback"]] == ["down"]
