"""The targets of the delivery benchmark and the table `make bench` prints. Targets are reported,
never enforced: a miss is a finding, not a failure."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .passes import STAGES

FULL = (10_000, 2_000)
GB = 1.5e9 / 2**20          # 1.5 GB in MiB, the unit of peak_rss_mb (ru_maxrss / 1024)


@dataclass(frozen=True)
class Target:
    label: str
    key: Callable[[dict], float | None]
    limit: float
    at_most: bool                     # True: value <= limit passes; False: value >= limit passes
    applies: Callable[[dict], bool]
    unit: str


def _small(r: dict) -> dict | None:
    return r.get("small") if r.get("small") else None


TARGETS = [
    Target("cold pass 10,000 x 2,000, to SMTP hand-off", lambda r: r["end_to_end_s"], 90, True,
           lambda r: (r["users"], r["papers"]) == FULL, "s"),
    Target("cold pass peak RSS, with its render workers", lambda r: r["peak_rss_mb"], GB, True,
           lambda r: (r["users"], r["papers"]) == FULL, "MiB"),
    Target("warm pass (a tenth voted)", lambda r: r["warm_s"], 45, True,
           lambda r: (r["users"], r["papers"]) == FULL and r["warm_s"] is not None, "s"),
    Target("cold pass 1,000 readers", lambda r: r["end_to_end_s"] if r["users"] == 1000 else _small(r)["end_to_end_s"],
           15, True, lambda r: r["users"] == 1000 or (_small(r) or {}).get("users") == 1000, "s"),
    Target("asl_ratio (arxiv-sanity-lite / digestd per reader)", lambda r: r["asl_ratio"], 10, False,
           lambda r: r["asl_ratio"] is not None, "x"),
]


def judge(result: dict) -> list[dict]:
    rows = []
    for t in TARGETS:
        if not t.applies(result):
            rows.append({"target": t.label, "value": None, "limit": t.limit, "unit": t.unit, "status": "n/a"})
            continue
        v = t.key(result)
        ok = v is not None and (v <= t.limit if t.at_most else v >= t.limit)
        rows.append({"target": t.label, "value": v, "limit": t.limit, "unit": t.unit,
                     "status": "pass" if ok else "miss"})
    return rows


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
    return f"{v} {unit}".strip()


def table(result: dict) -> str:
    lines = [f"delivery pass: {result['users']:,} readers x {result['papers']:,} papers "
             f"({result.get('driver', '?')})", ""]
    lines.append(f"{'target':<52}{'measured':>14}{'target':>14}  result")
    for row in result["targets"]:
        op = "<=" if any(t.label == row["target"] and t.at_most for t in TARGETS) else ">="
        lines.append(f"{row['target']:<52}{_fmt(row['value'], row['unit']):>14}"
                     f"{op + ' ' + _fmt(float(row['limit']), row['unit']):>14}  {row['status']}")
    lines += ["", f"{'stage (cold pass)':<22}{'seconds':>10}{'warm':>10}"]
    warm = (result.get("warm") or {}).get("timings", {})
    outside = set(result["cold"].get("timed_outside", []))
    for s in STAGES:
        mark = " (timed outside the pass)" if s in outside else ""
        lines.append(f"{s:<22}{_fmt(result[f'{s}_s']):>10}{_fmt(warm.get(s)):>10}{mark}")
    lines.append(f"{'whole pass':<22}{_fmt(result['end_to_end_s']):>10}{_fmt(result['warm_s']):>10}")
    if result.get("encode_s"):
        # The daemon encodes a day's papers right after their fetch, hours before the digests are due.
        lines.append(f"{'  without encode':<22}{_fmt(result['end_to_end_s'] - result['encode_s']):>10}"
                     "            (the daemon encodes at the fetch, before send_at)")
    lines += ["", f"scores/s {_fmt(result['scores_per_s'])}   emails/s {_fmt(result['emails_per_s'])}   "
              f"peak RSS {_fmt(result['peak_rss_mb'], 'MiB')}"
              + (f" (pass {_fmt(result['pass_rss_mb'], 'MiB')} + {result['render_workers']} render workers "
                 f"{_fmt(result['workers_rss_mb'], 'MiB')})" if result.get("render_workers") else "")
              + f"   asl_ratio {_fmt(result['asl_ratio'])}"
              + (f" ({result['asl_ratio_basis']})" if result.get("asl_ratio_basis") else ""),
              f"every digest arrived at the SMTP sink: {'yes' if result['verified'] else 'NO'}"]
    feeds = {k: v for k, v in result.items() if k.startswith("feed_")}
    if feeds:
        lines.append("feeds: " + "   ".join(f"{k} {_fmt(v)}" for k, v in feeds.items()))
    return "\n".join(lines)
