#!/usr/bin/env python3
"""Build the offline demo lists in examples/lists/ from REAL papers (../shared/data/arxiv-daily).

    python scripts/make_demo_lists.py [--src DIR] [--out DIR]

Writes, for every day in the source data:

* ``arxiv/YYYY-MM-DD.atom``: an rss.arxiv.org Atom list for DEMO_CATEGORIES, shaped exactly like the
  real capture (``oai:arXiv.org:ID v1`` ids, the ``arXiv:ID Announce Type: new`` summary prefix, one
  comma-separated ``dc:creator`` with TeX accents as arXiv writes them, categories,
  ``arxiv:announce_type``). At most ARXIV_PER_DAY papers, picked deterministically with a topic mix.
* ``hf/YYYY-MM-DD.json``: a Hugging Face ``/api/daily_papers`` answer with at most HF_PER_DAY papers,
  most of them also in that day's arXiv list (the same paper from two sources).

Every id, title, abstract, author list and category is real. What is NOT real, and says so here:
``upvotes`` are synthetic (derived from a hash of the id so that reruns give the same files), and the
Hugging Face timestamps are the listing day at midnight UTC because the source data has no times.
Nothing depends on wall-clock time or randomness: rerunning gives byte-identical files.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SRC = REPO.parent / "shared" / "data" / "arxiv-daily"
DEFAULT_OUT = REPO / "examples" / "lists"

# The list the demo "subscribes" to; a paper whose primary category is elsewhere is a cross-list.
DEMO_CATEGORIES = ["cs.CL", "cs.CV", "cs.LG", "cs.AI", "cs.IR"]
ARXIV_PER_DAY = 110
HF_PER_DAY = 25
HF_NOT_IN_ARXIV = 4     # a few Hugging Face papers the arXiv list does not carry
_ID_RE = re.compile(r"^\d{4}\.\d{4,5}$")


def _hash(text: str, salt: str = "") -> int:
    return int.from_bytes(hashlib.sha256((salt + text).encode()).digest()[:8], "big")


def synthetic_upvotes(arxiv_id: str) -> int:
    """SYNTHETIC: a skewed, stable 0..~150 from the id, like real Daily Papers (most low, a few high)."""
    u = (_hash(arxiv_id, "upvotes") % 10_000) / 10_000
    return int(150 * u ** 3)


# -- reading -----------------------------------------------------------------------------------------

def read_day(path: Path) -> list[dict]:
    papers, seen = [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        p = json.loads(line)
        # Never invent an id: anything that is not a plain new-style arXiv id is left out.
        if not _ID_RE.match(p.get("id", "")) or p["id"] in seen or not p.get("categories"):
            continue
        seen.add(p["id"])
        papers.append(p)
    return papers


def pick_topic_mix(papers: list[dict], n: int) -> list[dict]:
    """Round-robin over primary categories (each in hash order): small fields are kept, big ones fill up."""
    listed = [p for p in papers if set(p["categories"]) & set(DEMO_CATEGORIES)]
    groups: dict[str, list[dict]] = defaultdict(list)
    for p in sorted(listed, key=lambda p: _hash(p["id"])):
        groups[p["categories"][0]].append(p)
    order = sorted(groups, key=lambda c: (-len(groups[c]), c))
    picked: list[dict] = []
    while len(picked) < n and any(groups.values()):
        for cat in order:
            if groups[cat] and len(picked) < n:
                picked.append(groups[cat].pop(0))
    return picked


def announce_type(p: dict) -> str:
    return "new" if p["categories"][0] in DEMO_CATEGORIES else "cross"


# -- arXiv Atom ---------------------------------------------------------------------------------------

_SYMBOL = {"\u0308": '"', "\u0301": "'", "\u0300": "`", "\u0302": "^", "\u0303": "~", "\u0304": "=", "\u0307": "."}
_WORD = {"\u0306": "u", "\u030c": "v", "\u030b": "H", "\u0327": "c", "\u0328": "k", "\u030a": "r", "\u0323": "d"}
_SPECIAL = {"ß": "{\\ss}", "ø": "{\\o}", "Ø": "{\\O}", "ł": "{\\l}", "Ł": "{\\L}", "æ": "{\\ae}", "Æ": "{\\AE}",
            "œ": "{\\oe}", "Œ": "{\\OE}", "ı": "{\\i}"}


def tex_name(name: str) -> str:
    """Write accents the way arXiv's dc:creator does (``J\\"org``, ``\\v{s}``); other letters stay Unicode."""
    out = []
    for ch in unicodedata.normalize("NFC", name):
        if ch in _SPECIAL:
            out.append(_SPECIAL[ch])
            continue
        parts = unicodedata.normalize("NFD", ch)
        base, marks = parts[0], parts[1:]
        if len(marks) != 1 or not base.isascii() or not base.isalpha():
            out.append(ch)
        elif marks in _SYMBOL:
            out.append(f"\\{_SYMBOL[marks]}{base}")
        elif marks in _WORD:
            out.append(f"\\{_WORD[marks]}{{{base}}}")
        else:
            out.append(ch)
    return "".join(out)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _paragraphs(text: str) -> str:
    return "\n".join(_one_line(p) for p in re.split(r"\n\s*\n", text.strip()) if p.strip())


def atom_entry(p: dict, day: str) -> str:
    aid, kind = p["id"], announce_type(p)
    cats = "\n".join(f'    <category term="{escape(c)}"/>' for c in p["categories"])
    creators = ", ".join(tex_name(_one_line(a)) for a in p["authors"])
    return f"""  <entry>
    <id>oai:arXiv.org:{aid}v1</id>
    <title>{escape(_one_line(p["title"]))}</title>
    <updated>{day}T04:00:00+00:00</updated>
    <link href="https://arxiv.org/abs/{aid}" rel="alternate" type="text/html"/>
    <summary>arXiv:{aid}v1 Announce Type: {kind} 
Abstract: {escape(_paragraphs(p["summary"]))}</summary>
{cats}
    <published>{day}T00:00:00-04:00</published>
    <arxiv:announce_type>{kind}</arxiv:announce_type>
    <dc:creator>{escape(creators)}</dc:creator>
  </entry>
"""


def atom_feed(papers: list[dict], day: str) -> str:
    feed = "+".join(DEMO_CATEGORIES)
    # As rss.arxiv.org orders them: new submissions first, then cross-lists, each by id.
    ordered = sorted(papers, key=lambda p: (announce_type(p) != "new", p["id"]))
    head = f"""<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns="http://www.w3.org/2005/Atom" xml:lang="en-us">
  <id>http://rss.arxiv.org/atom/{feed}</id>
  <title>{feed} updates on arXiv.org</title>
  <updated>{day}T04:00:00+00:00</updated>
  <link href="http://rss.arxiv.org/atom/{feed}" rel="self" type="application/atom+xml"/>
  <subtitle>{feed} updates on the arXiv.org e-print archive.</subtitle>
"""
    return head + "".join(atom_entry(p, day) for p in ordered) + "</feed>\n"


# -- Hugging Face JSON --------------------------------------------------------------------------------

_GITHUB_RE = re.compile(r"https?://github\.com/[\w.-]+/[\w.-]+")


def hf_item(p: dict, day: str) -> dict:
    stamp = f"{day}T00:00:00.000Z"   # the source data has no times: the listing day, midnight UTC
    paper = {
        "id": p["id"],
        "authors": [{"name": _one_line(a), "hidden": False} for a in p["authors"]],
        "publishedAt": stamp,
        "submittedOnDailyAt": stamp,
        "title": _one_line(p["title"]),
        "summary": p["summary"].strip(),   # hard line breaks kept, as the API serves them
        "upvotes": synthetic_upvotes(p["id"]),
    }
    github = _GITHUB_RE.search(p.get("comment") or "")
    if github:
        paper["githubRepo"] = github.group(0).rstrip(".")
    return {"paper": paper, "publishedAt": stamp, "title": paper["title"]}


def pick_hf(all_papers: list[dict], listed: list[dict]) -> list[dict]:
    listed_ids = {p["id"] for p in listed}
    from_list = sorted(listed, key=lambda p: _hash(p["id"], "hf"))[: HF_PER_DAY - HF_NOT_IN_ARXIV]
    others = sorted((p for p in all_papers if p["id"] not in listed_ids), key=lambda p: _hash(p["id"], "hf"))
    chosen = from_list + others[:HF_NOT_IN_ARXIV]
    # Daily Papers shows the most upvoted first.
    return sorted(chosen, key=lambda p: (-synthetic_upvotes(p["id"]), p["id"]))


# -- main ---------------------------------------------------------------------------------------------

def build(src: Path, out: Path) -> list[Path]:
    days = sorted(src.glob("????-??-??.jsonl"))
    if not days:
        raise SystemExit(f"no YYYY-MM-DD.jsonl files in {src}")
    written = []
    for path in days:
        day = path.stem
        papers = read_day(path)
        listed = pick_topic_mix(papers, ARXIV_PER_DAY)
        hf = pick_hf(papers, listed)
        for sub, name, text in (
            ("arxiv", f"{day}.atom", atom_feed(listed, day)),
            ("hf", f"{day}.json", json.dumps([hf_item(p, day) for p in hf], ensure_ascii=False, indent=1) + "\n"),
        ):
            target = out / sub / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC, help=f"arxiv-daily JSONL directory (default {DEFAULT_SRC})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    written = build(args.src, args.out)
    total = sum(p.stat().st_size for p in written)
    print(f"wrote {len(written)} files, {total / 1e6:.1f} MB, to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
