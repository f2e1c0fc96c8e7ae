"""`digestd eval`: replay evaluation of the ranker against baselines on a user-ratings data set.

Protocol (issue 4), for each user with at least K+5 positive ratings:
  training  = the user's K earliest positives + their negatives up to the K-th positive's time
  test      = the user's later positives
  candidates = every paper of P except that user's training papers
  recall@N  = hits in the top N / min(N, |test|);  nDCG@N with binary gains; both averaged over users.
A user's ranking sees only that user's training ratings and the paper texts.

Methods:
  digestd         the shipped ranker (rank.train + rank.select, explore off, no threshold cut)
  random          seeded shuffle
  tfidf_centroid  cosine to the mean TF-IDF vector of the liked papers
  asl_svm         arxiv-sanity-lite: TF-IDF words+bigrams, LinearSVC(C=0.01, balanced), liked vs all else
  zotero_emb      zotero-arxiv-daily: all-MiniLM-L6-v2 cosine to liked papers, newer likes weighted more
                  (only when the embeddings extra is installed)
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

import numpy as np

from .errors import DigestdError
from .models import PaperText, ProfileInput, Vote

ALL_METHODS = ("digestd", "random", "tfidf_centroid", "asl_svm", "zotero_emb")
MAX_N = 50                      # the plot's range, and how deep every ranking is computed


class EvalDataError(DigestdError):
    """An input file of `digestd eval` is missing or malformed (message names file and line)."""


@dataclass
class Rating:
    user: str
    paper: str
    value: int
    at: dt.datetime
    line: int


@dataclass
class UserCase:
    user: str
    train_pos: list[Rating]
    train_neg: list[Rating]
    test: set[str]

    @property
    def train_keys(self) -> set[str]:
        return {r.paper for r in self.train_pos} | {r.paper for r in self.train_neg}


# -- loading ---------------------------------------------------------------------------------

def load_papers(path: str) -> list[PaperText]:
    papers: list[PaperText] = []
    seen: set[str] = set()
    try:
        fh = open(path, encoding="utf-8")
    except OSError as e:
        raise EvalDataError(f"{path}: cannot read papers file: {e.strerror or e}") from e
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise EvalDataError(f"{path}:{n}: not a JSON object: {e.msg}") from e
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), (str, int)) or not obj.get("title"):
                raise EvalDataError(f"{path}:{n}: a paper needs \"id\" and \"title\"")
            key = str(obj["id"])
            if key in seen:
                continue
            seen.add(key)
            authors = obj.get("authors") or []
            if isinstance(authors, str):
                authors = [a.strip() for a in authors.split(",") if a.strip()]
            papers.append(PaperText(key=key, title=str(obj["title"]),
                                    abstract=str(obj.get("abstract") or obj.get("summary") or ""),
                                    authors=[str(a) for a in authors]))
    if not papers:
        raise EvalDataError(f"{path}: no papers")
    return papers


def _parse_time(s: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(s.strip().replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def load_ratings(path: str, known: set[str]) -> tuple[list[Rating], int]:
    """Ratings on papers of P; returns (ratings, how many named a paper not in P)."""
    out: list[Rating] = []
    unknown = 0
    try:
        fh = open(path, encoding="utf-8", newline="")
    except OSError as e:
        raise EvalDataError(f"{path}: cannot read ratings file: {e.strerror or e}") from e
    with fh:
        reader = csv.reader(fh)
        for n, row in enumerate(reader, 1):
            if not row or not "".join(row).strip():
                continue
            if n == 1 and row[0].strip() == "user_id":
                continue
            if len(row) != 4:
                raise EvalDataError(f"{path}:{n}: expected user_id,paper_id,rating,time, got {len(row)} fields")
            user, paper, rating, when = (c.strip() for c in row)
            try:
                value = int(float(rating))
            except ValueError:
                raise EvalDataError(f"{path}:{n}: rating must be 1 or -1, got {rating!r}") from None
            if value not in (1, -1):
                raise EvalDataError(f"{path}:{n}: rating must be 1 or -1, got {rating!r}")
            try:
                at = _parse_time(when)
            except ValueError:
                raise EvalDataError(f"{path}:{n}: time is not ISO 8601: {when!r}") from None
            if not user or not paper:
                raise EvalDataError(f"{path}:{n}: empty user_id or paper_id")
            if paper not in known:
                unknown += 1
                continue
            out.append(Rating(user, paper, value, at, n))
    return out, unknown


def build_cases(ratings: list[Rating], k: int) -> list[UserCase]:
    by_user: dict[str, dict[str, Rating]] = {}
    for r in ratings:
        by_user.setdefault(r.user, {})[r.paper] = r      # a later line for the same paper wins
    cases = []
    for user in sorted(by_user):
        rs = sorted(by_user[user].values(), key=lambda r: (r.at, r.line))
        pos = [r for r in rs if r.value > 0]
        if len(pos) < k + 5:
            continue
        cutoff = pos[k - 1].at
        train_pos = pos[:k]
        train_neg = [r for r in rs if r.value < 0 and r.at <= cutoff]
        test = {r.paper for r in pos[k:]}
        cases.append(UserCase(user, train_pos, train_neg, test))
    return cases


# -- metrics ---------------------------------------------------------------------------------

def curves(ranked: list[str], test: set[str], max_n: int = MAX_N) -> tuple[np.ndarray, np.ndarray]:
    """recall@N and nDCG@N for N = 1..max_n."""
    hits = np.array([1.0 if key in test else 0.0 for key in ranked[:max_n]] + [0.0] * max(0, max_n - len(ranked)))
    ns = np.arange(1, max_n + 1)
    recall = np.cumsum(hits) / np.minimum(ns, len(test))
    disc = 1.0 / np.log2(np.arange(2, max_n + 2))
    dcg = np.cumsum(hits * disc)
    idcg = np.cumsum(disc)[np.minimum(ns, len(test)) - 1]
    return recall, dcg / idcg


# -- methods ---------------------------------------------------------------------------------

class Context:
    """What every method may see: the paper texts (all users share them; no ratings)."""

    def __init__(self, papers: list[PaperText], backend: str | None, err: TextIO, *,
                 cache_dir: str | Path | None = None, embedder=None, progress: bool = True):
        self.papers = papers
        self.index = {p.key: i for i, p in enumerate(papers)}
        self.backend = backend
        self.err = err
        self.cache_dir = cache_dir
        self.embedder = embedder
        self.progress = progress
        self._cache: dict[str, object] = {}

    def once(self, name: str, build: Callable[[], object]) -> object:
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]

    def encoder(self):
        """One PaperEncoder for every method that embeds (the digestd embeddings backend and
        zotero_emb read the same text), kept on disk so the next run encodes nothing."""
        def build():
            from .rank.embeddings import PaperEncoder, load_embedder
            model = self.embedder if self.embedder is not None else load_embedder()
            cache = DiskVectors(Path(self.cache_dir), model.name) if self.cache_dir else None
            return PaperEncoder(model, cache, progress=lambda total: _progress(
                self.err, self.progress, "embedding", total, unit="papers", lines=True))
        return self.once("encoder", build)


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "digestd"


class DiskVectors:
    """The eval's VectorCache: one file per model, ``<cache_dir>/embeddings/<model>.npz``, keyed by the
    hash of the text alone (a data set's paper ids mean nothing elsewhere; the text does)."""

    def __init__(self, root: Path, model: str) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
        self.path = root / "embeddings" / f"{safe}.npz"
        self._vectors: dict[bytes, np.ndarray] | None = None

    def _all(self) -> dict[bytes, np.ndarray]:
        if self._vectors is None:
            self._vectors = {}
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    self._vectors = {h.tobytes(): v for h, v in zip(z["hashes"], z["vectors"])}
            except FileNotFoundError:
                pass
            except Exception as e:            # a truncated file is only a cache: start over
                print(f"digestd eval: ignoring unreadable embedding cache {self.path}: {e}", file=sys.stderr)
        return self._vectors

    def load(self, keys):
        have = self._all()
        out = {}
        for k in keys:
            v = have.get(bytes.fromhex(k[1]))
            if v is not None:
                out[k] = v
        return out

    def save(self, vectors) -> None:
        have = self._all()
        for (_key, h), v in vectors.items():
            have[bytes.fromhex(h)] = np.asarray(v, dtype=np.float32)
        if not have:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:            # np.savez would append .npz to a path
            # Hashes as raw uint8 rows: numpy's bytes dtype would drop a digest's trailing zero bytes.
            hashes = np.frombuffer(b"".join(have), dtype=np.uint8).reshape(len(have), -1)
            np.savez(fh, hashes=hashes, vectors=np.vstack(list(have.values())))
        os.replace(tmp, self.path)             # atomic: a killed run never leaves half a file


def _top(scores: np.ndarray, keys: list[str], exclude_idx: set[int], n: int) -> list[str]:
    s = scores.astype(float).copy()
    if exclude_idx:
        s[list(exclude_idx)] = -np.inf
    top = np.argsort(-s, kind="stable")[: n + len(exclude_idx)]
    return [keys[i] for i in top if i not in exclude_idx][:n]


def method_random(ctx: Context, case: UserCase, n: int) -> list[str]:
    seed = int(hashlib.sha256(case.user.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    cands = [p.key for p in ctx.papers if p.key not in case.train_keys]
    return [cands[i] for i in rng.permutation(len(cands))[:n]]


def _plain_tfidf(ctx: Context):
    from sklearn.feature_extraction.text import TfidfVectorizer
    vec = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=1)
    return vec.fit_transform([f"{p.title}. {p.abstract}" for p in ctx.papers])


def method_tfidf_centroid(ctx: Context, case: UserCase, n: int) -> list[str]:
    x = ctx.once("plain_tfidf", lambda: _plain_tfidf(ctx))
    liked = [ctx.index[r.paper] for r in case.train_pos]
    centroid = np.asarray(x[liked].mean(axis=0)).ravel()
    scores = x @ centroid
    return _top(scores, [p.key for p in ctx.papers], {ctx.index[k] for k in case.train_keys}, n)


def _asl_tfidf(ctx: Context):
    from sklearn.feature_extraction.text import TfidfVectorizer
    # Exactly arxiv-sanity-lite's compute.py settings.
    vec = TfidfVectorizer(input="content", encoding="utf-8", decode_error="replace", strip_accents="unicode",
                          lowercase=True, analyzer="word", stop_words="english",
                          token_pattern=r"(?u)\b[a-zA-Z_][a-zA-Z0-9_]+\b", ngram_range=(1, 2),
                          max_features=20000, norm="l2", use_idf=True, smooth_idf=True,
                          sublinear_tf=True, max_df=0.1, min_df=5)
    return vec.fit_transform([f"{p.title}. {p.abstract}" for p in ctx.papers])


def method_asl_svm(ctx: Context, case: UserCase, n: int) -> list[str]:
    from sklearn.svm import LinearSVC
    x = ctx.once("asl_tfidf", lambda: _asl_tfidf(ctx))
    y = np.zeros(len(ctx.papers))
    y[[ctx.index[r.paper] for r in case.train_pos]] = 1
    clf = LinearSVC(class_weight="balanced", verbose=0, max_iter=10000, tol=1e-6, C=0.01)
    clf.fit(x, y)
    scores = clf.decision_function(x)
    return _top(scores, [p.key for p in ctx.papers], {ctx.index[k] for k in case.train_keys}, n)


def _embeddings(ctx: Context) -> np.ndarray:
    return ctx.encoder().papers(ctx.papers)


def method_zotero_emb(ctx: Context, case: UserCase, n: int) -> list[str]:
    e = ctx.once("embeddings", lambda: _embeddings(ctx))
    # zotero-arxiv-daily: corpus sorted newest first, weight 1 / (1 + log10(rank + 1)), normalised.
    liked = sorted(case.train_pos, key=lambda r: (r.at, r.line), reverse=True)
    w = 1.0 / (1.0 + np.log10(np.arange(len(liked)) + 1))
    w /= w.sum()
    sims = e @ e[[ctx.index[r.paper] for r in liked]].T
    scores = sims @ w
    return _top(scores, [p.key for p in ctx.papers], {ctx.index[k] for k in case.train_keys}, n)


def _digestd_setup(ctx: Context):
    from .rank import fit_space, featurize
    space = fit_space(ctx.papers, ctx.backend, encoder=ctx.encoder() if ctx.backend == "embeddings" else None)
    return space, featurize(space, ctx.papers)


def method_digestd(ctx: Context, case: UserCase, n: int, params=None) -> list[str]:
    """The shipped ranker, through the same train + select the daemon calls."""
    from .rank import DEFAULT_PARAMS, select, train
    space, feats = ctx.once("digestd_space", lambda: _digestd_setup(ctx))
    train_keys = case.train_keys
    votes = [Vote(ctx.papers[ctx.index[r.paper]], r.value, r.at) for r in case.train_pos + case.train_neg]
    now = max(r.at for r in case.train_pos)
    profile = ProfileInput(user_id=case.user, votes=votes)
    # In the daemon the background is the recent stream; here the stream is every paper text.
    # Training papers are removed by ``exclude`` (as the daemon removes already-sent papers), so
    # the candidates are exactly "every paper in P except the user's training papers".
    model = train(profile, space, feats, now, params=params or DEFAULT_PARAMS)
    sel = select(model, space, feats, n, exclude=train_keys, explore=False, min_score=float("-inf"),
                 now=now, explain_picks=False)
    return [p.key for p in sel.picks]


METHODS: dict[str, Callable[..., list[str]]] = {
    "digestd": method_digestd,
    "random": method_random,
    "tfidf_centroid": method_tfidf_centroid,
    "asl_svm": method_asl_svm,
    "zotero_emb": method_zotero_emb,
}


# -- running ---------------------------------------------------------------------------------

def split_users(cases: list[UserCase], half: str | None) -> list[UserCase]:
    """A fixed, content-free split of users into halves "A" and "B" (tune on one, confirm on the other)."""
    if not half:
        return cases
    want = 0 if half.upper() == "A" else 1
    return [c for c in cases if int(hashlib.sha256(c.user.encode()).hexdigest(), 16) % 2 == want]


def evaluate(papers: list[PaperText], cases: list[UserCase], methods: list[str], *, backend: str | None = None,
             err: TextIO = sys.stderr, params=None, progress: bool = True, cache_dir: str | Path | None = None,
             embedder=None) -> dict[str, dict[str, np.ndarray]]:
    """Per method: mean recall@N and nDCG@N curves for N = 1..MAX_N.

    ``cache_dir``: where paper embeddings are kept between runs (None: not kept). ``embedder``: the
    text encoder (default: the real model; tests pass a fake)."""
    ctx = Context(papers, backend, err, cache_dir=cache_dir, embedder=embedder, progress=progress)
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
        fn = METHODS[name]
        rec = np.zeros(MAX_N)
        nd = np.zeros(MAX_N)
        t0 = time.perf_counter()
        with _progress(err, progress, f"{name:>15}", len(cases)) as advance:
            for case in cases:
                ranked = fn(ctx, case, MAX_N, params) if (name == "digestd" and params is not None) else fn(ctx, case, MAX_N)
                r, g = curves(ranked, case.test)
                rec += r
                nd += g
                advance()
        m = max(1, len(cases))
        results[name] = {"recall": rec / m, "ndcg": nd / m, "seconds": time.perf_counter() - t0}
    return results


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
    from .rank.embeddings import installed      # not importing torch: a warm cache never needs it
    names = ["digestd", "random", "tfidf_centroid", "asl_svm"]
    if installed():
        names.append("zotero_emb")
    return names


def format_table(results: dict, n_users: int, k: int, n: int) -> str:
    lines = [f"digestd eval: {n_users} users, K={k}, N={n}",
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
        if backend not in (None, "tfidf", "embeddings"):
            raise EvalDataError(f"unknown backend {backend!r} (known: tfidf, embeddings)")
        names = list(methods) if methods else available_methods(backend)
        unknown = [m for m in names if m not in METHODS]
        if unknown:
            raise EvalDataError(f"unknown method {unknown[0]!r} (known: {', '.join(ALL_METHODS)})")
        if embedder is None and (backend == "embeddings" or "zotero_emb" in names):
            from .rank.embeddings import INSTALL_HINT, installed
            if not installed():
                what = "--backend embeddings" if backend == "embeddings" else "the zotero_emb method"
                raise EvalDataError(f"{what} needs the embeddings extra: {INSTALL_HINT}")
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
    print(format_table(results, len(cases), k, n), file=out)
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
    except Exception:                    # threadpoolctl ships with scikit-learn; be safe anyway
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
