"""Helpers shared by the daemon and web tests (no tests here): small replay lists made of real
papers, written as the Hugging Face API serves them, and a mailer that keeps what it is given."""
from __future__ import annotations

import email
import email.policy
import json
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Real papers (ids, titles, abstracts) from the bundled demo lists, saved as the HF API serves them.
HF_LISTS = REPO / "examples" / "lists" / "hf"


def real_papers(day: str | None, n: int, *, skip: int = 0, where=None) -> list[dict]:
    """The first ``n`` papers of one real daily list (``day``) or of all of them (None), optionally
    filtered, as plain records: id, title, summary, authors."""
    files = [HF_LISTS / f"{day}.json"] if day else sorted(HF_LISTS.glob("*.json"))
    out = []
    for f in files:
        for item in json.loads(f.read_text(encoding="utf-8")):
            p = item["paper"]
            rec = {"id": p["id"], "title": p["title"], "summary": p["summary"],
                   "authors": [a["name"] for a in p["authors"]]}
            if where is not None and not where(rec):
                continue
            if skip:
                skip -= 1
                continue
            out.append(rec)
            if len(out) == n:
                return out
    return out


def write_hf_list(directory: Path, day: str, papers: list[dict]) -> Path:
    """One replay file in the Hugging Face daily_papers shape."""
    directory.mkdir(parents=True, exist_ok=True)
    items = [{"paper": {"id": p["id"], "title": p["title"], "summary": p["summary"],
                        "authors": [{"name": a} for a in p["authors"]],
                        "publishedAt": f"{day}T00:00:00.000Z", "upvotes": 0},
              "title": p["title"], "publishedAt": f"{day}T00:00:00.000Z"} for p in papers]
    path = directory / f"{day}.json"
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    return path


class RecordingMailer:
    """Stands in for SMTP/Maildir in in-process tests: ``sent`` holds (message, recipient)."""

    def __init__(self, sent: list) -> None:
        self.sent = sent

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def send(self, msg, to: str) -> None:
        self.sent.append((msg, to))

    def send_raw(self, raw: bytes, to: str, sender: str | None = None) -> None:
        # Parsed and passed to ``send``, so tests that override ``send`` see every message.
        self.send(email.message_from_bytes(raw, policy=email.policy.default), to)


def config_text(*, data_dir: str = "var", base_url: str = "http://digest.test", listen: str = "127.0.0.1:8080",
                smtp: str = "", users: str = "", extra: str = "") -> str:
    return textwrap.dedent(f"""\
        [digestd]
        data_dir = "{data_dir}"
        base_url = "{base_url}"
        listen = "{listen}"
        {extra}
        """) + smtp + textwrap.dedent("""
        [[sources]]
        name = "demo"
        type = "replay"
        path = "lists"
        """) + users


def user_block(uid: str, *, tz: str = "Europe/Berlin", send_at: str = "07:30", keywords=("retrieval",),
               days=("mon", "tue", "wed", "thu", "fri", "sat", "sun"), formats=("email", "rss"), size: int = 5,
               min_score: float | None = -1e9) -> str:
    # min_score -1e9: a full digest every day, whatever the ranker's calibrated cut would keep.
    return textwrap.dedent(f"""
        [[users]]
        id = "{uid}"
        email = "{uid}@example.org"
        timezone = "{tz}"
        send_at = "{send_at}"
        days = {json.dumps(list(days))}
        keywords = {json.dumps(list(keywords))}
        formats = {json.dumps(list(formats))}
        digest_size = {size}
        explore = false
        """) + (f"min_score = {min_score}\n" if min_score is not None else "")
