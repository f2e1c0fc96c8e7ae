"""From nothing to a config: `digestd init`, `--version`, quiet logs, progress lines."""
from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from digestd.config import load_config
from digestd.onboarding import Answers, ask

REPO = Path(__file__).resolve().parent.parent


def digestd(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DIGESTD_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "digestd", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)


def test_init_writes_a_valid_commented_starter_config_from_flags(tmp_path):
    r = digestd("init", "--email", "ann@example.org", "--name", "Ann", "--interests", "dense retrieval, RLHF",
                "--categories", "cs.IR,cs.CL", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "digestd.toml").read_text()
    assert text.count("\n#") >= 5
    s = load_config(str(tmp_path / "digestd.toml"))
    assert s.users[0].email == "ann@example.org" and s.users[0].name == "Ann"
    assert s.users[0].keywords == ["dense retrieval", "RLHF"]
    assert s.source("arxiv").categories == ["cs.IR", "cs.CL"]
    assert digestd("check-config", cwd=tmp_path).returncode == 0


def test_init_never_overwrites_without_force(tmp_path):
    (tmp_path / "digestd.toml").write_text("# mine\n")
    r = digestd("init", "--email", "ann@example.org", cwd=tmp_path)
    assert r.returncode != 0 and "--force" in r.stderr and "digestd.toml" in r.stderr
    assert (tmp_path / "digestd.toml").read_text() == "# mine\n"
    assert digestd("init", "--email", "ann@example.org", "--force", cwd=tmp_path).returncode == 0
    assert "ann@example.org" in (tmp_path / "digestd.toml").read_text()


def test_init_without_an_email_and_no_terminal_says_which_flag_is_missing(tmp_path):
    r = digestd("init", "--out", "x.toml", cwd=tmp_path)
    assert r.returncode != 0 and "--email" in r.stderr
    assert not (tmp_path / "x.toml").exists()


def test_init_asks_for_email_name_interests_and_categories_in_a_terminal(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(tmp_path)
        os.execve(sys.executable, [sys.executable, "-m", "digestd", "init"], env)
    answers = [b"ann@example.org\n", b"Ann\n", b"graph neural networks\n", b"\n"]
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if out.rstrip().endswith(b":") or out.rstrip().endswith(b"]:"):
            if answers:
                os.write(fd, answers.pop(0))
                out += b"\n"
    os.waitpid(pid, 0)
    assert b"Your email address" in out and b"arXiv categories" in out
    s = load_config(str(tmp_path / "digestd.toml"))
    assert s.users[0].keywords == ["graph neural networks"] and s.source("arxiv").categories == ["cs.LG", "cs.CL"]


def test_the_questions_fill_only_what_the_flags_left_out():
    asked = []
    a = ask(Answers(email="ann@example.org"), lambda q: asked.append(q) or "x, y")
    assert not any("email" in q for q in asked) and a.interests == ["x", "y"]


def test_version_prints_the_installed_version(tmp_path):
    r = digestd("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("digestd ")


def test_a_command_logs_warnings_only_unless_verbose(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "2025-05-19.json").write_text((REPO / "examples/lists/hf/2025-05-19.json").read_text())
    (tmp_path / "digestd.toml").write_text('[[sources]]\nname = "demo"\ntype = "replay"\npath = "lists"\n')
    quiet = digestd("fetch", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert " INFO " not in quiet.stderr
    assert quiet.stdout.startswith("demo 2025-05-19: 25 papers")      # a plain line, no bar, when piped
    assert "\x1b[" not in quiet.stdout
    loud = digestd("-v", "fetch", "--date", "2025-05-19", cwd=tmp_path)
    assert " INFO " in loud.stderr


def test_fetch_in_a_terminal_shows_a_progress_bar(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "2025-05-19.json").write_text((REPO / "examples/lists/hf/2025-05-19.json").read_text())
    (tmp_path / "digestd.toml").write_text('[[sources]]\nname = "demo"\ntype = "replay"\npath = "lists"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color", "COLUMNS": "100"}
    env.pop("DIGESTD_CONFIG", None)
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(tmp_path)
        os.execve(sys.executable, [sys.executable, "-m", "digestd", "fetch"], env)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    text = out.decode("utf-8", "replace")
    assert "fetching lists" in text and "1/1" in text          # the bar, done
    assert "demo 2025-05-19: 25 papers" in text
