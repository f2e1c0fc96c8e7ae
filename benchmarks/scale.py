"""Many readers, several `digestd run` processes, one PostgreSQL: the run at scale of issue 11.

    python -m benchmarks.scale --users 100000 --processes 2 --database postgresql+psycopg://postgres@127.0.0.1:5432

Builds the benchmark's readers (benchmarks/workload.py: real papers, keywords from real titles; no
votes, so every reader starts cold, as on a site's first day), stores the day's list with `digestd
fetch`, then starts the processes together with every reader due now and waits until every reader's
digest is sent. It creates the database ``digestd_scale`` (dropped first if it exists, kept after so
it can be looked at) and reports the wall time from start to the last digest, each process's peak
memory (VmHWM) and the database's size, as JSON on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from .smtp_sink import SmtpSink
from .workload import DIGEST_SIZE, _toml_list, build_workload, write_lists

REPO = Path(__file__).resolve().parent.parent
DB_NAME = "digestd_scale"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(w, path: Path, *, lists: Path, data_dir: Path, url: str, smtp_port: int, listen: str) -> None:
    lines = ["[digestd]", f"data_dir = {json.dumps(str(data_dir))}", 'base_url = "https://digest.bench.example"',
             f'database_url = "{url}"', f'listen = "{listen}"', 'log_level = "WARNING"', "sweep_seconds = 10", "",
             "[smtp]", 'host = "127.0.0.1"', f"port = {smtp_port}", 'security = "none"',
             'from = "Paper digest <digest@bench.example>"', "",
             "[[sources]]", 'name = "day"', 'type = "replay"', f"path = {json.dumps(str(lists))}", ""]
    days = _toml_list(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
    for r in w.readers:
        # 00:00 UTC: due now, whenever today the run starts.
        lines += ["[[users]]", f'id = "{r.id}"', f'email = "{r.email}"', 'timezone = "UTC"', 'send_at = "00:00"',
                  f"days = {days}", f"digest_size = {DIGEST_SIZE}", f"keywords = {_toml_list(r.keywords)}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--papers", type=int, default=2_000)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432",
                    help="a PostgreSQL server URL without a database name; %s is created there" % DB_NAME)
    ap.add_argument("--timeout", type=float, default=3600)
    a = ap.parse_args(argv)

    admin = sa.create_engine(f"{a.database}/postgres", isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as c:
        c.execute(sa.text(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
        c.execute(sa.text(f"CREATE DATABASE {DB_NAME}"))
    url = f"{a.database}/{DB_NAME}"
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    tmp = Path(tempfile.mkdtemp(prefix="digestd-scale-"))
    t = time.perf_counter()
    w = build_workload(users=a.users, papers=a.papers)
    lists = write_lists(w, tmp / "lists")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    day_dir = tmp / "lists" / "today"
    day_dir.mkdir()
    (lists["cold"] / f"{w.cold_day}.atom").rename(day_dir / f"{today}.atom")
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.pop("DIGESTD_CONFIG", None)
    result: dict = {"users": a.users, "papers": a.papers, "processes": a.processes}
    with SmtpSink() as sink:
        configs = []
        for n in range(a.processes):
            cfg = tmp / f"digestd{n}.toml"
            write_config(w, cfg, lists=day_dir, data_dir=tmp / "var", url=url, smtp_port=sink.port,
                         listen=f"127.0.0.1:{free_port()}")
            configs.append(cfg)
        result["build_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "digestd", "--config", str(configs[0]), "fetch"], cwd=REPO, env=env,
                       check=True, stdout=subprocess.DEVNULL, timeout=a.timeout)
        result["fetch_s"] = round(time.perf_counter() - t, 1)
        procs, logs = [], []
        t = time.perf_counter()
        for n, cfg in enumerate(configs):
            log = open(tmp / f"run{n}.log", "wb")
            logs.append(log)
            procs.append(subprocess.Popen([sys.executable, "-m", "digestd", "--config", str(cfg), "run"], cwd=REPO,
                                          env=env, stdout=subprocess.DEVNULL, stderr=log))
        peaks = [0.0] * len(procs)
        sent = 0
        try:
            while time.perf_counter() - t < a.timeout:
                time.sleep(2)
                for i, p in enumerate(procs):
                    if p.poll() is not None:
                        raise SystemExit(f"process {i} exited with {p.returncode}; log in {tmp}/run{i}.log")
                    peaks[i] = max(peaks[i], peak_rss_mb(p.pid))
                with engine.connect() as c:
                    try:
                        sent = c.execute(sa.text("SELECT count(*) FROM digests WHERE status = 'sent'")).scalar()
                        by = dict(c.execute(sa.text("SELECT split_part(claimed_by, '#', 1), count(*) FROM digests "
                                                    "WHERE status = 'sent' GROUP BY 1")).all())
                    except sa.exc.ProgrammingError:      # the tables are not there yet
                        continue
                if sent >= a.users:
                    break
            result["wall_s"] = round(time.perf_counter() - t, 1)
            result["sent"] = sent
            result["sent_by_process"] = by
            result["peak_rss_mb"] = [round(x) for x in peaks]
            result["smtp"] = sink.stats()
            with engine.connect() as c:
                result["database_mb"] = round(c.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
                                              / 2**20)
                result["tables_mb"] = {name: round(size / 2**20, 1) for name, size in c.execute(sa.text(
                    "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relkind = 'r' "
                    "AND relnamespace = 'public'::regnamespace ORDER BY 2 DESC LIMIT 6")).all()}
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(120)
                except subprocess.TimeoutExpired:
                    p.kill()
            for log in logs:
                log.close()
    engine.dispose()
    admin.dispose()
    result["logs"] = str(tmp)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
