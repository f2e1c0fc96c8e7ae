"""The served feed as a feed reader shows it: newsboat, over real HTTP on loopback."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from digestd import accounts
from digestd.mathtext import latex_to_unicode
from live_site import start_site

pytestmark = [
    pytest.mark.skipif(not shutil.which("newsboat"), reason="newsboat is not installed (apt-get install newsboat)"),
    pytest.mark.skipif(not shutil.which("tmux"), reason="tmux is not installed (apt-get install tmux): newsboat needs a terminal"),
]


@pytest.fixture
def site(tmp_path, smtp):
    _rec, port = smtp
    s = start_site(tmp_path, port, days=("2025-05-19", "2025-05-20"), size=5)
    yield s
    s.stop()


def screen(server: str) -> str:
    return subprocess.run(["tmux", "-L", server, "capture-pane", "-p"], capture_output=True, text=True).stdout


def wait_screen(server: str, pattern: str, timeout: float = 20) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = screen(server)
        if re.search(pattern, text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"newsboat never showed {pattern!r}:\n{screen(server)}")


def test_newsboat_lists_the_served_feed_newest_digest_first_in_rank_order(site, tmp_path):
    site.deliver("2025-05-19")
    site.deliver("2025-05-20")
    export = accounts.export_user(site.app, "alice")
    by_day = {d["date"]: d["papers"] for d in export["digests"]}
    papers = site.app.store.papers_by_keys(by_day["2025-05-20"] + by_day["2025-05-19"])
    expected = [latex_to_unicode(" ".join(papers[k].title.split())) for k in by_day["2025-05-20"] + by_day["2025-05-19"]]

    (tmp_path / "urls").write_text(export["feed_url"] + "\n")
    (tmp_path / "conf").write_text('refresh-on-startup yes\narticlelist-format "%4i %t"\n')
    server = f"digestd-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "HOME": str(tmp_path), "TERM": "xterm-256color"}
    subprocess.run(["tmux", "-L", server, "new-session", "-d", "-x", "250", "-y", "40",
                    f"newsboat -u {tmp_path}/urls -c {tmp_path}/cache.db -C {tmp_path}/conf"], check=True, env=env)
    try:
        wait_screen(server, r"\(10/10\)")
        subprocess.run(["tmux", "-L", server, "send-keys", "Enter"], check=True)
        text = wait_screen(server, r"Articles in feed")
    finally:
        subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True)
    shown = [m.group(1).strip() for m in re.finditer(r"^\s+\d+ (.+)$", text, re.M)]
    assert len(shown) == 10
    for title, want in zip(shown, expected):
        # newsboat shows the LaTeX-free title; it may cut a long one at the screen's edge.
        assert want.startswith(title.rstrip("…. ")[:60]) or title.startswith(want[:60]), (title, want)
