"""The replay protocol of `digestd eval`: inputs, the per-user split and the metrics (issue 4).

For each user with at least K+5 positive ratings:
  training  = the user's K earliest positives + their negatives up to the K-th positive's time
  test      = the user's later positives
  candidates = every paper of P except that user's training papers
  recall@N  = hits in the top N / min(N, |test|);  nDCG@N with binary gains; both averaged over users.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from .errors import DigestdError
from .models import PaperText

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


def split_users(cases: list[UserCase], half: str | None) -> list[UserCase]:
    """A fixed, content-free split of users into halves "A" and "B" (tune on one, confirm on the other)."""
    if not half:
        return cases
    want = 0 if half.upper() == "A" else 1
    return [c for c in cases if int(hashlib.sha256(c.user.encode()).hexdigest(), 16) % 2 == want]
