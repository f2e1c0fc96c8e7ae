"""Papers, listings, source state and paper vectors."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import numpy as np
import sqlalchemy as sa
from sqlmodel import select

from ..models import FetchedPaper
from .tables import FittedSpace, Listing, Paper, PaperEmbedding, SourceState, dialect_insert


class PaperQueries:
    """Mixed into ``Store``, which provides ``session()`` and ``engine``."""

    engine: sa.Engine

    # -- papers and listings ---------------------------------------------------------------------
    def upsert_papers(self, source: str, day: dt.date, papers: Iterable[FetchedPaper], now: dt.datetime) -> tuple[int, int]:
        """Store papers and their listing in ``source`` on ``day``. Returns (new papers, new listings)."""
        papers = list({fp.key: fp for fp in papers}.values())
        new_papers = new_listings = 0
        with self.session() as s:
            for i in range(0, len(papers), 500):
                chunk = papers[i:i + 500]
                keys = [fp.key for fp in chunk]
                # One query for the rows we have and one for the listings: a day's list is hundreds of papers.
                rows = {p.key: p for p in s.exec(select(Paper).where(Paper.key.in_(keys)))}
                listed = set(s.exec(select(Listing.paper_key).where(Listing.paper_key.in_(keys), Listing.source == source,
                                                                    Listing.day == day)))
                for fp in chunk:
                    row = rows.get(fp.key)
                    if row is None:
                        row = Paper(key=fp.key, title=fp.title, first_seen_at=now)
                        s.add(row)
                        new_papers += 1
                    self._merge_paper(row, fp, now)
                s.flush()
                for fp in chunk:
                    if fp.key not in listed:
                        s.add(Listing(paper_key=fp.key, source=source, day=day, announce_type=fp.announce_type, seen_at=now))
                        new_listings += 1
            s.commit()
        return new_papers, new_listings

    @staticmethod
    def _merge_paper(row: Paper, fp: FetchedPaper, now: dt.datetime) -> None:
        # Newer information wins, but never blank out what another source gave us.
        row.title = fp.title or row.title
        if fp.abstract and len(fp.abstract) >= len(row.abstract or ""):
            row.abstract = fp.abstract
        if fp.authors:
            row.authors_json = json.dumps(fp.authors, ensure_ascii=False)
        if fp.categories:
            row.categories_json = json.dumps(fp.categories)
        row.arxiv_id = fp.arxiv_id or row.arxiv_id
        if fp.version and (row.version or 0) < fp.version:
            row.version = fp.version
        row.url = fp.url or row.url
        row.pdf_url = fp.pdf_url or row.pdf_url
        row.published_at = fp.published or row.published_at
        if fp.upvotes is not None:
            row.upvotes = fp.upvotes
        if fp.extra:
            extra = json.loads(row.extra_json or "{}")
            extra.update(fp.extra)
            row.extra_json = json.dumps(extra, ensure_ascii=False, default=str)
        row.updated_at = now

    def get_paper(self, key: str) -> Paper | None:
        with self.session() as s:
            return s.get(Paper, key)

    def papers_by_keys(self, keys: Iterable[str]) -> dict[str, Paper]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, Paper] = {}
        with self.session() as s:
            for i in range(0, len(keys), 500):
                for p in s.exec(select(Paper).where(Paper.key.in_(keys[i:i + 500]))):
                    out[p.key] = p
        return out

    def sources_of(self, keys: Iterable[str]) -> dict[str, list[str]]:
        keys = list(keys)
        out: dict[str, list[str]] = {}
        with self.session() as s:
            for i in range(0, len(keys), 500):
                rows = s.exec(select(Listing.paper_key, Listing.source).where(Listing.paper_key.in_(keys[i:i + 500])))
                for k, src in rows:
                    out.setdefault(k, [])
                    if src not in out[k]:
                        out[k].append(src)
        return out

    def first_listed_day(self, keys: Iterable[str]) -> dict[str, dt.date]:
        keys = list(keys)
        out: dict[str, dt.date] = {}
        with self.session() as s:
            for i in range(0, len(keys), 500):
                q = select(Listing.paper_key, sa.func.min(Listing.day)).where(Listing.paper_key.in_(keys[i:i + 500])).group_by(Listing.paper_key)
                out.update({k: d for k, d in s.exec(q)})
        return out

    def candidate_papers(self, sources: list[str], since: dt.datetime | None, until: dt.datetime) -> list[Paper]:
        """Papers listed in any of ``sources`` and first seen by us in (since, until]."""
        with self.session() as s:
            q = select(Listing.paper_key).where(Listing.source.in_(sources), Listing.seen_at <= until)
            if since is not None:
                q = q.where(Listing.seen_at > since)
            keys = set(s.exec(q.distinct()))
        return list(self.papers_by_keys(keys).values())

    def listings_between(self, since: dt.datetime | None, until: dt.datetime) -> list[tuple[str, str, dt.datetime]]:
        """(paper key, source, first seen) of every listing first seen in (since, until]: what a
        pass needs to tell, per reader, which of the day's papers are theirs."""
        with self.session() as s:
            q = select(Listing.paper_key, Listing.source, sa.func.min(Listing.seen_at)).where(Listing.seen_at <= until)
            if since is not None:
                q = q.where(Listing.seen_at > since)
            return [(k, src, t if t is None or t.tzinfo else t.replace(tzinfo=dt.timezone.utc))
                    for k, src, t in s.exec(q.group_by(Listing.paper_key, Listing.source))]

    def fitted_space(self, backend: str) -> FittedSpace | None:
        with self.session() as s:
            return s.get(FittedSpace, backend)

    def save_fitted_space(self, backend: str, fitted_at: dt.datetime, identity: str, keys: Iterable[str],
                          space: bytes) -> None:
        """Keep the newest fitted space of ``backend``; two processes fitting at once both succeed."""
        values = {"fitted_at": fitted_at, "identity": identity, "keys_json": json.dumps(sorted(keys)), "space": space}
        insert = dialect_insert(self.engine)
        stmt = insert(FittedSpace.__table__).values(backend=backend, **values)
        with self.engine.begin() as c:
            c.execute(stmt.on_conflict_do_update(index_elements=["backend"], set_=values))

    def listings_version(self) -> tuple[int, int | None]:
        """Changes whenever a listing is added: the cheap identity of ``listings_between``'s answers."""
        with self.session() as s:
            return tuple(s.exec(select(sa.func.count(), sa.func.max(Listing.id)).select_from(Listing)).one())

    def recent_papers(self, limit: int) -> list[Paper]:
        """The newest listed papers, a background corpus for feature statistics and negatives.
        Papers known only from imports (never listed) have no first_seen_at and come last; PostgreSQL
        would otherwise put them first."""
        with self.session() as s:
            q = select(Paper).order_by(Paper.first_seen_at.desc().nulls_last(), Paper.key).limit(limit)
            return list(s.exec(q).all())

    def corpus_version(self) -> tuple[int, dt.datetime | None]:
        """Changes exactly when a new paper arrives: the cheap identity of ``recent_papers``."""
        with self.session() as s:
            return tuple(s.exec(select(sa.func.count(), sa.func.max(Paper.first_seen_at)).select_from(Paper)).one())

    def ensure_paper(self, fp: FetchedPaper, now: dt.datetime) -> None:
        """Keep a paper we learned of outside any list (imports, seeds), without listing it anywhere."""
        with self.session() as s:
            row = s.get(Paper, fp.key)
            if row is None:
                s.add(Paper(key=fp.key, title=fp.title or fp.key, abstract=fp.abstract or "", arxiv_id=fp.arxiv_id,
                            version=fp.version, authors_json=json.dumps(fp.authors, ensure_ascii=False),
                            url=fp.url, pdf_url=fp.pdf_url, first_seen_at=None, updated_at=now))
            else:
                # Fill in what a placeholder (an imported bare id) lacked; never overwrite real text.
                if fp.abstract and not row.abstract:
                    row.abstract = fp.abstract
                if fp.title and row.title in ("", row.key):
                    row.title = fp.title
                if fp.authors and row.authors_json in ("", "[]"):
                    row.authors_json = json.dumps(fp.authors, ensure_ascii=False)
            s.commit()

    # -- source state ----------------------------------------------------------------------------
    def source_state(self, name: str) -> SourceState:
        with self.session() as s:
            return s.get(SourceState, name) or SourceState(name=name)

    def all_source_states(self) -> dict[str, SourceState]:
        with self.session() as s:
            return {r.name: r for r in s.exec(select(SourceState))}

    def record_fetch_success(self, name: str, now: dt.datetime, count: int, etag: str | None = None,
                             last_modified: str | None = None) -> None:
        with self.session() as s:
            row = s.get(SourceState, name) or SourceState(name=name)
            row.last_attempt_at = row.last_success_at = now
            row.last_count = count
            if etag is not None:
                row.etag = etag
            if last_modified is not None:
                row.last_modified = last_modified
            row.error_count = 0
            row.next_retry_at = None
            s.add(row)
            s.commit()

    def record_fetch_error(self, name: str, now: dt.datetime, error: str, next_retry_at: dt.datetime | None) -> int:
        with self.session() as s:
            row = s.get(SourceState, name) or SourceState(name=name)
            row.last_attempt_at = row.last_error_at = now
            row.last_error = error
            row.error_count = (row.error_count or 0) + 1
            row.next_retry_at = next_retry_at
            s.add(row)
            s.commit()
            return row.error_count

    # -- paper embeddings --------------------------------------------------------------------------
    def paper_embeddings(self, model: str, keys: Iterable[str]) -> dict[str, tuple[str, np.ndarray]]:
        """paper key -> (text_hash, float32 vector) of the papers that have one for ``model``."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, tuple[str, np.ndarray]] = {}
        with self.session() as s:
            for i in range(0, len(keys), 500):
                q = select(PaperEmbedding.paper_key, PaperEmbedding.text_hash, PaperEmbedding.dim, PaperEmbedding.vector) \
                    .where(PaperEmbedding.model == model, PaperEmbedding.paper_key.in_(keys[i:i + 500]))
                for key, h, dim, blob in s.exec(q):
                    v = np.frombuffer(blob, dtype="<f4")
                    if len(v) == dim:
                        out[key] = (h, v)
        return out

    def save_paper_embeddings(self, model: str, vectors: dict[str, tuple[str, np.ndarray]]) -> None:
        """Insert or replace (paper key -> (text_hash, vector)); two processes may race to store the
        same paper, so this is an upsert, not an insert."""
        rows = [{"paper_key": k, "model": model, "text_hash": h, "dim": int(len(v)),
                 "vector": np.asarray(v, dtype="<f4").tobytes()} for k, (h, v) in vectors.items()]
        if not rows:
            return
        table = PaperEmbedding.__table__
        insert = dialect_insert(self.engine)
        with self.engine.begin() as c:
            for i in range(0, len(rows), 150):          # 5 parameters a row: under SQLite's old 999 limit
                stmt = insert(table).values(rows[i:i + 150])
                stmt = stmt.on_conflict_do_update(
                    index_elements=["paper_key", "model"],
                    set_={"text_hash": stmt.excluded.text_hash, "dim": stmt.excluded.dim, "vector": stmt.excluded.vector})
                c.execute(stmt)

    def embedding_cache(self, model: str) -> "EmbeddingCache":
        return EmbeddingCache(self, model)


class EmbeddingCache:
    """The database as the ``VectorCache`` of rank.embeddings.PaperEncoder, for one model: a
    vector counts only while the paper's text still hashes the same."""

    def __init__(self, store: PaperQueries, model: str) -> None:
        self.store, self.model = store, model

    def load(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], np.ndarray]:
        have = self.store.paper_embeddings(self.model, (k for k, _ in keys))
        return {(k, h): have[k][1] for k, h in keys if k in have and have[k][0] == h}

    def save(self, vectors: dict[tuple[str, str], np.ndarray]) -> None:
        self.store.save_paper_embeddings(self.model, {k: (h, v) for (k, h), v in vectors.items()})
