"""Digest messages per second on one core: `python benchmarks/bench_messages.py [--quick]`.

Ten-paper digests of real arXiv papers (../shared/data/arxiv-daily, else synthetic text), each
reader with its own feedback links. Measures the raw RFC 5322 bytes a delivery pass hands to SMTP
(render_message) and, for comparison, the EmailMessage path (build_message, then flattened as
smtplib.send_message does).
"""
from __future__ import annotations

import datetime as dt
import email.generator
import email.policy
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digestd.models import Digest, DigestPaper  # noqa: E402
from digestd.render import build_message, render_message  # noqa: E402

DAILY = Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv-daily" / "2025-05-19.jsonl"
BASE = "http://127.0.0.1:8080"
ARGS = dict(from_addr="Paper digest <digest@example.org>", message_id="<d.1.2025-05-19@127.0.0.1>",
            date=dt.datetime(2025, 5, 19, 5, 30, tzinfo=dt.timezone.utc), list_id="<digest.127.0.0.1>")


def _rows(n: int) -> list[dict]:
    if DAILY.exists():
        with DAILY.open() as f:
            return [json.loads(next(f)) for _ in range(n)]
    return [{"id": f"2505.{i:05d}", "title": f"Paper {i} on models", "summary": "We study models. " * 40,
             "authors": ["A One", "B Two", "C Three", "D Four", "E Five"]} for i in range(n)]


def digests(readers: int, size: int = 10) -> list[Digest]:
    rows = _rows(size * 5)
    out = []
    for r in range(readers):
        papers = []
        for i in range(size):
            row = rows[(r + i * 7) % len(rows)]
            key = row["id"]
            sentences = " ".join(row["summary"].split()).split(". ")
            papers.append(DigestPaper(
                key=key, title=row["title"], abstract=row["summary"], authors=row["authors"],
                url=f"https://arxiv.org/abs/{key}", pdf_url=f"https://arxiv.org/pdf/{key}", score=0.9 - i / 20,
                reason=f"Close to a paper you liked: paper {i}", highlight=sentences[min(1, len(sentences) - 1)],
                explore=i == size - 1, up_url=f"{BASE}/f/up-{r}-{key}-{'x' * 80}",
                down_url=f"{BASE}/f/down-{r}-{key}-{'x' * 80}", sources=["arxiv"]))
        out.append(Digest(user_id=f"u{r}", user_email=f"u{r}@example.org", day=dt.date(2025, 5, 19), papers=papers,
                          base_url=BASE, unsubscribe_url=f"{BASE}/u/{'t' * 90}{r}", feed_url=f"{BASE}/feeds/{r}.atom"))
    return out


def _smtp_bytes(msg) -> bytes:
    # What smtplib.send_message does with an EmailMessage before DATA.
    buf = io.BytesIO()
    email.generator.BytesGenerator(buf, policy=msg.policy.clone(linesep="\r\n")).flatten(msg, linesep="\r\n")
    return buf.getvalue()


def run(quick: bool = False) -> dict:
    ds = digests(200 if quick else 1000)
    render_message(ds[0], **ARGS)                  # first use compiles the templates
    t = time.perf_counter()
    size = sum(len(render_message(d, **ARGS)) for d in ds)
    raw_s = time.perf_counter() - t
    few = ds[: max(50, len(ds) // 10)]
    t = time.perf_counter()
    for d in few:
        _smtp_bytes(build_message(d, **ARGS))
    msg_s = (time.perf_counter() - t) * len(ds) / len(few)
    result = {"messages_per_s": len(ds) / raw_s, "ms_per_message": raw_s * 1000 / len(ds),
              "email_message_ms_per_message": msg_s * 1000 / len(ds), "bytes_per_message": size / len(ds)}
    print(f"{len(ds)} ten-paper digests, {result['bytes_per_message'] / 1024:.0f} KiB each")
    print(f"render_message (raw bytes):         {result['ms_per_message']:.2f} ms/message, "
          f"{result['messages_per_s']:.0f} messages/s")
    print(f"build_message + SMTP flatten:       {result['email_message_ms_per_message']:.2f} ms/message")
    return result


if __name__ == "__main__":
    run(quick="--quick" in sys.argv[1:])
