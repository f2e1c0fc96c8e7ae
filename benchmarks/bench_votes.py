"""Presses under load: a real `digestd run` process on the bundled demo, 500 presses sent at once.

Delivers one digest to each demo reader with `run --once`, starts the daemon on a free loopback
port, opens every 👍/👎 link of the delivered mails once (as a person does, to get the page's form),
then sends 500 presses of those forms at the same time and reports how many were answered 303, the
wall time and the latency percentiles. Every press is one upsert, so repeats of a link are fine.
`python benchmarks/bench_votes.py [--presses N]`. Not part of `make bench`.
"""
from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_feeds import PYTHON, REPO, _cli, _config, _free_port, _wait_idle  # noqa: E402


def _forms(base: str, outbox: Path) -> list[tuple[str, dict]]:
    links = []
    for path in sorted((outbox / "new").iterdir()):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        text = msg.get_body(("plain",)).get_content()
        links += re.findall(re.escape(base) + r"(/f/[\w.\-]+)", text)
    forms = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for link in dict.fromkeys(links):
            page = client.get(link).text
            vote = re.search(r'<form method="post" id="vote-(up|down)"', page).group(1)
            press = re.search(r'name="press" value="([^"]+)"', page).group(1)
            forms.append((link, {"vote": vote, "press": press}))
    return forms


async def _press_all(base: str, requests: list[tuple[str, dict]]) -> tuple[list, list[float], float]:
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:
        async def one(path, data):
            t = time.perf_counter()
            try:
                r = await client.post(path, data=data)
                return r.status_code, time.perf_counter() - t
            except httpx.HTTPError as e:
                return type(e).__name__, time.perf_counter() - t
        t0 = time.perf_counter()
        done = await asyncio.gather(*(one(p, d) for p, d in requests))
        return [s for s, _ in done], sorted(t for _, t in done), time.perf_counter() - t0


def run(presses: int = 500) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="digestd-bench-votes-"))
    port = _free_port()
    cfg = _config(tmp, port)
    base = f"http://127.0.0.1:{port}"
    proc = None
    try:
        _cli(cfg, "run", "--once")
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        log = tmp / "run.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([PYTHON, "-m", "digestd", "--config", str(cfg), "run"], cwd=REPO, env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        _wait_idle(port, proc, log)
        forms = _forms(base, tmp / "var" / "outbox")
        requests = [forms[i % len(forms)] for i in range(presses)]
        statuses, latencies, wall = asyncio.run(_press_all(base, requests))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    counts = {s: statuses.count(s) for s in set(statuses)}
    pct = {q: latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] * 1000 for q in (50, 99)}
    print(f"{presses} presses at once over {len(forms)} links (SQLite, one `digestd run`): answers {counts}")
    print(f"wall {wall:.2f} s ({presses / wall:.0f} presses/s); latency p50 {pct[50]:.0f} ms, p99 {pct[99]:.0f} ms")
    return {"presses": presses, "answers": counts, "wall_s": wall, "p50_ms": pct[50], "p99_ms": pct[99]}


if __name__ == "__main__":
    n = int(sys.argv[sys.argv.index("--presses") + 1]) if "--presses" in sys.argv else 500
    run(n)
