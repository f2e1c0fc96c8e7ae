"""The benchmark's workload, generated deterministically from the real arXiv lists in ../shared/data.

    w = build_workload(users=10_000, papers=2_000, seed=0)
    write_lists(w, out_dir)            # replay directories: background days, the pass day, the next day
    write_config(w, path, phase=...)   # the digestd.toml of one phase (setup, cold, warm)

The real papers are taken in the order they were announced. The newest ``papers`` of them are the
day that is delivered (one list, as rss.arxiv.org would serve it); everything older stays in its own
real day and is the background that readers voted on before the pass. The next day (the warm pass)
lists the same papers again: the data holds too few real papers for a second fresh day of this size,
and a day without new papers keeps the corpus (so every stored profile stays valid) exactly as a
fresh day would under a space that is not refitted; its readers are excluded from what they got.

Readers: each has 1-3 interests. An interest starts from a real background paper: a two-word phrase
of its title is a keyword, and its votes are papers of the background that mention the phrase's
rarer word (up) and a few papers of other fields (down). Nothing is random beyond ``seed``.
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "arxiv-daily"

# The pass runs on a Monday after the real lists end; the setup fetch is more than a week before it,
# so no background paper is new enough to count as today's (a first digest looks back 7 days).
SETUP_AT = dt.datetime(2025, 5, 31, 12, 0, tzinfo=dt.timezone.utc)
COLD_AT = dt.datetime(2025, 6, 9, 8, 0, tzinfo=dt.timezone.utc)
WARM_AT = COLD_AT + dt.timedelta(days=1)
SEND_AT = "06:00"
DIGEST_SIZE = 10
MIN_BACKGROUND = 500
WARM_VOTER_SHARE = 10          # every 10th reader votes between the passes

_WORD = re.compile(r"[A-Za-z][A-Za-z\-]{3,}")
_STOP = frozenset("""
with from that this their using based towards toward into over under through via than more most less
large small model models learning network networks method methods approach approaches data task tasks
improving improved efficient effective novel framework frameworks study analysis system systems beyond
what when where which while does better make making multi single general generalized towards about during
think across without within between among only also both each
""".split())


def _demo_lists():
    """scripts/make_demo_lists.py: the one writer of real-shaped rss.arxiv.org lists (and its reader)."""
    spec = importlib.util.spec_from_file_location("make_demo_lists", REPO / "scripts" / "make_demo_lists.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@dataclass
class Reader:
    id: str
    email: str
    keywords: list[str]
    votes: list[tuple[str, str]]          # (arXiv id, "up" | "down"), oldest first


@dataclass
class Workload:
    users: int
    papers: int
    seed: int
    background: dict[str, list[dict]]     # real day (YYYY-MM-DD) -> papers, as read from the data
    day: list[dict]                       # the delivered day's papers
    readers: list[Reader] = field(default_factory=list)

    @property
    def cold_day(self) -> str:
        return COLD_AT.date().isoformat()

    @property
    def warm_day(self) -> str:
        return WARM_AT.date().isoformat()

    def background_papers(self) -> list[dict]:
        return [p for day in sorted(self.background) for p in self.background[day]]

    def warm_voters(self) -> list[Reader]:
        return self.readers[::WARM_VOTER_SHARE]


def real_papers(data: Path = DATA) -> list[tuple[str, dict]]:
    """Every usable real paper once, as (day, paper), in announcement order."""
    mod = _demo_lists()
    seen: set[str] = set()
    out = []
    for path in sorted(data.glob("????-??-??.jsonl")):
        for p in mod.read_day(path):
            if p["id"] not in seen and p.get("title") and p.get("summary"):
                seen.add(p["id"])
                out.append((path.stem, p))
    return out


def build_workload(users: int, papers: int, seed: int = 0, data: Path = DATA) -> Workload:
    pool = real_papers(data)
    if papers > len(pool) - MIN_BACKGROUND:
        raise SystemExit(f"--papers {papers}: the real data has {len(pool)} papers and the background needs "
                         f"{MIN_BACKGROUND}; use at most {len(pool) - MIN_BACKGROUND}")
    background: dict[str, list[dict]] = defaultdict(list)
    for day, p in pool[:len(pool) - papers]:
        background[day].append(p)
    w = Workload(users=users, papers=papers, seed=seed, background=dict(background),
                 day=[p for _, p in pool[len(pool) - papers:]])
    w.readers = make_readers(w.background_papers(), users, random.Random(seed))
    return w


def _content_words(text: str) -> list[str]:
    return [t for t in (m.lower() for m in _WORD.findall(text)) if t not in _STOP]


@dataclass
class _Index:
    """Which background papers mention a word, and which belong to a field (primary category)."""

    papers: list[dict]
    by_word: dict[str, list[int]]
    df: Counter
    primary: list[str]
    by_field: dict[str, list[int]]

    @classmethod
    def of(cls, papers: list[dict]) -> "_Index":
        by_word: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(papers):
            for w in set(_content_words(p["title"] + " " + p["summary"])):
                by_word[w].append(i)
        primary = [p["categories"][0] for p in papers]
        by_field: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(primary):
            by_field[c].append(i)
        return cls(papers, by_word, Counter({w: len(ix) for w, ix in by_word.items()}), primary, by_field)


def _interest(ix: _Index, rng: random.Random, n_up: int) -> tuple[str, list[int], str]:
    """One interest: (keyword phrase, liked papers, field), grown from one real background paper."""
    anchor = rng.randrange(len(ix.papers))
    title = _content_words(ix.papers[anchor]["title"])
    if len(title) >= 2:
        j = rng.randrange(len(title) - 1)
        phrase = title[j:j + 2]
    else:
        phrase = title or _content_words(ix.papers[anchor]["summary"])[:1]
    # The rarer word of the phrase says what the interest is about (a common one would match half
    # the list), unless it is too rare to give the votes; then the paper's own field fills up.
    usable = [w for w in phrase if ix.df[w] > n_up] or phrase
    rare = min(usable, key=lambda w: (ix.df[w], w)) if usable else None
    related = [i for i in ix.by_word.get(rare, []) if i != anchor] if rare else []
    if len(related) < n_up - 1:
        related += [i for i in ix.by_field[ix.primary[anchor]] if i != anchor and i not in related]
    return " ".join(phrase), [anchor, *rng.sample(related, min(n_up - 1, len(related)))], ix.primary[anchor]


def make_readers(background: list[dict], n: int, rng: random.Random) -> list[Reader]:
    ix = _Index.of(background)
    fields_all = sorted(ix.by_field)
    readers = []
    for r in range(n):
        n_interests = rng.choice((1, 1, 2, 2, 2, 3))
        n_votes = rng.randint(10, 30)
        keywords: list[str] = []
        ups: list[int] = []
        fields: set[str] = set()
        n_down = 0
        for k in range(n_interests):
            share = n_votes // n_interests + (1 if k < n_votes % n_interests else 0)
            n_up = max(1, round(share * 0.8))
            keyword, liked, field_ = _interest(ix, rng, n_up)
            keywords.append(keyword)
            ups.extend(liked)
            fields.add(field_)
            n_down += share - n_up
        ups = list(dict.fromkeys(ups))
        # Overlapping interests or a tiny field leave a reader short: any background paper tops them up.
        while len(ups) < n_votes - n_down:
            i = rng.randrange(len(background))
            if i not in ups:
                ups.append(i)
        # Thumbs-down: papers of fields the reader has no interest in.
        others = [c for c in fields_all if c not in fields] or fields_all
        downs: list[int] = []
        while len(downs) < max(1, n_down):
            i = rng.choice(ix.by_field[rng.choice(others)])
            if i not in ups and i not in downs:
                downs.append(i)
        votes = [(background[i]["id"], "up") for i in ups] + [(background[i]["id"], "down") for i in downs]
        rng.shuffle(votes)
        readers.append(Reader(id=f"r{r:05d}", email=f"r{r:05d}@readers.example",
                              keywords=list(dict.fromkeys(keywords)), votes=votes))
    return readers


def write_lists(w: Workload, root: Path) -> dict[str, Path]:
    """rss.arxiv.org Atom lists: ``background/`` (the real days), ``<cold day>/`` and ``<warm day>/``."""
    mod = _demo_lists()
    dirs = {"background": root / "background", "cold": root / w.cold_day, "warm": root / w.warm_day}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for day, papers in w.background.items():
        (dirs["background"] / f"{day}.atom").write_text(mod.atom_feed(papers, day), encoding="utf-8")
    (dirs["cold"] / f"{w.cold_day}.atom").write_text(mod.atom_feed(w.day, w.cold_day), encoding="utf-8")
    (dirs["warm"] / f"{w.warm_day}.atom").write_text(mod.atom_feed(w.day, w.warm_day), encoding="utf-8")
    return dirs


def _toml_list(items: list[str]) -> str:
    # JSON strings with ASCII escapes are valid TOML basic strings.
    return "[" + ", ".join(json.dumps(s, ensure_ascii=True) for s in items) + "]"


def write_config(w: Workload, path: Path, *, phase: str, lists: dict[str, Path], data_dir: Path,
                 smtp_port: int | None, backend: str | None = None) -> Path:
    """The config of one phase. Only the sources differ: setup fetches the background, each pass
    fetches its own day (a real source serves today's list, not every saved one)."""
    lines = ["[digestd]", f"data_dir = {json.dumps(str(data_dir))}", 'base_url = "https://digest.bench.example"', ""]
    # By default the shipped ranker (no [ranking] table): with the sentence encoder, the cold pass's
    # fetch stage includes encoding the day's papers, once, as `run --once` does after a fetch.
    if backend:
        lines += ["[ranking]", f"backend = {json.dumps(backend)}", ""]
    if smtp_port is not None:
        lines += ["[smtp]", 'host = "127.0.0.1"', f"port = {smtp_port}", 'security = "none"',
                  'from = "Paper digest <digest@bench.example>"', ""]
    for name, enabled in (("background", phase == "setup"), ("cold", phase == "cold"), ("warm", phase == "warm")):
        lines += ["[[sources]]", f'name = "{name}"', 'type = "replay"', f"path = {json.dumps(str(lists[name]))}",
                  f"enabled = {'true' if enabled else 'false'}", ""]
    days = _toml_list(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
    for r in w.readers:
        lines += ["[[users]]", f'id = "{r.id}"', f'email = "{r.email}"', 'timezone = "UTC"', f'send_at = "{SEND_AT}"',
                  f"days = {days}", f"digest_size = {DIGEST_SIZE}", f"keywords = {_toml_list(r.keywords)}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
