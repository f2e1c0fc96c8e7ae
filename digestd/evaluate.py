"""`digestd eval`: replay evaluation of the ranker against baselines on a user-ratings data set.

The protocol (training/test split per user, recall@N and nDCG@N) is in ``eval_protocol``, the
methods (the shipped ranker and the baselines) in ``eval_methods``; this module runs them and
reports. A user's ranking sees only that user's training ratings and the paper texts.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np

from .errors import DigestdError
from .eval_methods import (  # noqa: F401  (re-exported: the eval's public names live here too)
    BATCH_METHODS, DIGESTD_BATCH, METHODS, Context, DiskVectors, default_cache_dir, method_digestd, rank_digestd,
)
from .eval_protocol import (  # noqa: F401
    MAX_N, EvalDataError, Rating, UserCase, _parse_time, build_cases, curves, load_papers, load_ratings,
    split_users,
)
from .models import PaperText

ALL_METHODS = ("digestd", "digestd_tfidf", "random", "tfidf_centroid", "asl_svm", "zotero_emb")


def evaluate(papers: list[PaperText], cases: list[UserCase], methods: list[str], *, backend: str | None = None,
             err: TextIO = sys.stderr, params=None, progress: bool = True, cache_dir: str | Path | None = None,
             embedder=None) -> dict[str, dict[str, np.ndarray]]:
    """Per method: mean recall@N and nDCG@N curves for N = 1..MAX_N.

    ``cache_dir``: where paper embeddings are kept between runs (None: not kept). ``embedder``: the
    text encoder (default: the real model; tests pass a fake)."""
    ctx = Context(papers, backend, err, cache_dir=cache_dir, embedder=embedder, progress=progress,
                  bar=lambda label, total: _progress(err, progress, label, total, unit="papers", lines=True))
    results: dict[str, dict[str, np.ndarray]] = {}
    if backend == "embeddings" or "zotero_emb" in methods:
        # Embed first, timed on its own line: otherwise the first method to embed pays for all.
        t0 = time.perf_counter()
        enc = ctx.encoder()
        enc.papers(papers)
        if progress:
            where = f"the cache in {ctx.cache_dir}" if ctx.cache_dir else "no cache"
            print(f"embeddings: {len(papers)} papers, {enc.encoded} encoded, {enc.from_cache} from {where}, "
                  f"{time.perf_counter() - t0:.1f}s", file=err, flush=True)
    for name in methods:
        rec = np.zeros(MAX_N)
        nd = np.zeros(MAX_N)
        t0 = time.perf_counter()
        with _progress(err, progress, f"{name:>15}", len(cases)) as advance:
            for part, ranked in _rankings(ctx, name, cases, params):
                for case, ranking in zip(part, ranked):
                    r, g = curves(ranking, case.test)
                    rec += r
                    nd += g
                advance(len(part))
        m = max(1, len(cases))
        results[name] = {"recall": rec / m, "ndcg": nd / m, "seconds": time.perf_counter() - t0}
    return results


def _rankings(ctx: Context, name: str, cases: list[UserCase], params):
    """(cases, their rankings), a batch at a time for the methods that rank many users at once."""
    if name in BATCH_METHODS:
        for start in range(0, len(cases), DIGESTD_BATCH):
            part = cases[start:start + DIGESTD_BATCH]
            yield part, BATCH_METHODS[name](ctx, part, MAX_N, params)
        return
    fn = METHODS[name]
    for case in cases:
        yield [case], [fn(ctx, case, MAX_N)]


class _progress:
    """rich progress bar on stderr when it is a terminal; otherwise a single line at the end, or with
    ``lines`` a line per step (embedding takes minutes: a log should show it moving)."""

    def __init__(self, err: TextIO, enabled: bool, label: str, total: int, unit: str = "users",
                 lines: bool = False):
        self.err, self.enabled, self.label, self.total = err, enabled, label, total
        self.unit, self.lines, self.done = unit, lines, 0
        self.bar = None

    def __enter__(self):
        self.t0 = time.perf_counter()
        if self.enabled and getattr(self.err, "isatty", lambda: False)():
            from rich.progress import Progress
            self.bar = Progress(*Progress.get_default_columns(), _elapsed_column(), console=_console(self.err),
                                transient=True)
            self.bar.__enter__()
            task = self.bar.add_task(self.label, total=self.total)
            return lambda n=1: self.bar.advance(task, n)
        return self._line

    def _line(self, n: int = 1) -> None:
        self.done += n
        if self.enabled and self.lines:
            print(f"{self.label.strip()}: {self.done}/{self.total} {self.unit} "
                  f"({time.perf_counter() - self.t0:.0f}s)", file=self.err, flush=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        if self.enabled and exc[0] is None and not (self.lines and self.bar is None):
            print(f"{self.label.strip()}: {self.total} {self.unit} done", file=self.err, flush=True)
        return False


def _elapsed_column():
    from rich.progress import TimeElapsedColumn
    return TimeElapsedColumn()


def _console(fh: TextIO):
    from rich.console import Console
    return Console(file=fh, stderr=fh is sys.stderr)


def available_methods(backend: str | None) -> list[str]:
    from .rank.embeddings import installed      # not importing onnxruntime: a warm cache never needs it
    names = ["digestd", "random", "tfidf_centroid", "asl_svm"]
    if backend == "embeddings":
        names.insert(1, "digestd_tfidf")      # the light backend beside the default one
    if installed():
        names.append("zotero_emb")
    return names


BACKEND_LABEL = {"embeddings": "the embeddings backend (all-MiniLM-L6-v2, int8 ONNX, joined to the topics)",
                 "tfidf": "the tfidf backend (words and topics)"}


def format_table(results: dict, n_users: int, k: int, n: int, backend: str | None = None) -> str:
    about = f"; digestd = {BACKEND_LABEL.get(backend or 'tfidf', backend)}" if "digestd" in results else ""
    lines = [f"digestd eval: {n_users} users, K={k}, N={n}{about}",
             f"{'method':<16}{'recall@' + str(n):>12}{'nDCG@' + str(n):>12}{'vs asl_svm':>12}{'seconds':>10}"]
    base = results.get("asl_svm", {}).get("recall")
    for name, res in results.items():
        r, g = res["recall"][n - 1], res["ndcg"][n - 1]
        rel = f"{r / base[n - 1]:.2f}x" if base is not None and base[n - 1] > 0 else "-"
        lines.append(f"{name:<16}{r:>12.4f}{g:>12.4f}{rel:>12}{res['seconds']:>10.1f}")
    return "\n".join(lines)


def write_plot(results: dict, path: str, n_users: int, k: int) -> None:
    import matplotlib
    matplotlib.use("Agg")              # no display on a server; must precede pyplot
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ns = np.arange(1, MAX_N + 1)
    for name, res in results.items():
        ax.plot(ns, res["recall"], label=name, linewidth=2.2 if name == "digestd" else 1.4)
    ax.set_xlabel("N (papers in the digest)")
    ax.set_ylabel("recall@N")
    ax.set_title(f"Replay evaluation: {n_users} users, K={k} training likes")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def run(papers: str, ratings: str, *, k: int = 5, n: int = 20, json_path: str | None = None,
        plot_path: str | None = None, backend: str | None = None, methods: list[str] | None = None,
        out: TextIO = sys.stdout, err: TextIO = sys.stderr, users: str | None = None, params=None,
        cache_dir: str | Path | None = None, embedder=None) -> int:
    """Run the replay evaluation; print the table; return an exit code (0 ok, 2 bad input).
    ``cache_dir``: paper embeddings are kept there between runs; default ``default_cache_dir()``, "" none."""
    try:
        if k < 1 or n < 1 or n > MAX_N:
            raise EvalDataError(f"need K >= 1 and 1 <= N <= {MAX_N}")
        if backend not in (None, "auto", "tfidf", "embeddings"):
            raise EvalDataError(f"unknown backend {backend!r} (known: auto, tfidf, embeddings)")
        if backend in (None, "auto"):
            # The default install's ranker: the sentence encoder where it runs (a test's fake counts).
            from .rank.embeddings import resolve_backend
            backend = "embeddings" if embedder is not None else resolve_backend(backend)
        names = list(methods) if methods else available_methods(backend)
        unknown = [m for m in names if m not in METHODS]
        if unknown:
            raise EvalDataError(f"unknown method {unknown[0]!r} (known: {', '.join(ALL_METHODS)})")
        if embedder is None and (backend == "embeddings" or "zotero_emb" in names):
            from .rank.embeddings import INSTALL_HINT, installed
            if not installed():
                what = "--backend embeddings" if backend == "embeddings" else "the zotero_emb method"
                raise EvalDataError(f"{what} needs the sentence encoder: {INSTALL_HINT}")
        if plot_path:
            import importlib.util
            if importlib.util.find_spec("matplotlib") is None:      # said now, not after minutes of ranking
                raise EvalDataError("--plot needs matplotlib: pip install 'digestd[plot]'")
        if cache_dir is None:
            cache_dir = default_cache_dir()
        plist = load_papers(papers)
        rlist, missing = load_ratings(ratings, {p.key for p in plist})
        if missing:
            print(f"{ratings}: {missing} ratings name papers not in {papers}; ignored", file=err)
        cases = split_users(build_cases(rlist, k), users)
        if not cases:
            raise EvalDataError(f"{ratings}: no user has at least K+5 = {k + 5} positive ratings")
        t0 = time.perf_counter()
        with _single_threaded_blas():
            results = evaluate(plist, cases, names, backend=backend, err=err, params=params,
                               cache_dir=cache_dir or None, embedder=embedder)
    except EvalDataError as e:
        print(f"digestd eval: error: {e}", file=err)
        return 2
    except DigestdError as e:            # e.g. the embeddings backend asked for but not installed
        print(f"digestd eval: error: {e}", file=err)
        return 2
    print(format_table(results, len(cases), k, n, backend), file=out)
    print(f"total {time.perf_counter() - t0:.1f}s", file=err)
    if json_path:
        doc = {"users": len(cases), "K": k, "N": n, "backend": backend or "tfidf",
               "methods": {m: {"recall": round(float(r["recall"][n - 1]), 6),
                               "ndcg": round(float(r["ndcg"][n - 1]), 6)} for m, r in results.items()}}
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
    if plot_path:
        write_plot(results, plot_path, len(cases), k)
    return 0


def _single_threaded_blas():
    """Per-user work is many small matrix products: threaded BLAS only adds contention (the CLI sets
    the same through the environment; this covers `python -m digestd.evaluate` and library calls)."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(1, user_api="blas")
    except Exception:                    # threadpoolctl is a dependency; be safe anyway
        import contextlib
        return contextlib.nullcontext()


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m digestd.evaluate`); the CLI wires the same `run`."""
    import argparse
    ap = argparse.ArgumentParser(prog="digestd eval")
    ap.add_argument("--papers", required=True)
    ap.add_argument("--ratings", required=True)
    ap.add_argument("-K", type=int, default=5)
    ap.add_argument("-N", type=int, default=20)
    ap.add_argument("--json")
    ap.add_argument("--plot")
    ap.add_argument("--backend")
    ap.add_argument("--methods", help="comma-separated subset of " + ",".join(ALL_METHODS))
    ap.add_argument("--users", choices=["A", "B"], help="evaluate one fixed half of the users")
    ap.add_argument("--cache-dir", help="where paper embeddings are kept between runs ('' : nowhere)")
    a = ap.parse_args(argv)
    return run(a.papers, a.ratings, k=a.K, n=a.N, json_path=a.json, plot_path=a.plot, backend=a.backend,
               methods=a.methods.split(",") if a.methods else None, users=a.users, cache_dir=a.cache_dir)


if __name__ == "__main__":
    sys.exit(main())
