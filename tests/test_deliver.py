"""The pipeline in-process: live source types served by httpx.MockTransport from recorded real
responses, a real SMTP conversation with aiosmtpd on loopback, an injected clock."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

import httpx
import pytest
from smtp_recorder import Recorder

from digestd import accounts, feeds, links, pipeline
from digestd.app import build_app
from digestd.clock import FixedClock
from digestd.config import parse_config

DATA = Path(__file__).parent / "data"
ATOM = (DATA / "arxiv-cs.AI-2025-08-20.atom.xml").read_bytes()
HF = (DATA / "hf-paper-2509.04664.json").read_bytes()
API = (DATA / "arxiv-api-query.atom.xml").read_bytes()


class Web:
    """Answers like rss.arxiv.org, the Hugging Face API and the arXiv API; counts the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.hf_dates: list[str] = []
        self.fail: dict[str, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.calls.append(host)
        if self.fail.get(host):
            return httpx.Response(self.fail[host], content=b"unavailable", headers={"Retry-After": "600"})
        if host == "rss.arxiv.org":
            return httpx.Response(200, content=ATOM, headers={"ETag": '"a1"'})
        if host == "huggingface.co":
            self.hf_dates.append(request.url.params.get("date"))
            return httpx.Response(200, content=HF if request.url.params.get("p", "0") == "0" else b"[]")
        if host == "export.arxiv.org":
            return httpx.Response(200, content=API)
        return httpx.Response(404)


CONFIG = """
[digestd]
data_dir = "{tmp}/var"
base_url = "https://digest.example.org"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
from = "Paper digest <digest@example.org>"
max_attempts = 2

[[sources]]
name = "arxiv"
type = "arxiv"
categories = ["cs.AI"]

[[sources]]
name = "hf"
type = "hf_daily"

[[users]]
id = "ann"
email = "ann@example.org"
timezone = "Europe/Berlin"
send_at = "07:30"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
digest_size = 5
keywords = ["multi-agent systems", "agentic reinforcement learning"]

[[users]]
id = "ben"
email = "ben@example.org"
timezone = "America/New_York"
send_at = "07:30"
days = ["mon", "tue", "wed", "thu", "fri"]
digest_size = 5
keywords = ["hallucination", "language models"]
seed_papers = ["2505.10575"]
"""


@pytest.fixture
def world(tmp_path, smtp):
    rec, port = smtp
    web = Web()
    clock = FixedClock(dt.datetime(2025, 8, 20, 6, 0, tzinfo=dt.timezone.utc))  # 08:00 Berlin, 02:00 New York
    settings = parse_config(CONFIG.format(tmp=tmp_path, port=port), config_dir=tmp_path)
    app = build_app(settings, clock=clock, transport=httpx.MockTransport(web))
    app.http._sleep = lambda s: None  # politeness pauses cost nothing in tests
    yield app, web, rec, clock
    app.close()


def received(rec: Recorder) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(raw, policy=email.policy.default) for _, _, raw in rec.messages]


def test_a_pass_fetches_live_formats_and_mails_only_the_users_who_are_due(world):
    app, web, rec, clock = world
    fetched, delivered = pipeline.run_once(app)
    assert {o.source for o in fetched} == {"arxiv", "hf"} and not any(o.error for o in fetched)
    # Ann (Berlin, 08:00) is due; Ben (New York, 02:00) is not yet.
    assert [(d.user, d.status) for d in delivered] == [("ann", "sent")]
    msgs = received(rec)
    assert len(msgs) == 1 and msgs[0]["To"] == "ann@example.org"
    text = msgs[0].get_body(preferencelist=("plain",)).get_content()
    assert "Chain-of-Agents" in text or "agent" in text.lower()
    assert "https://digest.example.org/f/" in text
    export = accounts.export_user(app, "ann")
    assert export["digests"][0]["message_id"] == msgs[0]["Message-ID"]
    assert export["digests"][0]["date"] == "2025-08-20"


def test_a_digest_is_sent_once_per_day_and_never_repeats_a_paper(world):
    app, web, rec, clock = world
    pipeline.run_once(app)
    pipeline.run_once(app)
    assert len(rec.messages) == 1
    first = set(accounts.export_user(app, "ann")["digests"][0]["papers"])
    clock.advance(days=1)
    pipeline.run_once(app)
    digests = accounts.export_user(app, "ann")["digests"]
    # The lists did not change overnight: whatever the second day holds, none of it is a repeat.
    assert len(digests) == 2
    assert first.isdisjoint(digests[1]["papers"])


def test_a_thumbs_down_keeps_a_paper_out_of_every_later_digest(world):
    app, web, rec, clock = world
    pipeline.fetch_all(app)
    top = pipeline.preview(app, "ann").papers[0].key
    accounts.apply_feedback(app, "ann", f"https://arxiv.org/abs/{top}v1", "down")
    assert top not in [p.key for p in pipeline.preview(app, "ann").papers]
    assert accounts.export_user(app, "ann")["feedback"] == [
        {"paper": top, "vote": "down", "at": clock.now().isoformat(), "via": "cli"}]


def test_seed_papers_are_looked_up_in_the_arxiv_api_during_a_fetch(world):
    app, web, rec, clock = world
    pipeline.fetch_all(app)
    assert "export.arxiv.org" in web.calls
    seed = app.store.get_paper("2505.10575")
    assert seed is not None and "physiological" in seed.abstract


def test_a_failing_source_backs_off_without_stopping_the_others(world):
    app, web, rec, clock = world
    web.fail["huggingface.co"] = 503
    outcomes = pipeline.fetch_all(app)
    by = {o.source: o for o in outcomes}
    assert by["hf"].error and "503" in by["hf"].error and by["arxiv"].papers > 0
    st = app.store.source_state("hf")
    assert st.error_count == 1 and st.next_retry_at >= clock.now() + dt.timedelta(seconds=600)
    calls = len(web.calls)
    by = {o.source: o for o in pipeline.fetch_all(app)}
    assert by["hf"].skipped and web.calls.count("huggingface.co") == 1 and len(web.calls) > calls
    web.fail.clear()
    clock.advance(minutes=11)
    by = {o.source: o for o in pipeline.fetch_all(app)}
    assert by["hf"].papers == 1 and app.store.source_state("hf").error_count == 0


def test_a_temporary_smtp_failure_is_retried_and_a_permanent_one_recorded(world):
    app, web, rec, clock = world
    clock.advance(hours=6)  # both users due
    rec.refuse["ann@example.org"] = "451 4.3.0 try again later"
    rec.refuse["ben@example.org"] = "550 5.1.1 no such user"
    out = {d.user: d for d in pipeline.run_once(app)[1]}
    assert out["ann"].status == "retry" and out["ben"].status == "failed"
    assert "550" in accounts.status(app)["users"][1]["last_error"]
    # Nothing is retried before its backoff (and it is told as pending, not as sent); then the
    # same digest goes out once.
    early = {d.user: d for d in pipeline.deliver_due(app)}
    assert early["ann"].status == "retry" and "next attempt at" in early["ann"].error
    assert early["ben"].status == "failed" and "550" in early["ben"].error
    del rec.refuse["ann@example.org"]
    clock.advance(minutes=5)
    out = {d.user: d for d in pipeline.deliver_due(app)}
    assert out["ann"].status == "sent" and out["ben"].status == "failed"
    assert [m["To"] for m in received(rec)] == ["ann@example.org"]
    assert {d.user: d.status for d in pipeline.deliver_due(app)}["ann"] == "already"


def test_a_temporary_failure_gives_up_after_the_configured_attempts(world):
    app, web, rec, clock = world
    rec.refuse["ann@example.org"] = "421 4.7.0 busy"
    assert pipeline.run_once(app)[1][0].status == "retry"
    clock.advance(minutes=10)
    assert pipeline.deliver_due(app)[0].status == "failed"
    clock.advance(minutes=30)
    # Never delivered, so never "already": it stays failed until sent again with --force.
    assert pipeline.deliver_due(app)[0].status == "failed"
    assert rec.messages == []


def test_an_unsubscribed_user_gets_no_mail_but_keeps_their_feed_and_votes(world):
    app, web, rec, clock = world
    pipeline.fetch_all(app)
    key = pipeline.preview(app, "ann").papers[0].key
    accounts.apply_feedback(app, "ann", key, "up")
    app.store.set_subscribed("ann", False, clock.now(), via_link=True)
    out = pipeline.deliver_due(app)
    assert out[0].status == "unsubscribed" and rec.messages == []
    assert accounts.export_user(app, "ann")["feedback"][0]["paper"] == key
    assert "<entry>" in feeds.feed_xml(app, "ann")
    # A config reload does not silently undo a one-click unsubscribe.
    app.store.sync_users(app.settings.users, clock.now())
    assert app.store.get_user("ann").subscribed is False


def test_importing_a_bibtex_library_likes_its_papers(world, tmp_path):
    app, web, rec, clock = world
    res = accounts.import_liked(app, "ann", str(DATA / "import" / "arxiv.bib"))
    assert res["imported"] >= 1
    fb = accounts.export_user(app, "ann")["feedback"]
    assert fb and all(f["vote"] == "up" and f["via"] == "import" for f in fb)


def test_rotating_the_feed_token_changes_the_feed_url(world):
    app, web, rec, clock = world
    before = accounts.export_user(app, "ann")["feed_url"]
    after = links.rotate_feed_token(app, "ann")
    assert before != after and accounts.export_user(app, "ann")["feed_url"] == after
    assert after.startswith("https://digest.example.org/feeds/") and after.endswith(".atom")


def test_after_downtime_hugging_face_is_asked_for_each_missed_day(world):
    app, web, rec, clock = world
    pipeline.fetch_all(app)
    clock.advance(days=3)
    pipeline.fetch_all(app)
    assert sorted(set(web.hf_dates)) == ["2025-08-20", "2025-08-21", "2025-08-22", "2025-08-23"]
