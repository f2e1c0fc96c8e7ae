from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import pytest

from digestd.config import SourceSettings
from digestd.errors import FetchError, ParseError
from digestd.sources import HttpClient, detect_format, fetch_source, list_days, parse_any

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent
LISTS = REPO / "examples" / "lists"
SHARED = REPO.parent / "shared" / "data" / "arxiv-daily"


@pytest.fixture
def replay_dir(tmp_path: Path) -> Path:
    d = tmp_path / "lists"
    d.mkdir()
    shutil.copy(DATA / "arxiv-cs.AI-2025-08-20.atom.xml", d / "2025-08-20.xml")
    shutil.copy(DATA / "hf-paper-2509.04664.json", d / "2025-09-08.json")
    (d / "README.md").write_text("not a list")
    (d / "2025-02-30.json").write_text("[]")
    return d


def test_it_detects_the_format_from_content_not_from_the_name():
    assert detect_format((DATA / "hf-paper-2509.04664.json").read_bytes()) == "hf"
    assert detect_format((DATA / "arxiv-cs.AI-2025-08-20.rss.xml").read_bytes()) == "arxiv"
    assert detect_format(b"\xef\xbb\xbf <rss version='2.0'><channel/></rss>") == "feed"
    with pytest.raises(ParseError, match="unknown list format"):
        parse_any(b"%PDF-1.5", source="demo")


def test_it_lists_the_days_it_has_lists_for(replay_dir):
    assert list_days(replay_dir) == [dt.date(2025, 8, 20), dt.date(2025, 9, 8)]
    assert list_days(replay_dir / "missing") == []


def test_it_replays_a_relative_directory_against_the_base_dir(replay_dir):
    settings = SourceSettings(name="demo", type="replay", path="lists", announce_types=["new"])
    client = HttpClient()
    arxiv_day = fetch_source(settings, dt.date(2025, 8, 20), client, base_dir=replay_dir.parent)
    hf_day = fetch_source(settings, dt.date(2025, 9, 8), client, base_dir=replay_dir.parent)
    assert len(arxiv_day.papers) == 41 and {p.announce_type for p in arxiv_day.papers} == {"new"}
    assert [p.key for p in hf_day.papers] == ["2509.04664"]


def test_a_day_without_a_file_has_no_papers(replay_dir):
    settings = SourceSettings(name="demo", type="replay", path=str(replay_dir))
    result = fetch_source(settings, dt.date(2025, 8, 23), HttpClient())
    assert result.papers == [] and result.source == "demo" and not result.not_modified


def test_a_missing_directory_is_a_fetch_error(tmp_path):
    settings = SourceSettings(name="demo", type="replay", path=str(tmp_path / "nope"))
    with pytest.raises(FetchError, match="replay directory not found"):
        fetch_source(settings, dt.date(2025, 8, 20), HttpClient())


def test_a_broken_saved_file_is_a_parse_error_naming_the_file(replay_dir):
    (replay_dir / "2025-08-21.atom").write_bytes(b"<feed><entry>")
    settings = SourceSettings(name="demo", type="replay", path=str(replay_dir))
    with pytest.raises(ParseError) as e:
        fetch_source(settings, dt.date(2025, 8, 21), HttpClient())
    assert "2025-08-21.atom" in str(e.value) and "source=demo" in str(e.value)


# -- the bundled demo lists ---------------------------------------------------------------------------

DEMO_FILES = sorted(p for p in LISTS.rglob("*") if p.is_file() and re.match(r"\d{4}-\d{2}-\d{2}\.", p.name))


def _real_ids(day: str) -> set[str] | None:
    f = SHARED / f"{day}.jsonl"
    if not f.exists():
        return None
    return {json.loads(line)["id"] for line in f.read_text(encoding="utf-8").splitlines() if line.strip()}


def test_the_demo_has_ten_days_of_arxiv_and_hugging_face_lists_and_stays_small():
    assert len(list_days(LISTS / "arxiv")) == 10 and list_days(LISTS / "arxiv") == list_days(LISTS / "hf")
    assert sum(p.stat().st_size for p in DEMO_FILES) < 3_000_000


@pytest.mark.parametrize("path", DEMO_FILES, ids=[f"{p.parent.name}/{p.name}" for p in DEMO_FILES])
def test_every_demo_list_parses_into_real_arxiv_papers(path):
    papers = parse_any(path.read_bytes(), ("new", "cross"), source=path.parent.name)
    assert papers
    assert all(re.fullmatch(r"\d{4}\.\d{4,5}", p.key) and p.title and p.abstract and p.authors for p in papers)
    assert all("\\" not in a for p in papers for a in p.authors)   # TeX accents decoded
    real = _real_ids(path.name[:10])
    if real is not None:
        assert {p.key for p in papers} <= real


def test_most_hugging_face_demo_papers_are_also_in_that_days_arxiv_list():
    for day in list_days(LISTS / "hf"):
        hf = {p.key for p in parse_any((LISTS / "hf" / f"{day}.json").read_bytes())}
        arxiv = {p.key for p in parse_any((LISTS / "arxiv" / f"{day}.atom").read_bytes(), ("new", "cross"))}
        assert len(hf & arxiv) >= 0.75 * len(hf) and hf - arxiv
