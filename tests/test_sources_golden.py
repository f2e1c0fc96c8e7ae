"""Parsing the recorded real responses gives exactly the output checked in beside them.

After an intended parser change, regenerate with ``DIGESTD_UPDATE_GOLDEN=1 pytest tests/test_sources_golden.py``
and review the diff of ``tests/data/*.expected.json``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path

import pytest

from digestd.sources import parse_arxiv_feed, parse_hf_daily

DATA = Path(__file__).parent / "data"
ALL_TYPES = ("new", "cross", "replace", "replace-cross")


def as_json(papers) -> list[dict]:
    def default(o):
        if isinstance(o, (dt.datetime, dt.date)):
            return o.isoformat()
        raise TypeError(type(o))
    return json.loads(json.dumps([dataclasses.asdict(p) for p in papers], default=default))


CASES = [
    ("arxiv-cs.AI-2025-08-20.atom.xml", lambda b: parse_arxiv_feed(b, ALL_TYPES, source="arxiv")),
    ("arxiv-cs.AI-2025-08-20.rss.xml", lambda b: parse_arxiv_feed(b, ALL_TYPES, source="arxiv")),
    ("hf-paper-2509.04664.json", lambda b: parse_hf_daily(b, source="hf")),
]


@pytest.mark.parametrize("name,parse", CASES, ids=[c[0] for c in CASES])
def test_it_parses_each_recorded_response_into_the_expected_papers(name, parse):
    got = as_json(parse((DATA / name).read_bytes()))
    expected_path = DATA / (name.rsplit(".", 1)[0] + ".expected.json")
    if os.environ.get("DIGESTD_UPDATE_GOLDEN"):
        expected_path.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    assert got == expected
