"""The whole path, driven through the CLI as a user would: lists in, personal digests out."""
from __future__ import annotations

import json
import mailbox
import os
import shutil
import subprocess
import sys
from email import policy
from pathlib import Path

import feedparser
import pytest

REPO = Path(__file__).resolve().parent.parent


def demo_config(dest: Path) -> Path:
    """The bundled demo config, with its data dir under ``dest`` and its lists read from the repo."""
    text = (REPO / "examples" / "demo.toml").read_text()
    text = text.replace('data_dir = "../var"', f'data_dir = "{dest / "var"}"')
    text = text.replace('path = "lists/', f'path = "{REPO / "examples" / "lists"}/')
    cfg = dest / "demo.toml"
    cfg.write_text(text)
    return cfg


@pytest.fixture(scope="module")
def fetched_var(tmp_path_factory):
    """The demo's lists fetched once; each test starts from a copy of that database."""
    base = tmp_path_factory.mktemp("demo-fetched")
    cli(demo_config(base), "fetch")
    return base / "var"


@pytest.fixture
def demo(tmp_path, fetched_var):
    shutil.copytree(fetched_var, tmp_path / "var")
    return demo_config(tmp_path)


def cli(cfg: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "digestd", "--config", str(cfg), *args], capture_output=True,
                       text=True, cwd=REPO, env=env, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"digestd {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


def outbox(cfg: Path) -> list:
    box = mailbox.Maildir(cfg.parent / "var" / "outbox", create=False)
    return [mailbox.MaildirMessage(m) for m in box]


def papers_in(msg) -> list[str]:
    from email import message_from_bytes

    m = message_from_bytes(msg.as_bytes(), policy=policy.default)
    text = m.get_body(preferencelist=("plain",)).get_content()
    return [line.split("/abs/")[1].split()[0].rstrip(")>") for line in text.splitlines() if "arxiv.org/abs/" in line]


def test_run_once_on_the_demo_mails_each_reader_their_own_papers_and_feeds_match(demo):
    r = cli(demo, "run", "--once")
    assert "digest alice" in r.stdout
    msgs = outbox(demo)
    by_user = {m["To"]: m for m in msgs}
    # dan reads by feed only; the three others get exactly one mail each.
    assert sorted(by_user) == ["alice@example.org", "bob@example.org", "carol@example.org"]
    assert len(msgs) == 3
    picks = {u: papers_in(m) for u, m in by_user.items()}
    assert all(len(p) >= 3 for p in picks.values()), picks
    assert set(picks["alice@example.org"]).isdisjoint(picks["bob@example.org"])
    for m in msgs:
        assert m.get_content_type() == "multipart/alternative"
        assert m["List-Unsubscribe"] and m["Message-ID"]

    export = json.loads(cli(demo, "export", "alice").stdout)
    sent = export["digests"][-1]["papers"]
    assert sent and export["digests"][-1]["message_id"] == by_user["alice@example.org"]["Message-ID"]

    feed = feedparser.parse(cli(demo, "feed", "alice").stdout)
    assert not feed.bozo, feed.get("bozo_exception")
    feed_ids = [next(iter(l.href.split("/abs/")[1:]), None) for e in feed.entries for l in e.links if "/abs/" in l.href]
    assert set(sent) <= {i for i in feed_ids if i}

    # A second pass the same day sends nothing more.
    cli(demo, "run", "--once")
    assert len(outbox(demo)) == 3


def preview_ids(cfg: Path, user: str) -> list[str]:
    from email import message_from_string

    msg = message_from_string(cli(cfg, "digest", user, "--format", "eml").stdout, policy=policy.default)
    return papers_in(msg)


def test_a_vote_changes_the_next_digest(demo):
    assert json.loads(cli(demo, "export", "carol").stdout)["feedback"] == []
    carol_before = preview_ids(demo, "carol")
    bob = preview_ids(demo, "bob")
    assert carol_before and bob
    # Carol starts liking what Bob reads (image and video generation).
    for pid in bob[:4]:
        cli(demo, "feedback", "carol", pid, "up")
    after = json.loads(cli(demo, "export", "carol").stdout)
    assert [f["paper"] for f in after["feedback"]] == bob[:4]
    assert all(f["vote"] == "up" and f["via"] == "cli" for f in after["feedback"])
    carol_after = preview_ids(demo, "carol")
    assert carol_after != carol_before
    assert len(set(carol_after) & set(bob)) > len(set(carol_before) & set(bob))
    # A thumbs-down removes a paper from every later digest.
    cli(demo, "feedback", "carol", carol_after[0], "down")
    assert carol_after[0] not in preview_ids(demo, "carol")


def test_the_digest_command_renders_every_format_without_sending(demo, tmp_path):
    text = cli(demo, "digest", "alice").stdout
    assert "👍" in text or "up" in text
    html_file = tmp_path / "d.html"
    cli(demo, "digest", "alice", "--format", "html", "--out", str(html_file))
    assert "<html" in html_file.read_text().lower()
    eml = cli(demo, "digest", "alice", "--format", "eml").stdout
    assert "multipart/alternative" in eml
    assert not (demo.parent / "var" / "outbox").exists() or outbox(demo) == []


def test_a_fresh_install_fetches_the_demo_lists_from_both_sources(tmp_path):
    cfg = demo_config(tmp_path)
    out = cli(cfg, "fetch").stdout
    assert "arxiv 2025-05-19: 110 papers" in out and "hf 2025-05-30: 25 papers" in out
    # The same paper from Hugging Face and arXiv is one paper.
    st = json.loads(cli(cfg, "status", "--json").stdout)
    assert st["counts"]["listings"] > st["counts"]["papers"]


def test_status_shows_sources_users_and_counts(demo):
    out = cli(demo, "status").stdout
    assert "arxiv" in out and "hf" in out and "alice" in out and "papers" in out
    st = json.loads(cli(demo, "status", "--json").stdout)
    assert all(s["last_success"] for s in st["sources"])
    assert st["counts"]["papers"] > 100
    assert {u["id"]: u["profile_trained_at"] for u in st["users"]}["alice"] is None
    cli(demo, "digest", "alice")                       # composing trains (and stores) alice's profile
    trained = {u["id"]: u["profile_trained_at"] for u in json.loads(cli(demo, "status", "--json").stdout)["users"]}
    assert trained["alice"] and trained["bob"] is None
    assert f"profile trained: {trained['alice']}" in cli(demo, "status").stdout


def test_unknown_user_and_paper_are_one_line_errors(demo):
    r = cli(demo, "feedback", "nobody", "2505.22704", "up", check=False)
    assert r.returncode == 1 and "nobody" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli(demo, "feedback", "alice", "1234.99999", "up", check=False)
    assert r.returncode == 1 and "1234.99999" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_broken_source_does_not_stop_the_others(demo, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "2025-05-20.json").write_text("{not json")
    text = demo.read_text() + f'\n[[sources]]\nname = "broken"\ntype = "replay"\npath = "{broken}"\n'
    demo.write_text(text)
    r = cli(demo, "run", "--once", check=False)
    assert "broken" in r.stderr and "2025-05-20" in r.stderr
    assert len(outbox(demo)) == 3
    # Every digest went out, but a source failed: the exit code says so, and so does status.
    assert r.returncode == 1 and "sources 2 ok, 1 failed (broken); digests 3 sent" in r.stderr
    s = cli(demo, "status", "--json", check=False)
    st = json.loads(s.stdout)
    assert s.returncode == 1 and st["ok"] is False and st["problems"] == ["source broken failing"]
    by_name = {s["name"]: s for s in st["sources"]}
    assert by_name["broken"]["error_count"] == 1 and by_name["arxiv"]["last_success"]
