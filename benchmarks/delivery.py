"""The delivery pass at N readers x M papers: setup, the cold pass, votes, the warm pass, the baseline.

    result = run_delivery(users=10_000, papers=2_000, seed=0, asl_sample=300, work=Path(...))

Every phase runs in a child process (``benchmarks.passes``), so a pass's peak RSS is its own; the
SMTP sink runs in another (``benchmarks.smtp_sink``), so its CPU is not the pass's. After each pass
the sink's counts say whether every digest arrived.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .passes import STAGES
from .smtp_sink import SmtpSink
from .workload import COLD_AT, SETUP_AT, WARM_AT, build_workload, write_config, write_lists

REPO = Path(__file__).resolve().parent.parent
RANK_STAGES = ("train", "score", "select")     # digestd's ranking, compared with arxiv-sanity-lite's


def child(module: str, *args: str, out: Path) -> dict:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    subprocess.run([sys.executable, "-m", module, *args, "--out", str(out)], cwd=REPO, env=env, check=True)
    return json.loads(out.read_text())


def phase(name: str, kind: str, config: Path, at: dt.datetime, work: Path, *args: str) -> dict:
    return child("benchmarks.passes", kind, "--config", str(config), "--at", at.isoformat(),
                 "--log", str(work / "digestd.log"), *args, out=work / f"{name}.json")


def _arrived(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in ("messages", "bytes")}


def measured_pass(work: Path, name: str, config: Path, at: dt.datetime, sink: SmtpSink, users: int) -> dict:
    before = sink.stats()
    result = phase(name, "pass", config, at, work)
    result["received"] = _arrived(before, sink.stats())
    sent = result["outcomes"].get("sent", 0)
    # Verified: every reader's digest was handed off and the sink holds exactly those messages.
    result["verified"] = sent == users and result["received"]["messages"] == users
    return result


def run_delivery(users: int, papers: int, seed: int, work: Path, *, asl_sample: int = 300,
                 warm: bool = True, log=print, backend: str | None = None) -> dict:
    """``backend``: the ranking backend of the readers' config; None: the shipped default."""
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    w = build_workload(users, papers, seed)
    lists = write_lists(w, work / "lists")
    (work / "votes.json").write_text(json.dumps({r.id: r.votes for r in w.readers}))
    (work / "warm-voters.json").write_text(json.dumps([r.id for r in w.warm_voters()]))
    log(f"workload: {users} readers, {papers} papers today, {len(w.background_papers())} in the background "
        f"({time.perf_counter() - t:.1f} s)")
    out: dict = {"users": users, "papers": papers, "seed": seed, "background_papers": len(w.background_papers()),
                 "backend": backend or "default (auto)"}
    with SmtpSink() as sink:
        configs = {p: write_config(w, work / f"{p}.toml", phase=p, lists=lists, data_dir=work / "var",
                                       smtp_port=sink.port, backend=backend) for p in ("setup", "cold", "warm")}
        t = time.perf_counter()
        setup = phase("setup", "setup", configs["setup"], SETUP_AT, work, "--votes", str(work / "votes.json"))
        log(f"setup: {setup['fetched_papers']} background papers, {setup['votes']} votes "
            f"({time.perf_counter() - t:.1f} s, not measured)")
        cold = measured_pass(work, "cold", configs["cold"], COLD_AT, sink, users)
        log(f"cold pass: {cold['wall_s']:.1f} s, {cold['received']['messages']} messages arrived")
        out["cold"] = cold
        if warm:
            voted = phase("vote", "vote", configs["warm"], COLD_AT + dt.timedelta(hours=2), work,
                          "--users", str(work / "warm-voters.json"), "--day", COLD_AT.date().isoformat())
            out["warm_votes"] = voted["votes"]
            out["warm_voters"] = len(w.warm_voters())
            hot = measured_pass(work, "warm", configs["warm"], WARM_AT, sink, users)
            log(f"warm pass: {hot['wall_s']:.1f} s, {hot['received']['messages']} messages arrived")
            out["warm"] = hot
    if asl_sample:
        t = time.perf_counter()
        # digestd's side comes from the cold pass's stages; only a pass without them needs it timed here.
        ours = [] if all(out["cold"]["timings"].get(s) is not None for s in RANK_STAGES) else ["--with-digestd"]
        out["asl"] = child("benchmarks.asl", "--users", str(users), "--papers", str(papers), "--seed", str(seed),
                           "--sample", str(asl_sample), *ours, out=work / "asl.json")
        log(f"arxiv-sanity-lite baseline: {out['asl']['asl_per_user_s'] * 1000:.0f} ms per user "
            f"({time.perf_counter() - t:.1f} s)")
    return out


def summary(d: dict) -> dict:
    """The flat keys of bench-results.json from one ``run_delivery`` result."""
    cold, warm, asl = d["cold"], d.get("warm"), d.get("asl")
    st = cold["timings"]
    users, papers = d["users"], d["papers"]
    out = {"users": users, "papers": papers, "backend": d.get("backend"), "end_to_end_s": cold["wall_s"],
           "warm_s": warm["wall_s"] if warm else None,
           # The pass and its render workers, which run beside it: the machine's memory holds both.
           "peak_rss_mb": cold["peak_rss_mb"] + cold.get("workers_rss_mb", 0),
           "pass_rss_mb": cold["peak_rss_mb"], "workers_rss_mb": cold.get("workers_rss_mb", 0),
           "render_workers": cold.get("render_workers", 0),
           "warm_peak_rss_mb": warm["peak_rss_mb"] if warm else None,
           "scores_per_s": users * papers / st["score"] if st.get("score") else None,
           "emails_per_s": cold["received"]["messages"] / st["smtp"] if st.get("smtp") else None}
    out.update({f"{s}_s": st.get(s) for s in STAGES})
    rank_s = [st.get(s) for s in RANK_STAGES]
    ours, basis = None, None
    if all(v is not None for v in rank_s):
        ours, basis = sum(rank_s) / users, "cold pass stages (train + score + select) per reader"
    elif asl and asl.get("digestd_per_user_s"):
        ours, basis = asl["digestd_per_user_s"], "rank.train + rank.select per reader, same sample"
    out["asl_per_user_s"] = asl["asl_per_user_s"] if asl else None
    out["digestd_rank_per_user_s"] = ours
    out["asl_ratio"] = asl["asl_per_user_s"] / ours if asl and ours else None
    out["asl_ratio_basis"] = basis
    out["verified"] = cold["verified"] and (warm["verified"] if warm else True)
    out["cold"] = cold
    out["warm"] = warm
    out["asl"] = asl
    out["workload"] = {k: d.get(k) for k in ("seed", "background_papers", "warm_voters", "warm_votes")}
    return out
