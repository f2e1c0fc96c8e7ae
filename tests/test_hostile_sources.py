"""Hostile sources through the whole pipeline: a real loopback server answers as an attacker or a
broken server would, next to a healthy replay source, on SQLite and PostgreSQL. The bad source
fails alone (logged, recorded, backed off), nothing of it is half stored, and the reader still
gets a normal digest from the good one."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import logging
import re

import pytest
import sqlalchemy as sa

from hostile_server import serve
from test_daemon_support import real_papers, write_hf_list

from digestd import accounts, pipeline
from digestd.app import build_app
from digestd.clock import FixedClock
from digestd.config import parse_config
from digestd.web import health

DAY = "2025-05-20"
NOW = dt.datetime(2025, 5, 20, 9, 0, tzinfo=dt.timezone.utc)

CONFIG = """
[digestd]
data_dir = "{tmp}/var"
database_url = "{db}"
base_url = "https://digest.example.org"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
from = "Paper digest <digest@example.org>"

[fetch]
deadline_seconds = 2
max_body_bytes = 3000000

[[sources]]
name = "good"
type = "replay"
path = "{tmp}/good"

[[sources]]
name = "bad"
type = "{bad_type}"
{bad_key} = "{bad_url}"

[[users]]
id = "ann"
email = "ann@example.org"
send_at = "07:30"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
digest_size = 20
keywords = ["language models", "reinforcement learning", "agents"]
min_score = -1000
"""


@pytest.fixture
def db_url(any_database_url):
    yield any_database_url
    m = re.search(r"search_path%3D(t_[0-9a-f]+)", any_database_url)
    if m:   # the shared PostgreSQL test database keeps no schema of ours
        eng = sa.create_engine(any_database_url.split("?")[0])
        with eng.begin() as c:
            c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{m.group(1)}" CASCADE'))
        eng.dispose()


@pytest.fixture
def world(tmp_path, db_url, smtp):
    rec, port = smtp
    good = real_papers(DAY, 8)
    write_hf_list(tmp_path / "good", DAY, good)
    apps = []

    def make(bad_type: str = "feed", bad_url: str = "http://127.0.0.1:9/none", bad_key: str = "url"):
        settings = parse_config(CONFIG.format(tmp=tmp_path, db=db_url, port=port, bad_type=bad_type,
                                              bad_url=bad_url, bad_key=bad_key), config_dir=tmp_path)
        app = build_app(settings, clock=FixedClock(NOW))
        apps.append(app)
        return app

    with serve() as hostile:
        yield make, hostile, rec, good
        for app in apps:
            app.close()


def stored(app, source: str) -> list:
    with app.store.engine.connect() as c:
        return c.execute(sa.text("select p.key, p.title, p.url, p.abstract from papers p join listings l "
                                 "on l.paper_key = p.key where l.source = :s order by p.key"), {"s": source}).all()


def received(rec) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(raw, policy=email.policy.default) for _, _, raw in rec.messages]


def assert_only_bad_failed(app, outcomes, rec, good, *, cause: str):
    bad = [o for o in outcomes if o.source == "bad"]
    assert len(bad) == 1 and bad[0].error and re.search(cause, bad[0].error), bad
    assert not [o for o in outcomes if o.source == "good" and o.error]
    assert len(stored(app, "good")) == len(good)
    st = app.store.source_state("bad")
    assert st.error_count == 1 and st.next_retry_at > NOW and re.search(cause, st.last_error)
    # status and /healthz tell which source is broken; healthz does not say ok.
    assert [s["last_error"] is not None for s in accounts.status(app)["sources"]] == [False, True]
    live, body = health(app, None)
    assert live and body["ok"] is False and body["failing_sources"] == ["bad"]
    assert {s["name"]: s["status"] for s in body["sources"]} == {"good": "ok", "bad": "failing"}


def pipeline_feed(app) -> str:
    from digestd import feeds

    return feeds.feed_xml(app, "ann")


def run(app):
    return pipeline.run_once(app)


def hf_items(*items) -> bytes:
    return json.dumps(list(items)).encode()


def good_hf(i: int, **over) -> dict:
    paper = {"id": f"2505.{10000 + i}", "title": f"Agents that learn number {i}", "summary": "Reinforcement learning.",
             "authors": [{"name": "Ada Lovelace"}], "publishedAt": "2025-05-20T00:00:00.000Z", "upvotes": 3}
    paper.update(over)
    return {"paper": paper}


def test_absurd_dates_wrong_types_and_lone_surrogates_in_hf_records_skip_or_fix_only_those_records(world):
    make, hostile, rec, good = world
    body = ('[' + ",".join([
        json.dumps(good_hf(1, publishedAt="9999-12-31T23:00:00-05:00")),
        json.dumps(good_hf(2, publishedAt="0001-01-01T00:00:00+01:00")),
        json.dumps(good_hf(3, authors=5)),
        json.dumps(good_hf(4, title=42)),
        json.dumps(good_hf(5, upvotes="many", summary=["not", "text"])),
        # A lone surrogate, as JSON allows it to be written.
        json.dumps(good_hf(6)).replace("number 6", "number 6 \\ud800 \\u001b[31m"),
        json.dumps({"paper": {"title": "No id at all"}}),
        json.dumps("not an object"),
    ]) + ']').encode()
    url = hostile.body("/api/daily_papers", body)
    app = make("hf_daily", url)
    fetched, delivered = run(app)
    assert not any(o.error for o in fetched)
    rows = {k: (t, u) for k, t, u, _ in stored(app, "bad")}
    assert set(rows) == {"2505.10001", "2505.10002", "2505.10003", "2505.10005", "2505.10006"}
    assert rows["2505.10006"][0] == "Agents that learn number 6"
    papers = app.store.papers_by_keys(rows)
    assert papers["2505.10001"].published_at is None and papers["2505.10002"].published_at is None
    assert json.loads(papers["2505.10003"].authors_json) == []
    assert papers["2505.10005"].upvotes is None and papers["2505.10005"].abstract == ""
    assert [d.status for d in delivered] == ["sent"]


def test_deeply_nested_json_fails_that_source_alone(world):
    make, hostile, rec, good = world
    url = hostile.body("/api/daily_papers", b"[" * 200_000 + b"]" * 200_000)
    app = make("hf_daily", url)
    fetched, delivered = run(app)
    assert_only_bad_failed(app, fetched, rec, good, cause="nested too deeply")
    assert [d.status for d in delivered] == ["sent"]


def test_a_2000_character_link_and_a_1000_character_etag_are_stored_safely(world):
    make, hostile, rec, good = world
    long_link = "https://blog.example.org/" + "a" * 2000
    feed = (f'<?xml version="1.0"?><rss version="2.0"><channel><title>b</title>'
            f'<item><title>A post with a long link</title><link>{long_link}</link></item>'
            f'<item><title>A post with a short link</title><link>https://blog.example.org/p</link></item>'
            f'</channel></rss>').encode()
    url = hostile.body("/feed.rss", feed, headers={"ETag": '"' + "e" * 998 + '"'})
    app = make("feed", url)
    fetched, _ = run(app)
    assert not any(o.error for o in fetched), fetched
    rows = stored(app, "bad")
    assert len(rows) == 2 and all(len(k) <= 512 for k, *_ in rows)
    assert app.store.source_state("bad").etag is None


def test_a_truncated_rss_document_is_an_error_and_nothing_of_it_is_stored(world):
    make, hostile, rec, good = world
    feed = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>b</title>'
            b'<item><title>One</title><link>https://blog.example.org/1</link><description>Full.</description></item>'
            b'<item><title>Two</title><link>https://blog.example.org/2</link><description>Full.</description></item>'
            b'<item><title>Three</title><link>https://blog.example.org/3</link><description>Cut of')
    app = make("feed", hostile.body("/feed.rss", feed))
    fetched, delivered = run(app)
    assert_only_bad_failed(app, fetched, rec, good, cause="truncated")
    assert stored(app, "bad") == []
    assert [d.status for d in delivered] == ["sent"]


def test_script_links_never_reach_an_href_in_the_mail(world):
    make, hostile, rec, good = world
    items = "".join(f'<item><title>Language models and agents, part {i}</title><link>{link}</link>'
                    f'<description>Reinforcement learning for language models.</description></item>'
                    for i, link in enumerate(["javascript:alert(1)", "vbscript:msgbox(1)",
                                              "data:text/html,<script>alert(1)</script>", " JaVaScRiPt:alert(2)"]))
    feed = f'<?xml version="1.0"?><rss version="2.0"><channel><title>b</title>{items}</channel></rss>'
    app = make("feed", hostile.body("/feed.rss", feed.encode()))
    fetched, delivered = run(app)
    assert not any(o.error for o in fetched)
    assert all(u is None for _, _, u, _ in stored(app, "bad"))
    msg = received(rec)[0]
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content().lower()
    assert "Language models and agents, part" in text
    assert "javascript:" not in html and "vbscript:" not in html and "data:text" not in html
    feed = pipeline_feed(app)
    assert "Language models and agents, part" in feed and "javascript:" not in feed.lower()


def test_titles_without_ascii_letters_stay_different_papers(world):
    make, hostile, rec, good = world
    feed = ('<?xml version="1.0"?><rss version="2.0"><channel><title>b</title>'
            '<item><title>深度强化学习</title></item><item><title>大型语言模型</title></item>'
            '<item><title>Αυτόνομοι πράκτορες</title></item><item><title>🤖🤖</title></item>'
            '<item><title>🧠🧠</title></item></channel></rss>')
    app = make("feed", hostile.body("/feed.rss", feed.encode()))
    run(app)
    assert len(stored(app, "bad")) == 5


def test_a_huge_abstract_gives_a_normal_size_digest(world, tmp_path):
    make, hostile, rec, good = world
    huge = real_papers(DAY, 1, skip=8)[0]
    huge["summary"] = "Language models as agents. " * 2_300_000    # ~60 MB
    papers = json.loads((tmp_path / "good" / f"{DAY}.json").read_text())
    write_hf_list(tmp_path / "good", DAY, [*({"id": i["paper"]["id"], "title": i["paper"]["title"],
                                              "summary": i["paper"]["summary"],
                                              "authors": [a["name"] for a in i["paper"]["authors"]]}
                                             for i in papers), huge])
    app = make()
    fetched, delivered = run(app)
    row = app.store.get_paper(huge["id"])
    assert len(row.abstract) <= app.settings.fetch.max_abstract_chars + 1
    assert [d.status for d in delivered] == ["sent"]
    raw = rec.messages[0][2]
    assert huge["title"][:30].encode() in raw.replace(b"=\r\n", b"")
    assert len(raw) < 1_000_000, len(raw)


def test_a_dripping_server_is_cut_off_and_the_others_are_fetched_and_mailed(world, caplog):
    make, hostile, rec, good = world
    app = make("feed", hostile.drip("/slow.rss", every=0.4))
    with caplog.at_level(logging.ERROR, logger="digestd"):
        fetched, delivered = run(app)
    assert_only_bad_failed(app, fetched, rec, good, cause="deadline")
    assert [d.status for d in delivered] == ["sent"]
    assert any("deadline" in r.getMessage() and getattr(r, "source", None) == "bad" for r in caplog.records)


def test_a_body_bigger_than_the_cap_fails_that_source_alone(world):
    make, hostile, rec, good = world
    app = make("feed", hostile.flood("/big.rss", megabytes=50))
    fetched, _ = run(app)
    assert_only_bad_failed(app, fetched, rec, good, cause="max_body_bytes")


def test_a_missing_replay_directory_is_an_error_not_an_empty_day(world, tmp_path):
    make, hostile, rec, good = world
    app = make("replay", str(tmp_path / "no-such-dir"), bad_key="path")
    fetched, _ = run(app)
    assert_only_bad_failed(app, fetched, rec, good, cause="replay directory not found")


def test_any_other_exception_of_one_source_is_that_sources_error(world, monkeypatch):
    make, hostile, rec, good = world
    feed = b'<rss version="2.0"><channel><item><title>T</title><link>https://e.org/1</link></item></channel></rss>'
    app = make("feed", hostile.body("/feed.rss", feed))
    real = app.store.upsert_papers

    def refuse_bad(source, *a, **kw):
        if source == "bad":
            raise sa.exc.DataError("INSERT", {}, Exception("value too long for type character varying(512)"))
        return real(source, *a, **kw)

    monkeypatch.setattr(app.store, "upsert_papers", refuse_bad)
    fetched, delivered = run(app)
    assert_only_bad_failed(app, fetched, rec, good, cause="DataError")
    assert [d.status for d in delivered] == ["sent"]


def test_a_feed_urls_credentials_never_show_in_healthz_status_or_the_log(world, caplog):
    make, hostile, rec, good = world
    hostile.body("/private.rss", b"", status=500)
    url = hostile.url("/private.rss").replace("http://", "http://alice:hunter2@") + "?token=SEKRIT&n=1"
    app = make("feed", url)
    with caplog.at_level(logging.DEBUG, logger="digestd"):
        fetched, _ = run(app)
    assert_only_bad_failed(app, fetched, rec, good, cause="HTTP 500")
    shown = json.dumps([health(app, None)[1], accounts.status(app)]) + caplog.text
    assert "hunter2" not in shown and "SEKRIT" not in shown and "REDACTED" in shown


def test_status_and_the_log_of_a_real_process_show_no_escape_codes_and_no_secrets(tmp_path):
    from test_pipeline import cli

    with serve() as hostile:
        hostile.body("/api/daily_papers", json.dumps({"error": "\x1b[31mboom\x1b]0;owned\x07 \x1b[2J"}).encode())
        url = hostile.url("/api/daily_papers").replace("http://", "http://bob:hunter2@") + "?apikey=SEKRIT"
        cfg = tmp_path / "digestd.toml"
        cfg.write_text(f'[digestd]\ndata_dir = "{tmp_path}/var"\n\n[[sources]]\nname = "hf"\ntype = "hf_daily"\n'
                       f'url = "{url}"\n')
        fetched = cli(cfg, "fetch", check=False)
        status = cli(cfg, "status", check=False)
        as_json = cli(cfg, "status", "--json", check=False)
    out = fetched.stdout + fetched.stderr + status.stdout + status.stderr + as_json.stdout
    assert status.returncode != 0 and "boom" in status.stdout and "ERROR x1" in status.stdout
    assert "\x1b" not in out and "\x07" not in out
    assert "hunter2" not in out and "SEKRIT" not in out


def test_run_once_in_a_real_process_cuts_a_dripping_server_off_and_still_mails_the_reader(tmp_path, smtp):
    import time

    from test_pipeline import cli

    rec, port = smtp
    write_hf_list(tmp_path / "good", DAY, real_papers(DAY, 5))
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    write_hf_list(tmp_path / "good", today, real_papers(DAY, 5, skip=5))
    with serve() as hostile:
        url = hostile.drip("/slow.rss", every=1.0)
        cfg = tmp_path / "digestd.toml"
        cfg.write_text(CONFIG.format(tmp=tmp_path, db=f"sqlite:///{tmp_path}/var/digestd.db", port=port,
                                     bad_type="feed", bad_key="url", bad_url=url)
                       .replace('send_at = "07:30"', 'send_at = "00:00"'))
        started = time.monotonic()
        r = cli(cfg, "run", "--once", check=False)
        took = time.monotonic() - started
    assert took < 60, took
    assert re.search(r"ERROR digestd.fetch: fetch failed .*deadline.* source=bad", r.stderr), r.stderr
    assert len(rec.messages) == 1
