"""The HTTP side, in process (Starlette TestClient): private feeds, feedback links, unsubscribe, health."""
from __future__ import annotations

import datetime as dt
import gzip
import random
import re
import time
from types import SimpleNamespace

import warnings

import itsdangerous.timed
import pytest

with warnings.catch_warnings():
    # Starlette asks for "httpx2" behind its TestClient; the httpx it runs on is the one installed.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from digestd import accounts, feeds, links, pipeline
from digestd.app import build_app
from digestd.config import parse_config
from digestd.feedcache import FeedCache, FeedVersion
from digestd.web import accepts_gzip, create_app
from test_daemon_support import RecordingMailer, config_text, real_papers, user_block, write_hf_list

PAPER = "2505.11070"   # the first paper of the real 2025-05-19 list


@pytest.fixture
def env(tmp_path, clock):
    write_hf_list(tmp_path / "lists", "2025-05-19", real_papers("2025-05-19", 15))
    write_hf_list(tmp_path / "lists", "2025-05-20", real_papers("2025-05-20", 15))
    settings = parse_config(config_text(users=user_block("alice", keywords=["preference optimization", "retrieval"])
                                        + user_block("bob", tz="America/New_York", send_at="05:00")),
                            config_dir=tmp_path)
    sent: list = []
    app = build_app(settings, clock=clock, mailer_factory=lambda: RecordingMailer(sent))
    pipeline.fetch_all(app)
    with TestClient(create_app(app)) as client:
        yield SimpleNamespace(app=app, client=client, sent=sent, clock=clock, tmp=tmp_path)
    app.close()


def path_of(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def feedback_path(env, vote: str = "up", user: str = "alice", paper: str = PAPER) -> str:
    return path_of(links.feedback_url(env.app, user, paper, vote))


def feedback(env, user: str = "alice") -> list[dict]:
    return accounts.export_user(env.app, user)["feedback"]


def feed_path(env, user: str = "alice") -> str:
    return path_of(links.feed_url(env.app, links.feed_token(env.app, user)))


def press(client, path: str, vote: str):
    """What a person's press does: open the link's page, send its form with the button's vote."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    field = re.search(r'name="press" value="([^"]+)"', page.text).group(1)
    return client.post(path, data={"vote": vote, "press": field})


def deliver(env) -> list:
    return pipeline.deliver_due(env.app)


# -- feeds -------------------------------------------------------------------------------------------
def test_the_feed_answers_200_with_atom_then_304_to_a_conditional_get(env):
    assert {o.user: o.status for o in deliver(env)} == {"alice": "sent", "bob": "sent"}
    r = env.client.get(feed_path(env))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert r.headers["cache-control"].startswith("private")
    assert "noindex" in r.headers["x-robots-tag"]
    assert "<feed" in r.text and "<entry>" in r.text
    etag, modified = r.headers["etag"], r.headers["last-modified"]

    again = env.client.get(feed_path(env), headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert env.client.get(feed_path(env), headers={"If-Modified-Since": modified}).status_code == 304
    # A stale validator gets the whole feed.
    assert env.client.get(feed_path(env), headers={"If-None-Match": 'W/"other"'}).status_code == 200


def test_the_feed_validators_change_when_a_new_digest_is_delivered(env):
    deliver(env)
    first = env.client.get(feed_path(env))
    write_hf_list(env.tmp / "lists", "2025-05-21", real_papers("2025-05-21", 15))
    env.clock.advance(days=1)
    pipeline.fetch_all(env.app)
    assert [(o.status, o.papers > 0) for o in deliver(env) if o.user == "alice"] == [("sent", True)]
    r = env.client.get(feed_path(env), headers={"If-None-Match": first.headers["etag"]})
    assert r.status_code == 200
    assert r.headers["etag"] != first.headers["etag"]


def test_an_unknown_or_rotated_feed_token_gets_a_404_that_says_nothing(env):
    deliver(env)
    old = feed_path(env)
    nowhere = env.client.get("/no/such/page")
    unknown = env.client.get("/feeds/" + "A" * 43 + ".atom")
    assert unknown.status_code == 404 and unknown.content == nowhere.content
    links.rotate_feed_token(env.app, "alice")
    assert env.client.get(old).status_code == 404
    assert env.client.get(feed_path(env)).status_code == 200


def test_feed_tokens_are_not_written_to_the_log(env, caplog):
    deliver(env)
    caplog.set_level("DEBUG")
    path, link = feed_path(env), feedback_path(env)
    env.client.get(path)
    env.client.get(link)
    press(env.client, link, "up")
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("digestd", "uvicorn")))
    assert ours  # the vote was logged ...
    assert path.removeprefix("/feeds/").removesuffix(".atom") not in ours   # ... but no token
    assert link.removeprefix("/f/") not in ours


# -- the feed cache ------------------------------------------------------------------------------------
@pytest.fixture
def counted(monkeypatch):
    """Counts the calls the web side makes to render a feed and to compute its version."""
    calls = {"feed_xml": 0, "feed_version": 0}

    def wrap(name):
        real = getattr(feeds, name)

        def counting(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(feeds, name, counting)
    wrap("feed_xml")
    wrap("feed_version")
    return calls


def test_a_second_request_for_an_unchanged_feed_is_served_from_the_cache(env, counted):
    deliver(env)
    first = env.client.get(feed_path(env))
    second = env.client.get(feed_path(env))
    assert first.status_code == second.status_code == 200
    assert second.content == first.content and second.headers["etag"] == first.headers["etag"]
    assert env.client.get(feed_path(env), headers={"If-None-Match": first.headers["etag"]}).status_code == 304
    assert counted == {"feed_xml": 1, "feed_version": 1}


def test_a_reader_that_accepts_gzip_gets_the_same_xml_compressed(env):
    deliver(env)
    plain = env.client.get(feed_path(env), headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    with env.client.stream("GET", feed_path(env), headers={"Accept-Encoding": "br;q=1.0, gzip;q=0.8"}) as r:
        raw = b"".join(r.iter_raw())
        headers = r.headers
    assert headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
    assert headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert int(headers["content-length"]) == len(raw) < len(plain.content) / 2
    assert gzip.decompress(raw) == plain.content
    assert headers["etag"] == plain.headers["etag"] and plain.headers["vary"] == "Accept-Encoding"


def test_a_new_digest_changes_the_etag_and_the_body_served(env, counted):
    deliver(env)
    first = env.client.get(feed_path(env))
    write_hf_list(env.tmp / "lists", "2025-05-21", real_papers("2025-05-21", 15))
    env.clock.advance(days=1)
    pipeline.fetch_all(env.app)
    deliver(env)
    second = env.client.get(feed_path(env))
    assert second.headers["etag"] != first.headers["etag"]
    assert second.text.count("<entry>") > first.text.count("<entry>")
    assert counted["feed_xml"] == 2


def test_a_rotated_token_is_never_answered_from_the_cache(env):
    deliver(env)
    old = feed_path(env)
    assert env.client.get(old).status_code == 200
    links.rotate_feed_token(env.app, "alice")
    assert env.client.get(old).status_code == 404
    new = env.client.get(feed_path(env))
    assert new.status_code == 200
    assert feed_path(env).removeprefix("/feeds/") in new.text and old.removeprefix("/feeds/") not in new.text


def test_a_cached_feed_is_rendered_again_once_its_links_have_aged_an_hour(env, counted):
    deliver(env)
    first = env.client.get(feed_path(env))
    env.clock.advance(minutes=59)
    env.client.get(feed_path(env))
    assert counted["feed_xml"] == 1
    env.clock.advance(minutes=2)
    again = env.client.get(feed_path(env))
    assert counted["feed_xml"] == 2
    assert again.headers["etag"] == first.headers["etag"]     # same content: validators unchanged


def test_the_feed_stamp_changes_with_every_delivery_and_token_rotation(env):
    store = env.app.store
    assert store.feed_stamp("nobody") is None
    before = store.feed_stamp("alice")
    deliver(env)
    sent = store.feed_stamp("alice")
    assert sent != before
    assert store.feed_stamp("alice") == sent
    # Sent again at the very same (frozen) time: still a different stamp.
    pipeline.deliver_due(env.app, only_user="alice", day=dt.date(2025, 5, 20), force=True)
    resent = store.feed_stamp("alice")
    assert resent != sent
    links.rotate_feed_token(env.app, "alice")
    assert store.feed_stamp("alice") != resent


@pytest.mark.parametrize("header, expected", [
    ("gzip", True), ("gzip, deflate, br", True), ("br;q=1.0, gzip;q=0.5", True), ("GZIP", True),
    ("*", True), ("x-gzip", True), ("", False), ("identity", False), ("br", False),
    ("gzip;q=0", False), ("*;q=0", False), ("gzip;q=0, *", False), ("*, gzip;q=0", False),
])
def test_gzip_is_used_only_when_the_reader_accepts_it(header, expected):
    assert accepts_gzip(header) is expected


def test_the_feed_cache_stays_within_its_byte_bound_dropping_the_least_recently_used():
    now = dt.datetime(2025, 5, 20, tzinfo=dt.timezone.utc)
    rng = random.Random(0)
    xml = lambda: "".join(rng.choice("abcdefghij") for _ in range(20_000))  # noqa: E731 - incompressible enough
    cache = FeedCache(max_bytes=100_000)
    for user in ("a", "b", "c"):
        cache.remember_feed(user, "e1", xml(), now)
    assert cache.feed("a", "e1", now) is not None          # touching "a" makes "b" the oldest
    cache.remember_feed("d", "e1", xml(), now)
    cached = {u for u in "abcd" if cache.feed(u, "e1", now) is not None}
    assert "b" not in cached and {"a", "d"} <= cached
    assert cache.cached_bytes <= 100_000
    assert cache.feed("a", "other-etag", now) is None


def test_a_cached_version_is_only_trusted_for_the_same_stamp_and_settings():
    cache = FeedCache()
    settings, version = object(), FeedVersion('W/"1"', dt.datetime(2025, 5, 20, tzinfo=dt.timezone.utc))
    cache.remember_version("alice", settings, ("n", 1), version)
    assert cache.version("alice", settings, ("n", 1)) == version
    assert cache.version("alice", settings, ("n", 2)) is None
    assert cache.version("alice", object(), ("n", 1)) is None     # a config reload
    assert cache.version("bob", settings, ("n", 1)) is None


# -- feedback ------------------------------------------------------------------------------------------
def test_opening_a_feedback_link_shows_the_paper_and_records_nothing(env):
    r = env.client.get(feedback_path(env, "up"))
    assert r.status_code == 200
    assert "Towards Self-Improvement of Diffusion Models via Group Preference Optimization" in r.text
    assert "Renjie Chen" in r.text and "Aligning text-to-image" in r.text
    assert r.text.count('method="post"') == 2 and "👍" in r.text and "👎" in r.text
    assert feedback(env) == []
    assert accounts.export_user(env.app, "alice")["feedback_history"] == []


def test_a_head_request_records_nothing(env):
    assert env.client.head(feedback_path(env, "down")).status_code == 200
    assert feedback(env) == []


def test_pressing_the_button_records_the_vote_as_given_by_email(env):
    r = press(env.client, feedback_path(env, "up"), "up")
    assert r.status_code == 200 and 'id="confirmation"' in r.text
    assert [h.status_code for h in r.history] == [303] and r.url.path.endswith("/done")
    assert [(f["paper"], f["vote"], f["via"]) for f in feedback(env)] == [(PAPER, "up", "email")]


def test_pressing_twice_is_harmless(env):
    for _ in range(2):
        assert press(env.client, feedback_path(env, "down"), "down").status_code == 200
    assert [(f["paper"], f["vote"]) for f in feedback(env)] == [(PAPER, "down")]


def test_undo_puts_back_what_was_there_before(env):
    path = feedback_path(env, "up")
    r = press(env.client, path, "up")
    undo = re.search(r'<form method="post" id="undo"><input type="hidden" name="vote" value="(\w+)">', r.text)
    assert undo and undo.group(1) == "clear"
    press(env.client, r.url.path + "?" + r.url.query.decode(), undo.group(1))
    assert feedback(env) == []

    accounts.apply_feedback(env.app, "alice", PAPER, "down", via="cli")
    r = press(env.client, path, "up")
    assert re.search(r'name="vote" value="down">\s*<button type="submit">Undo', r.text)
    press(env.client, r.url.path + "?" + r.url.query.decode(), "down")
    assert [f["vote"] for f in feedback(env)] == ["down"]


def test_a_tampered_feedback_link_gets_a_clear_400_page_and_records_nothing(env):
    good = feedback_path(env, "up")
    tampered = good.replace("/f/", "/f/x", 1)
    field = re.search(r'name="press" value="([^"]+)"', env.client.get(good).text).group(1)
    for r in (env.client.get(tampered), env.client.post(tampered, data={"vote": "up", "press": field})):
        assert r.status_code == 400
        assert "not valid" in r.text
    assert feedback(env) == []


def test_an_expired_feedback_link_gets_a_400_page(env, monkeypatch):
    # Sign the link 61 days ago: older than link_max_age_days (60).
    real = time.time
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: real() - 61 * 86400)
    path = feedback_path(env, "up")
    monkeypatch.setattr(itsdangerous.timed.time, "time", real)
    r = env.client.post(path, data={"vote": "up", "press": env.app.signer.press_token(path.removeprefix("/f/"))})
    assert r.status_code == 400 and "expired" in r.text
    assert feedback(env) == []


def test_a_link_opened_at_any_time_records_nothing_and_carries_no_script(env):
    """The landed code submitted the vote by script once a link was 5 minutes old: a scanner that runs
    JavaScript voted for every paper of a mail. Now no page submits anything by itself."""
    path = feedback_path(env, "up")
    for minutes in (0, 10, 60 * 24 * 30):
        env.clock.at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes)
        page = env.client.get(path).text
        assert "<script" not in page and ".submit()" not in page
    assert feedback(env) == [] and accounts.export_user(env.app, "alice")["feedback_history"] == []


def test_a_post_without_the_pages_form_field_records_nothing(env):
    path = feedback_path(env, "up")
    other = env.app.signer.press_token(feedback_path(env, "down").removeprefix("/f/"))
    for data in ({"vote": "up"}, {"vote": "up", "press": "forged"}, {"vote": "up", "press": other}):
        r = env.client.post(path, data=data)
        assert r.status_code == 400 and "not sent from the digestd page" in r.text
    assert feedback(env) == []


def test_a_press_sent_from_another_site_is_refused(env):
    path = feedback_path(env, "up")
    r = env.client.post(path, data={"vote": "up", "press": env.app.signer.press_token(path.removeprefix("/f/"))},
                        headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and feedback(env) == []


def test_the_down_page_asks_for_fewer_and_offers_one_button_first(env):
    page = env.client.get(feedback_path(env, "down")).text
    assert "Fewer papers like this?" in page and "Do you want more" not in page
    first_form = re.search(r'<form method="post" id="vote-(\w+)"', page).group(1)
    assert first_form == "down"
    assert page.index("Towards Self-Improvement of Diffusion Models") < page.index('id="vote-down"')


def test_a_vote_from_a_feed_link_is_recorded_as_given_by_feed(env):
    deliver(env)
    xml = env.client.get(feed_path(env)).text
    up = re.search(r"http://digest\.test(/f/[^\"&<\s]+)", xml.replace("&amp;", "&")).group(1)
    mail_up = feedback_path(env, "up", paper=env.app.signer.read_feedback(up.removeprefix("/f/"))[1])
    press(env.client, up, "up")
    assert [f["via"] for f in feedback(env)] == ["feed"]
    press(env.client, mail_up, "down")
    assert [(f["vote"], f["via"]) for f in feedback(env)] == [("down", "email")]


def test_pages_load_nothing_from_elsewhere_and_are_not_indexed(env):
    for r in (env.client.get("/"), env.client.get(feedback_path(env)),
              env.client.get(path_of(links.unsubscribe_url(env.app, "alice")))):
        assert r.status_code == 200
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "noindex" in r.headers["x-robots-tag"]
        assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)=', r.text)
        assert 'name="viewport"' in r.text


def test_titles_are_escaped_on_the_feedback_page(env):
    from digestd.models import FetchedPaper

    env.app.store.upsert_papers("demo", dt.date(2025, 5, 20), [FetchedPaper(
        key="title:xss", title="<script>alert(1)</script> & more", abstract="a < b")], env.clock.now())
    r = env.client.get(feedback_path(env, paper="title:xss"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in r.text and "<script>alert" not in r.text


def test_a_vote_given_over_http_changes_the_next_digest(tmp_path, clock, monkeypatch):
    """compose trains from the current votes, so a 👍 counts from the very next digest. Two users
    with the same interests see the same lists; only one votes."""
    import digestd.rank

    def diffusion(p):
        return "diffusion" in p["title"].lower()

    liked, *similar = real_papers(None, 5, where=diffusion)
    others = real_papers(None, 30, where=lambda p: "diffusion" not in (p["title"] + p["summary"]).lower())
    write_hf_list(tmp_path / "lists", "2025-05-19", others[:15] + [liked])
    settings = parse_config(config_text(users=user_block("alice", size=4) + user_block("twin", size=4)),
                            config_dir=tmp_path)
    app = build_app(settings, clock=clock, mailer_factory=lambda: RecordingMailer([]))
    client = TestClient(create_app(app))
    pipeline.fetch_all(app)
    assert {o.user: o.status for o in pipeline.deliver_due(app)} == {"alice": "sent", "twin": "sent"}

    assert press(client, path_of(links.feedback_url(app, "alice", liked["id"], "up")), "up").status_code == 200

    # Watch what the real ranker is given.
    seen = {}
    real_train = digestd.rank.train_readers

    def watching(profiles, *args, **kw):
        for profile in profiles:
            seen[profile.user_id] = [(v.paper.key, v.value) for v in profile.votes]
        return real_train(profiles, *args, **kw)

    monkeypatch.setattr(digestd.rank, "train_readers", watching)
    write_hf_list(tmp_path / "lists", "2025-05-20", similar + others[15:])
    clock.advance(days=1)
    pipeline.fetch_all(app)
    assert {o.user: o.status for o in pipeline.deliver_due(app)} == {"alice": "sent", "twin": "sent"}
    assert seen == {"alice": [(liked["id"], 1)], "twin": []}

    def liked_kind(user):
        papers = {d["date"]: d["papers"] for d in accounts.export_user(app, user)["digests"]}["2025-05-21"]
        return [k for k in papers if k in {p["id"] for p in similar}]

    assert len(liked_kind("alice")) > len(liked_kind("twin")), (liked_kind("alice"), liked_kind("twin"))
    app.close()


# -- unsubscribe ---------------------------------------------------------------------------------------
def test_the_unsubscribe_link_only_shows_a_button(env):
    r = env.client.get(path_of(links.unsubscribe_url(env.app, "alice")))
    assert r.status_code == 200
    assert 'name="List-Unsubscribe" value="One-Click"' in r.text
    assert accounts.export_user(env.app, "alice")["user"]["subscribed"] is True


def test_one_click_unsubscribe_stops_the_mail_at_once_and_keeps_the_votes(env):
    accounts.apply_feedback(env.app, "alice", PAPER, "up", via="cli")
    # What a mail provider sends for RFC 8058: a bare form POST, no cookie, no page visit first.
    r = env.client.post(path_of(links.unsubscribe_url(env.app, "alice")),
                        content=b"List-Unsubscribe=One-Click",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and "Subscribe again" in r.text
    outcomes = {o.user: o.status for o in deliver(env)}
    assert outcomes["alice"] == "unsubscribed"
    assert [to for _msg, to in env.sent] == ["bob@example.org"]
    assert [f["vote"] for f in feedback(env)] == ["up"]


def test_subscribing_again_brings_the_mail_back(env):
    url = path_of(links.unsubscribe_url(env.app, "alice"))
    env.client.post(url, data={"List-Unsubscribe": "One-Click"})
    r = env.client.post(url, data={"action": "subscribe"})
    assert r.status_code == 200 and "subscribed again" in r.text
    assert {o.user: o.status for o in deliver(env)}["alice"] == "sent"


def test_an_unsubscribe_post_without_the_one_click_body_changes_nothing(env):
    url = path_of(links.unsubscribe_url(env.app, "alice"))
    assert env.client.post(url, data={}).status_code == 400
    assert env.client.post(url.replace("/u/", "/u/x", 1), data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert accounts.export_user(env.app, "alice")["user"]["subscribed"] is True


# -- health --------------------------------------------------------------------------------------------
def test_healthz_reports_the_scheduler_the_database_and_each_source(env):
    from apscheduler.schedulers.background import BackgroundScheduler

    sched = BackgroundScheduler()
    client = TestClient(create_app(env.app, scheduler=sched))
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["scheduler"]["running"] is False   # not started
    sched.start()
    try:
        r = client.get("/healthz")
        body = r.json()
        assert r.status_code == 200 and body["ok"] and body["database"] is True
        assert [s["name"] for s in body["sources"]] == ["demo"]
        assert body["sources"][0]["last_success"].startswith("2025-05-20T09:00")
    finally:
        sched.shutdown(wait=False)


def test_healthz_is_503_when_the_database_is_unreachable(env, tmp_path):
    from digestd.store import Store

    # A database "directory" that is a file: every connection fails.
    (tmp_path / "not-a-dir").write_text("")
    env.app.store = Store.__new__(Store)
    env.app.store.url = f"sqlite:///{tmp_path}/not-a-dir/x.db"
    import sqlalchemy as sa
    env.app.store.engine = sa.create_engine(env.app.store.url)
    r = env.client.get("/healthz")
    assert r.status_code == 503 and r.json()["database"] is False


# -- profile -------------------------------------------------------------------------------------------
def test_the_profile_page_lists_the_readers_votes_behind_the_feed_token(env):
    press(env.client, feedback_path(env, "up"), "up")
    url = accounts.export_user(env.app, "alice")["profile_url"]
    r = env.client.get(path_of(url))
    assert r.status_code == 200
    liked = re.search(r'<ul id="liked".*?</ul>', r.text, re.S).group(0)
    assert "Towards Self-Improvement of Diffusion Models via Group Preference Optimization" in liked
    assert "preference optimization, retrieval" in r.text
    assert env.client.get("/profile/" + "A" * 43).status_code == 404
    assert "noindex" in r.headers["x-robots-tag"]
