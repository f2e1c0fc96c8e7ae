"""A digestd served for real on loopback (uvicorn, the daemon's HTTP thread) with real SMTP, for
the tests that drive it the way a reader does: newsboat on the feed, Chromium on a delivered mail."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import socket
from pathlib import Path
from types import SimpleNamespace

from digestd import pipeline
from digestd.app import build_app
from digestd.clock import FixedClock
from digestd.config import parse_config
from digestd.http_server import HttpThread
from digestd.web import create_app
from test_daemon_support import real_papers

LATEX_TITLE = r"Mobi-$\pi$: \textbf{GR}ouping $8192\times 8192$ panoramas in 360{\deg}"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"     # gitignored: screenshots of each run


def hf_list(directory: Path, day: str, papers: list[dict]) -> None:
    """A Hugging Face list with what the real API adds: upvotes, ai_summary, githubRepo."""
    directory.mkdir(parents=True, exist_ok=True)
    items = []
    for i, p in enumerate(papers):
        paper = {"id": p["id"], "title": p["title"], "summary": p["summary"],
                 "authors": [{"name": a} for a in p["authors"]], "publishedAt": f"{day}T00:00:00.000Z",
                 "upvotes": 40 - i}
        if i % 2 == 0:
            paper["ai_summary"] = f"A short machine summary of paper {p['id']}."
            paper["githubRepo"] = f"https://github.com/example/repo-{i}"
        items.append({"paper": paper, "title": p["title"], "publishedAt": f"{day}T00:00:00.000Z"})
    (directory / f"{day}.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")


def start_site(tmp_path: Path, smtp_port: int, days=("2025-05-19",), size: int = 10) -> SimpleNamespace:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for i, day in enumerate(days):
        papers = real_papers(day, 20)
        if i == 0:
            papers[0] = {**papers[0], "title": LATEX_TITLE,
                         "summary": r"We reach $O(n^2)$ and $\alpha$-stable rates. " + papers[0]["summary"]}
        hf_list(tmp_path / "lists", day, papers)
    settings = parse_config(f"""
[digestd]
data_dir = "var"
base_url = "{base}"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "Paper digest <digest@example.org>"

[[sources]]
name = "hf"
type = "replay"
path = "lists"

[[users]]
id = "alice"
email = "alice@example.org"
name = "Alice"
timezone = "UTC"
send_at = "07:00"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
digest_size = {size}
keywords = ["preference optimization", "retrieval"]
explore = false
min_score = -1e9
""", config_dir=tmp_path)
    clock = FixedClock(dt.datetime.fromisoformat(f"{days[0]}T09:00:00+00:00"))
    app = build_app(settings, clock=clock)
    http = HttpThread(create_app(app), sock)
    http.start()

    def deliver(day: str) -> None:
        clock.at = dt.datetime.fromisoformat(f"{day}T09:00:00+00:00")
        pipeline.fetch_all(app, day=dt.date.fromisoformat(day))
        assert {o.status for o in pipeline.deliver_due(app)} == {"sent"}

    def stop() -> None:
        http.stop()
        app.close()

    return SimpleNamespace(app=app, base=base, clock=clock, deliver=deliver, stop=stop)


def html_part(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return next(p for p in msg.iter_parts() if p.get_content_subtype() == "html").get_content()
