"""Private feeds under load: a real `digestd run` process, driven from outside by wrk.

Sets up the bundled demo (replayed lists, four readers), delivers one digest each with
`run --once`, starts the daemon on a free loopback port and measures two requests with wrk:
  - a conditional GET that the feed has not changed (If-None-Match: its ETag) -> 304
  - a full feed, gzip accepted -> 200
`python benchmarks/bench_feeds.py [--quick]`; `make bench` imports `run(quick)`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
READER = "alice"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp: Path, port: int) -> Path:
    text = (REPO / "examples" / "demo.toml").read_text()
    text = text.replace('data_dir = "../var"', f'data_dir = "{tmp / "var"}"')
    text = text.replace('path = "lists/', f'path = "{REPO / "examples" / "lists"}/')
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    cfg = tmp / "demo.toml"
    cfg.write_text(text)
    return cfg


def _cli(cfg: Path, *args: str) -> str:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([PYTHON, "-m", "digestd", "--config", str(cfg), *args], cwd=REPO, env=env,
                          check=True, capture_output=True, text=True).stdout


def _wait_idle(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Until /healthz answers and the start-up catch-up is over: measure the server, not its warm-up."""
    deadline = time.monotonic() + timeout
    healthy = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"digestd run exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        if not healthy:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    healthy = r.status == 200
            except OSError:
                pass
        if healthy and "catch-up done" in log.read_text():
            return
        time.sleep(0.3)
    raise RuntimeError("digestd run did not become healthy and idle")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _wrk(url: str, headers: dict[str, str], seconds: int, connections: int) -> tuple[float, float]:
    """(requests/s, p99 latency in ms) from one wrk run; fails loudly on non-2xx/3xx answers."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True).stdout
    if "Non-2xx or 3xx responses" in out:
        raise RuntimeError("wrk saw error responses:\n" + out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    return rps, _ms(*p99.groups())


def run(quick: bool = False) -> dict:
    if not shutil.which("wrk"):
        print("!!! wrk is not installed (apt-get install -y wrk): bench_feeds SKIPPED !!!", flush=True)
        return {}
    seconds = 3 if quick else 10
    tmp = Path(tempfile.mkdtemp(prefix="digestd-bench-feeds-"))
    port = _free_port()
    cfg = _config(tmp, port)
    proc = None
    try:
        _cli(cfg, "run", "--once")            # fetch the demo lists, deliver one digest to every reader
        export = json.loads(_cli(cfg, "export", READER))
        url = export["feed_url"]
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        log = tmp / "run.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([PYTHON, "-m", "digestd", "--config", str(cfg), "run"], cwd=REPO, env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        _wait_idle(port, proc, log)
        with urllib.request.urlopen(url, timeout=10) as r:
            etag, size = r.headers["ETag"], len(r.read())
        entries = len(export["digests"][0]["papers"]) if export["digests"] else 0
        connections = 16
        r304 = _wrk(url, {"If-None-Match": etag}, seconds, connections)
        rfull = _wrk(url, {"Accept-Encoding": "gzip"}, seconds, connections)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"feed_304_rps": r304[0], "feed_full_rps": rfull[0],
              "feed_304_p99_ms": r304[1], "feed_full_p99_ms": rfull[1]}
    print(f"feed of {READER}: {entries} entries, {size} bytes uncompressed; wrk -t1 -c{connections} -d{seconds}s")
    print(f"{'request':<28}{'req/s':>10}{'p99 ms':>10}")
    print(f"{'304 (If-None-Match)':<28}{r304[0]:>10.0f}{r304[1]:>10.1f}")
    print(f"{'full feed (gzip accepted)':<28}{rfull[0]:>10.0f}{rfull[1]:>10.1f}")
    return result


if __name__ == "__main__":
    run(quick="--quick" in sys.argv[1:])
