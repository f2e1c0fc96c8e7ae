"""Readable terms that characterise each reader (for "matches your interests: ..." reasons). Pure.

A term's weight is the summed weight of the liked papers that use it (twice per keyword use),
times its IDF, so "protein" beats "data"; a reader keeps the top ``MAX_TERMS``. For a batch of
readers every paper is tokenised once and every term's IDF looked up once.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..models import PaperText
from .features import FeatureSpace

MAX_TERMS = 300
KEYWORD_WEIGHT = 2.0


def text_key(p: PaperText) -> tuple:
    """What a paper's vectors and terms depend on: two papers with one key are one paper."""
    return ("paper", p.key, p.title, p.abstract or "", tuple(p.authors or ()))


def profile_terms(readers: Sequence[tuple[Sequence[PaperText], Sequence[float], Sequence[str]]], space: FeatureSpace,
                  known_terms: dict, known_idf: dict[str, float]) -> list[dict[str, float]]:
    """Term -> weight, best first (ties by term), for every reader given as (liked papers, their
    weights, keywords). ``known_terms``/``known_idf``: tokens and IDFs kept between calls."""
    tokens: dict[tuple, list[str]] = {}               # paper -> its distinct terms
    keys = [[text_key(paper) for paper in papers] for papers, _, _ in readers]
    for (papers, _, _), ks in zip(readers, keys):
        for key, paper in zip(ks, papers):
            if key not in tokens:
                words = known_terms.get(key)
                if words is None:
                    words = known_terms[key] = sorted(set(space.terms(f"{paper.title} {paper.abstract}")))
                tokens[key] = words
    kw_tokens: dict[str, list[str]] = {}              # keyword -> its terms, repeats kept
    for _, _, keywords in readers:
        for kw in keywords:
            if kw not in kw_tokens:
                key = ("keyword", kw)
                words = known_terms.get(key)
                if words is None:
                    words = known_terms[key] = space.terms(kw)
                kw_tokens[kw] = words
    vocab = sorted({t for ws in tokens.values() for t in ws} | {t for ws in kw_tokens.values() for t in ws})
    idf_of = {t: x for t, x in ((t, known_idf.get(t)) for t in vocab) if x is not None}
    missing = [t for t in vocab if t not in idf_of]
    new = dict(zip(missing, space.term_idf(missing).tolist()))
    idf_of.update(new)
    known_idf.update(new)
    idf = np.array([idf_of[t] for t in vocab])
    ids = {t: i for i, t in enumerate(vocab)}
    paper_ids = {k: np.array([ids[t] for t in ws], dtype=int) for k, ws in tokens.items()}
    kw_ids = {kw: np.array([ids[t] for t in ws], dtype=int) for kw, ws in kw_tokens.items()}
    out = []
    for (_, weights, keywords), ks in zip(readers, keys):
        parts = [paper_ids[k] for k in ks] + [kw_ids[kw] for kw in keywords]
        if not parts or not sum(len(x) for x in parts):
            out.append({})
            continue
        w = [np.full(len(paper_ids[k]), a) for k, a in zip(ks, weights)]
        w += [np.full(len(kw_ids[kw]), KEYWORD_WEIGHT) for kw in keywords]
        term, weight = np.concatenate(parts), np.concatenate(w)
        order = np.argsort(term, kind="stable")        # sums in anchor order, as a dict would add them
        term, weight = term[order], weight[order]
        starts = np.flatnonzero(np.r_[True, term[1:] != term[:-1]])
        uniq = term[starts]
        score = np.add.reduceat(weight, starts) * idf[uniq]
        top = np.lexsort((uniq, -score))[:MAX_TERMS]
        out.append(dict(zip([vocab[i] for i in uniq[top]], score[top].tolist())))
    return out
