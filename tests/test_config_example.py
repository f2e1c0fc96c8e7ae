"""config.example.toml at the top level: every key of config.py, commented, and a valid config."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from digestd.config import documented_keys, load_config

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"
def section(text: str, table: str) -> str:
    start = re.search(rf"^(# )?(\[{re.escape(table)}\]|\[\[{re.escape(table)}\]\])$", text, re.M)
    assert start, f"config.example.toml has no [{table}] table"
    rest = text[start.end():]
    end = re.search(r"^(# )?\[", rest, re.M)
    return rest[:end.start()] if end else rest


def test_every_key_of_config_py_is_in_the_example_with_a_comment_above_it():
    text = EXAMPLE.read_text(encoding="utf-8")
    missing, bare = [], []
    for table, keys in documented_keys().items():
        body = section(text, table)
        for key in keys:
            m = re.search(rf"^(?:# )?{re.escape(key)} = .*$", body, re.M)
            if not m:
                missing.append(f"{table}.{key}")
            elif not body[:m.start()].rstrip("\n").rsplit("\n", 1)[-1].startswith("# "):
                bare.append(f"{table}.{key}")
    assert not missing, f"config.example.toml lacks: {missing}"
    assert not bare, f"config.example.toml keys without a comment: {bare}"


def test_the_example_is_what_the_generator_writes_and_a_valid_config():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "config_example.py")], capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": str(REPO)}).stdout
    assert out == EXAMPLE.read_text(encoding="utf-8"), "run: python scripts/config_example.py > config.example.toml"
    s = load_config(str(EXAMPLE))
    assert [u.id for u in s.users] == ["alice"] and {x.name for x in s.sources} == {"arxiv", "hf"}


def test_the_systemd_unit_reloads_the_config_with_sighup():
    unit = (REPO / "contrib" / "digestd.service").read_text()
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", unit, re.M)
    assert re.search(r"^ExecStart=.*digestd run$", unit, re.M)
