"""Reasons a person can check: the liked paper a pick is closest to, the words that matched, and the
one sentence of the abstract that speaks to this reader. Pure."""
from __future__ import annotations

import re

import numpy as np
from sklearn.preprocessing import normalize

from ..models import Pick
from .features import FeatureSpace, Featurized, compact_dense, tokenize
from .profile import UserModel

# Split after . ! ? followed by a space and an uppercase letter / digit; keeps "e.g. the" together.
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|et al|vs|Fig|Eq|cf|approx)\.)$", re.IGNORECASE)
MAX_TERMS = 5


def sentences(text: str) -> list[str]:
    parts = [s.strip() for s in _SENT.split(" ".join((text or "").split())) if s.strip()]
    merged: list[str] = []
    for s in parts:
        if merged and _ABBREV.search(merged[-1]):
            merged[-1] = f"{merged[-1]} {s}"
        else:
            merged.append(s)
    return merged


def _short(title: str, limit: int = 90) -> str:
    title = " ".join(title.split())
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


def explain(model: UserModel, space: FeatureSpace, picked: Featurized, scores: np.ndarray,
            explore_flags: list[bool]) -> list[Pick]:
    """One ``Pick`` per row of ``picked``, with reason, matched terms, closest anchor and highlight."""
    out: list[Pick] = []
    if len(picked) == 0:
        return out
    mix = model.params.dense_mix
    if model.empty:
        sims = np.zeros((len(picked), 0))
    else:
        sims = (1 - mix) * picked.sparse_dot(model.pos_sparse) + mix * (picked.dense @ model.pos_dense.T)
    for i, paper in enumerate(picked.papers):
        words = set(tokenize(f"{paper.title} {paper.abstract}"))
        matched = sorted((t for t in words if t in model.profile_terms),
                         key=lambda t: (-model.profile_terms[t], t))[:MAX_TERMS]
        because_of = because_title = None
        anchor_idx = int(np.argmax(sims[i])) if sims.shape[1] else -1
        anchor = model.anchors[anchor_idx] if anchor_idx >= 0 else None
        kw_hits = [kw for kw in model.keywords if set(tokenize(kw)) and set(tokenize(kw)) <= words]
        if explore_flags[i]:
            reason = "To explore: outside your usual topics, so your digest can learn what else you like"
        elif anchor is not None and anchor.kind in ("vote", "seed"):
            because_of, because_title = anchor.key, anchor.title
            verb = "liked" if anchor.kind == "vote" else "listed"
            reason = f"Because you {verb} “{_short(anchor.title)}”"
            if kw_hits:
                reason += f"; matches your keywords: {', '.join(kw_hits[:3])}"
        elif kw_hits:
            reason = f"Matches your keywords: {', '.join(kw_hits[:3])}"
        elif anchor is not None and anchor.kind == "authors":
            reason = f"By an author you follow: {anchor.title}"
        elif matched:
            reason = f"Matches your interests: {', '.join(matched[:3])}"
        else:
            reason = "Close to your interests"
        out.append(Pick(
            key=paper.key, score=float(scores[i]), reason=reason, matched_terms=matched,
            because_of=because_of, because_title=because_title,
            highlight=_highlight(model, space, paper.abstract, anchor_idx), explore=explore_flags[i],
        ))
    return out


def _highlight(model: UserModel, space: FeatureSpace, abstract: str, anchor_idx: int) -> str | None:
    """The abstract sentence closest to what this reader liked (the nearest anchor, plus the
    profile's linear weights), so the mail can show *why* in the paper's own words."""
    sents = sentences(abstract)
    if not sents:
        return None
    if len(sents) == 1 or model.empty:
        return sents[0]
    xs = space.transform_text(sents)
    score = np.zeros(len(sents))
    if anchor_idx >= 0:
        sent_rows, anchor_row = compact_dense(xs, model.pos_sparse[anchor_idx])
        score += sent_rows @ anchor_row[0]
    if model.coef_dense is not None:
        lin = space.dense_text(sents) @ model.coef_dense
        score += 0.1 * lin / (np.abs(lin).max() or 1.0)
    # Prefer a sentence with substance over a fragment that happens to share one word.
    score += 0.02 * np.minimum(np.array([len(s.split()) for s in sents]), 25) / 25
    return sents[int(np.argmax(score))]


__all__ = ["explain", "sentences", "normalize"]
