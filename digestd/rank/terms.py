"""Readable terms that characterise each reader (for "matches your interests: ..." reasons). Pure.

A term's weight is the summed weight of the liked papers that use it (twice per keyword use),
times its IDF, so "protein" beats "data"; a reader keeps the top ``MAX_TERMS``. For a batch of
readers every paper is tokenised once and every term's IDF looked up once.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..models import PaperText
from .features import FeatureSpace

MAX_TERMS = 300
ROWS_AT_ONCE = 1024       # readers whose term sums are held at once
KEYWORD_WEIGHT = 2.0


def text_key(p: PaperText) -> tuple:
    """What a paper's vectors and terms depend on: two papers with one key are one paper."""
    return ("paper", p.key, p.title, p.abstract or "", tuple(p.authors or ()))


def profile_terms(readers: Sequence[tuple[Sequence[PaperText], Sequence[float], Sequence[str]]], space: FeatureSpace,
                  known_terms: dict, known_idf: dict[str, float], keys: Sequence[Sequence[tuple]] | None = None,
                  ) -> list[dict[str, float]]:
    """Term -> weight, best first (ties by term), for every reader given as (liked papers, their
    weights, keywords). ``known_terms``/``known_idf``: tokens and IDFs kept between calls;
    ``keys``: the papers' ``text_key``s, if the caller has them."""
    tokens: dict[tuple, list[str]] = {}               # paper -> its distinct terms
    if keys is None:
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
    idf = np.array([known_idf.get(t, np.nan) for t in vocab])
    missing = np.flatnonzero(np.isnan(idf))
    if len(missing):
        idf[missing] = space.term_idf([vocab[i] for i in missing])
        known_idf.update(zip([vocab[i] for i in missing], idf[missing].tolist()))
    ids = {t: i for i, t in enumerate(vocab)}
    # Reader x term sums as one product: (reader x paper weights) @ (paper x term indicator), plus keywords.
    paper_keys = list(tokens)
    col = {k: j for j, k in enumerate(paper_keys)}
    uses = sp.csr_matrix((np.ones(sum(len(tokens[k]) for k in paper_keys)),
                          np.array([ids[t] for k in paper_keys for t in tokens[k]], dtype=np.int64),
                          np.r_[0, np.cumsum([len(tokens[k]) for k in paper_keys])]), shape=(len(paper_keys), len(vocab)))
    # Built from its arrays, each row in anchor order and unsorted: the product then sums a
    # reader's papers in that order, whoever else is in the batch (COO input would sort them).
    liked = sp.csr_matrix((np.array([w for papers, weights, _ in readers for w in weights[:len(papers)]], dtype=float),
                           np.array([col[k] for ks in keys for k in ks], dtype=np.int64),
                           np.r_[0, np.cumsum([len(ks) for ks in keys])]), shape=(len(readers), len(paper_keys)))
    kw_terms = [[ids[t] for kw in keywords for t in kw_tokens[kw]] for _, _, keywords in readers]
    said = sp.csr_matrix((np.full(sum(map(len, kw_terms)), KEYWORD_WEIGHT),
                          (np.repeat(np.arange(len(readers)), [len(t) for t in kw_terms]),
                           np.array([i for t in kw_terms for i in t], dtype=np.int64))),
                         shape=(len(readers), len(vocab)))
    names = np.array(vocab, dtype=object)
    out = []
    for start in range(0, len(readers), ROWS_AT_ONCE):
        total = sp.csr_matrix(liked[start:start + ROWS_AT_ONCE] @ uses + said[start:start + ROWS_AT_ONCE])
        out += [_top(total, b, idf, names) for b in range(total.shape[0])]
    return out


def _top(total: sp.csr_matrix, b: int, idf: np.ndarray, names: np.ndarray) -> dict[str, float]:
    """Row ``b``'s top terms with their weights, best first, ties by term."""
    lo, hi = total.indptr[b], total.indptr[b + 1]
    term = total.indices[lo:hi]
    score = total.data[lo:hi] * idf[term]
    if len(score) > MAX_TERMS:            # ties at the cut are broken by term, like the rest
        cut = np.partition(score, len(score) - MAX_TERMS)[len(score) - MAX_TERMS]
        keep = score >= cut
        term, score = term[keep], score[keep]
    top = np.lexsort((term, -score))[:MAX_TERMS]
    return dict(zip(names[term[top]].tolist(), score[top].tolist()))
