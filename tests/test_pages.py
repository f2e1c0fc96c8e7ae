"""The reader's own pages, in process: the profile with undo, today's full ranked list, pause and resume."""
from __future__ import annotations

import datetime as dt
import re
import warnings
from types import SimpleNamespace

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from digestd import accounts, pipeline
from digestd.app import build_app
from digestd.config import parse_config
from digestd.web import create_app
from test_daemon_support import RecordingMailer, config_text, real_papers, user_block, write_hf_list


@pytest.fixture
def env(tmp_path, clock):
    write_hf_list(tmp_path / "lists", "2025-05-20", real_papers("2025-05-20", 20))
    settings = parse_config(config_text(users=user_block("alice", keywords=["retrieval"], size=5)), config_dir=tmp_path)
    sent: list = []
    app = build_app(settings, clock=clock, mailer_factory=lambda: RecordingMailer(sent))
    pipeline.fetch_all(app)
    with TestClient(create_app(app), follow_redirects=False) as client:
        yield SimpleNamespace(app=app, client=client, sent=sent, clock=clock)
    app.close()


def path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def profile_path(env) -> str:
    return path(accounts.export_user(env.app, "alice")["profile_url"])


def test_todays_full_list_ranks_more_papers_than_the_digest_with_buttons_on_every_one(env):
    assert [o.status for o in pipeline.deliver_due(env.app)] == ["sent"]
    digest = accounts.export_user(env.app, "alice")["digests"][-1]["papers"]
    r = env.client.get(profile_path(env) + "/today")
    assert r.status_code == 200
    cards = re.findall(r'<li class="card" id="p\d+">.*?</li>', r.text, re.S)
    assert len(cards) > len(digest) == 5
    assert sum("in your digest" in c for c in cards) == 5
    assert all(c.count("<button") == 2 for c in cards)


def test_a_vote_from_todays_list_is_recorded_via_web_and_redirects_back(env):
    pipeline.deliver_due(env.app)
    key = accounts.export_user(env.app, "alice")["digests"][-1]["papers"][0]
    r = env.client.post(profile_path(env) + "/vote", data={"paper": key, "vote": "down", "back": "today"})
    assert r.status_code == 303 and r.headers["location"].split("?")[0].endswith("/today")
    assert accounts.export_user(env.app, "alice")["feedback"] == [
        {"paper": key, "vote": "down", "at": env.clock.now().isoformat(), "via": "web"}]


def test_the_profile_lists_a_liked_paper_and_undoes_it_with_the_confirmation_first(env):
    pipeline.deliver_due(env.app)
    key = accounts.export_user(env.app, "alice")["digests"][-1]["papers"][0]
    accounts.apply_feedback(env.app, "alice", key, "up", via="email")
    page = env.client.get(profile_path(env)).text
    liked = re.search(r'<ul id="liked".*?</ul>', page, re.S).group(0)
    assert f'value="{key}"' in liked
    r = env.client.post(profile_path(env) + "/vote", data={"paper": key, "vote": "clear"})
    assert r.status_code == 303
    after = env.client.get(path(r.headers["location"])).text
    assert accounts.export_user(env.app, "alice")["feedback"] == []
    # The confirmation and its Undo come before everything else on the page.
    body = after.split("<main>", 1)[1]
    assert body.lstrip().startswith('<div class="card notice" id="changed"') and 'id="undo"' in body[:1200]
    assert '<ul id="liked"' not in after


def test_a_pause_stops_mail_until_its_date_and_resume_starts_it_again(env):
    until = (env.clock.now().date() + dt.timedelta(days=3)).isoformat()
    r = env.client.post(profile_path(env) + "/pause", data={"until": until})
    assert r.status_code == 303
    assert f"no mail until {until}" in env.client.get(profile_path(env)).text
    assert [o.status for o in pipeline.deliver_due(env.app)] == ["paused"]
    assert env.sent == []
    env.client.post(profile_path(env) + "/pause", data={"action": "resume"})
    assert "Mail is on." in env.client.get(profile_path(env)).text


def test_a_pause_in_the_past_is_refused_with_a_clear_message(env):
    r = env.client.post(profile_path(env) + "/pause", data={"until": "2020-01-01"})
    assert r.status_code == 303
    assert "the pause must end after today" in env.client.get(path(r.headers["location"])).text


def test_every_page_links_to_the_profile_and_an_unknown_token_gets_404(env):
    assert env.client.get("/profile/nope").status_code == 404
    assert env.client.get("/profile/nope/today").status_code == 404
    assert env.client.post("/profile/nope/vote", data={"paper": "x", "vote": "up"}).status_code == 404



def test_a_database_from_before_pauses_gains_the_column_and_can_pause(tmp_path, clock):
    import sqlite3

    from digestd.store import open_store

    write_hf_list(tmp_path / "lists", "2025-05-20", real_papers("2025-05-20", 5))
    settings = parse_config(config_text(users=user_block("alice")), config_dir=tmp_path)
    build_app(settings, clock=clock).close()
    db = tmp_path / "var" / "digestd.db"
    con = sqlite3.connect(db)                      # the schema the 0.1.0 release created
    con.execute("ALTER TABLE users DROP COLUMN paused_until")
    con.execute("DROP TABLE alembic_version")      # which knew no migrations
    con.commit()
    con.close()
    store = open_store(f"sqlite:///{db}")
    assert store.get_user("alice").paused_until is None
    store.set_paused("alice", dt.date(2025, 6, 1), clock.now())
    assert store.get_user("alice").paused_until == dt.date(2025, 6, 1)
    store.dispose()


def test_another_sites_form_can_neither_vote_nor_pause_on_a_readers_pages(env):
    pipeline.deliver_due(env.app)
    key = accounts.export_user(env.app, "alice")["digests"][-1]["papers"][0]
    cross = {"sec-fetch-site": "cross-site"}
    r = env.client.post(profile_path(env) + "/vote", data={"paper": key, "vote": "up"}, headers=cross)
    assert r.status_code == 403
    r = env.client.post(profile_path(env) + "/pause", data={"until": "2099-01-01"}, headers=cross)
    assert r.status_code == 403
    assert accounts.export_user(env.app, "alice")["feedback"] == []
    assert env.app.store.get_user("alice").paused_until is None
