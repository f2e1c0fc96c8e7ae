"""The batched delivery pass: batches give the same digests as one reader alone, a killed pass's
leases are taken over, and a claim left from an earlier day is delivered, never lost. In-process
on the bundled demo lists (real papers), a real SMTP conversation with aiosmtpd on loopback."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections import Counter
from pathlib import Path

import pytest
from smtp_recorder import Recorder

from digestd import accounts, pipeline
from digestd.app import build_app
from digestd.clock import FixedClock
from digestd.config import parse_config
from digestd.pipeline import compose as compose_mod
from digestd.pipeline import deliver as deliver_mod

LISTS = Path(__file__).resolve().parent.parent / "examples" / "lists"
TOPICS = [["retrieval-augmented generation", "dense retrieval"], ["diffusion models", "image generation"],
          ["reinforcement learning", "reward models"], ["speech recognition", "audio language models"],
          ["graph neural networks"], ["large language models", "reasoning"], ["3d reconstruction", "point clouds"]]
N_READERS = 24


def config(tmp: Path, port: int, n: int = N_READERS, database_url: str = "") -> str:
    users = []
    for i in range(n):
        kws = TOPICS[i % len(TOPICS)] + TOPICS[(i * 3 + 1) % len(TOPICS)][:1]
        users.append(f"""
[[users]]
id = "r{i:02d}"
email = "r{i:02d}@example.org"
timezone = "UTC"
send_at = "06:00"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
digest_size = {5 + i % 6}
keywords = {kws!r}
explore = {'true' if i % 2 else 'false'}
""".replace("'", '"'))
    return f"""
[digestd]
data_dir = "{tmp}/var"
database_url = "{database_url}"
base_url = "https://digest.example.org"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
from = "Paper digest <digest@example.org>"

[[sources]]
name = "arxiv"
type = "replay"
path = "{LISTS / 'arxiv'}"

[[sources]]
name = "hf"
type = "replay"
path = "{LISTS / 'hf'}"
""" + "".join(users)


@pytest.fixture
def world(tmp_path, smtp, any_database_url):
    # The pass on both databases: its batched claims and queries must hold on SQLite and PostgreSQL.
    rec, port = smtp
    clock = FixedClock(dt.datetime(2025, 5, 20, 7, 0, tzinfo=dt.timezone.utc))
    settings = parse_config(config(tmp_path, port, database_url=any_database_url), config_dir=tmp_path)
    app = build_app(settings, clock=clock)
    pipeline.fetch_all(app, day=dt.date(2025, 5, 19))
    pipeline.fetch_all(app, day=dt.date(2025, 5, 20))
    # Some readers have voted: the batch mixes trained and keyword-only profiles.
    papers = sorted(p.key for p in app.store.recent_papers(400))
    for i, user in enumerate(settings.users[::3]):
        for j in range(4):
            accounts.apply_feedback(app, user.id, papers[(i * 37 + j * 11) % len(papers)], "up" if j % 3 else "down")
    yield app, rec, clock
    app.close()


def received(rec: Recorder) -> Counter:
    return Counter(r for _, rcpts, _ in rec.messages for r in rcpts)


def picks(comp) -> list[tuple]:
    return [(p.key, p.reason, p.highlight, p.explore) for p in comp.picks]


def scores(comp) -> list[float]:
    return [p.score for p in comp.picks]


def test_one_reader_alone_and_inside_a_batch_of_many_get_the_same_digest(world):
    app, _rec, clock = world
    now, day = clock.now(), clock.now().date()
    users = app.settings.users
    together = pipeline.compose_batch(app, [compose_mod.Request(u, day) for u in users], now)
    alone = [pipeline.compose_one(app, u, day, now) for u in users]
    assert all(c.picks for c in together)
    assert [picks(c) for c in together] == [picks(c) for c in alone]
    # Scores are float32 matrix products: a batch sums in another order, so they agree to float32 precision.
    for t, a in zip(together, alone):
        assert scores(t) == pytest.approx(scores(a), rel=1e-5, abs=1e-4)
    assert [c.candidates for c in together] == [c.candidates for c in alone]


def test_a_pass_in_several_batches_delivers_each_reader_exactly_once(world, monkeypatch):
    app, rec, _clock = world
    monkeypatch.setattr(deliver_mod, "BATCH_SIZE", 5)
    outcomes = pipeline.deliver_due(app)
    assert Counter(o.status for o in outcomes) == {"sent": N_READERS}
    assert received(rec) == {f"r{i:02d}@example.org": 1 for i in range(N_READERS)}
    assert {o.status for o in pipeline.deliver_due(app)} == {"already"}
    assert sum(received(rec).values()) == N_READERS


def test_the_garbage_collector_is_paused_while_a_batch_works_and_back_on_after_the_pass(world, monkeypatch):
    import gc

    app, _rec, _clock = world
    monkeypatch.setattr(deliver_mod, "BATCH_SIZE", 10)
    seen = []
    real = deliver_mod.compose_batch

    def watched(app, requests, now):
        seen.append(gc.isenabled())
        return real(app, requests, now)

    monkeypatch.setattr(deliver_mod, "compose_batch", watched)
    assert gc.isenabled()
    outcomes = pipeline.deliver_due(app)
    assert Counter(o.status for o in outcomes) == {"sent": N_READERS}
    assert seen == [False, False, False]          # three batches of ten, each with the collector off
    assert gc.isenabled()


def test_a_batch_that_raises_still_turns_the_garbage_collector_back_on(world, monkeypatch):
    import gc

    app, _rec, _clock = world
    paused = []

    def broken(*a, **k):
        paused.append(not gc.isenabled())
        raise RuntimeError("a bug in the pass")

    monkeypatch.setattr(deliver_mod, "_deliver_batch", broken)
    with pytest.raises(RuntimeError):
        pipeline.deliver_due(app)
    assert paused == [True]
    assert gc.isenabled()


class Killed(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs, not even a release."""


def test_a_killed_pass_leaves_leases_that_the_next_pass_takes_over(world, monkeypatch):
    app, rec, clock = world
    real_factory = app.mailer_factory
    sent = []

    class DiesAfterSeven:
        def __init__(self):
            self.inner = real_factory()

        def __enter__(self):
            self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def send_raw(self, raw, to, sender=None):
            if len(sent) == 7:
                raise Killed()
            self.inner.send_raw(raw, to, sender)
            sent.append(to)

    app.mailer_factory = DiesAfterSeven
    # A dead process releases nothing: its claims stay, under leases nobody renews.
    monkeypatch.setattr(app.store, "release_digests", lambda ids: None)
    with pytest.raises(Killed):
        pipeline.deliver_pending(app)
    monkeypatch.undo()
    app.mailer_factory = real_factory
    assert sum(received(rec).values()) == 7
    # Before the lease lapses, another pass leaves the dead pass's digests alone ...
    clock.advance(seconds=10)
    assert pipeline.deliver_pending(app) == []
    # ... and takes them over once it has: within a minute, every reader has exactly one digest.
    clock.advance(seconds=deliver_mod.LEASE.total_seconds())
    outcomes = pipeline.deliver_pending(app)
    assert Counter(o.status for o in outcomes) == {"sent": N_READERS - 7}
    assert received(rec) == {f"r{i:02d}@example.org": 1 for i in range(N_READERS)}


def test_a_claim_left_from_an_earlier_day_is_delivered_the_next_day_not_lost(world, monkeypatch):
    app, rec, clock = world
    yesterday = clock.now().date()
    # Yesterday's pass composed r00's digest, then died before sending it.
    r00 = app.settings.user("r00")
    [row] = app.store.claim_digests([("r00", yesterday)], clock.now(), "dead", deliver_mod.LEASE)
    comp = pipeline.compose_one(app, r00, yesterday, clock.now(), exclude_digest=row.id)
    its = compose_mod.items_from(comp)
    app.store.save_digest_items(row, its, comp.covers_from, comp.covers_until, comp.note)
    promised = [i.paper_key for i in its]
    assert promised
    clock.advance(days=1)
    pipeline.fetch_all(app, day=dt.date(2025, 5, 21))
    outcomes = pipeline.deliver_due(app, only_user=None)
    r00_out = sorted((o.day, o.status) for o in outcomes if o.user == "r00")
    assert r00_out == [(yesterday, "sent"), (yesterday + dt.timedelta(days=1), "sent")]
    digests = {d["date"]: d for d in accounts.export_user(app, "r00")["digests"]}
    assert digests[yesterday.isoformat()]["papers"] == promised       # what was promised went out
    assert not set(promised) & set(digests[(yesterday + dt.timedelta(days=1)).isoformat()]["papers"])
    mails = [email.message_from_bytes(raw, policy=email.policy.default) for _, rcpts, raw in rec.messages
             if rcpts == ["r00@example.org"]]
    assert len(mails) == 2


def test_a_shutdown_mid_pass_releases_the_rest_for_the_next_start(world):
    app, rec, _clock = world
    asked = []

    def stop_after_three():
        asked.append(1)
        return sum(received(rec).values()) >= 3
    first = pipeline.deliver_pending(app, should_stop=stop_after_three)
    assert [o.status for o in first] == ["sent"] * 3
    # Released, not leased: the next start takes the rest at once, without waiting for a lease.
    rest = pipeline.deliver_pending(app)
    assert Counter(o.status for o in rest) == {"sent": N_READERS - 3}
    assert received(rec) == {f"r{i:02d}@example.org": 1 for i in range(N_READERS)}


def test_a_reader_whose_compose_fails_is_retried_while_the_batch_goes_out(world, monkeypatch):
    app, rec, _clock = world
    real = compose_mod._rank

    def breaks_on_r05(app_, readers, pool, eligible, now):
        if any(r.req.user.id == "r05" for r in readers):
            raise RuntimeError("a bug that only r05's profile triggers")
        return real(app_, readers, pool, eligible, now)
    monkeypatch.setattr(compose_mod, "_rank", breaks_on_r05)
    outcomes = {o.user: o for o in pipeline.deliver_due(app)}
    assert outcomes["r05"].status == "retry" and "r05's profile" in outcomes["r05"].error
    assert sum(o.status == "sent" for o in outcomes.values()) == N_READERS - 1
    assert "r05@example.org" not in received(rec)
