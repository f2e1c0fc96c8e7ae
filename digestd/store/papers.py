"""Papers, listings, source state and paper vectors."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import select

from ..models import FetchedPaper
from .tables import FittedSpace, Listing, Paper, PaperEmbedding, SourceState, dialect_insert


_BATCH = 500       # papers per transaction
_ROWS = 60         # papers per INSERT statement


def _paper_row(fp: FetchedPaper, now: dt.datetime) -> dict:
    return {"key": fp.key, "title": fp.title or "", "abstract": fp.abstract or "",
            "authors_json": json.dumps(fp.authors, ensure_ascii=False) if fp.authors else "[]",
            "categories_json": json.dumps(fp.categories) if fp.categories else "[]",
            "arxiv_id": fp.arxiv_id, "version": fp.version or None, "url": fp.url, "pdf_url": fp.pdf_url,
            "published_at": fp.published, "upvotes": fp.upvotes,
            "extra_json": json.dumps(fp.extra, ensure_ascii=False, default=str) if fp.extra else "{}",
            "first_seen_at": now, "updated_at": now}


def _merge(new, old, engine: sa.Engine) -> dict:
    """How a stored paper takes in a newer sighting: newer information wins, but nothing another
    source gave us is ever blanked out (a longer abstract stays; extras are merged key by key)."""
    if engine.dialect.name == "postgresql":
        extra = sa.cast(sa.cast(old.extra_json, JSONB).op("||")(sa.cast(new.extra_json, JSONB)), sa.Text)
    else:
        extra = sa.func.json_patch(old.extra_json, new.extra_json)
    return {
        "title": sa.func.coalesce(sa.func.nullif(new.title, ""), old.title),
        "abstract": sa.case((sa.and_(new.abstract != "", sa.func.length(new.abstract) >= sa.func.length(old.abstract)),
                             new.abstract), else_=old.abstract),
        "authors_json": sa.case((new.authors_json != "[]", new.authors_json), else_=old.authors_json),
        "categories_json": sa.case((new.categories_json != "[]", new.categories_json), else_=old.categories_json),
        "arxiv_id": sa.func.coalesce(new.arxiv_id, old.arxiv_id),
        "version": sa.case((sa.func.coalesce(old.version, 0) < new.version, new.version), else_=old.version),
        "url": sa.func.coalesce(new.url, old.url),
        "pdf_url": sa.func.coalesce(new.pdf_url, old.pdf_url),
        "published_at": sa.func.coalesce(new.published_at, old.published_at),
        "upvotes": sa.func.coalesce(new.upvotes, old.upvotes),
        "extra_json": sa.case((new.extra_json == "{}", old.extra_json), else_=extra),
        "updated_at": new.updated_at,
    }


class PaperQueries:
    """Mixed into ``Store``, which provides ``session()`` and ``engine``."""

    engine: sa.Engine

    # -- papers and listings ---------------------------------------------------------------------
    def upsert_papers(self, source: str, day: dt.date, papers: Iterable[FetchedPaper], now: dt.datetime) -> tuple[int, int]:
        """Store papers and their listing in ``source`` on ``day``. Returns (new papers, new listings).

        One upsert per chunk, never select-then-insert: another process storing the same paper at the
        same moment makes this an update, not a unique violation. A transaction per ``_BATCH`` papers
        keeps row locks short, so a vote or a delivery never waits behind a whole day's list; keys
        go in sorted order, so two writers lock rows in the same order and cannot deadlock."""
        papers = sorted({fp.key: fp for fp in papers}.values(), key=lambda fp: fp.key)
        new_papers = new_listings = 0
        insert = dialect_insert(self.engine)
        pt, lt = Paper.__table__, Listing.__table__
        for i in range(0, len(papers), _BATCH):
            chunk = papers[i:i + _BATCH]
            with self.engine.begin() as c:
                known = set(c.execute(sa.select(pt.c.key).where(pt.c.key.in_([fp.key for fp in chunk]))).scalars())
                new_papers += sum(fp.key not in known for fp in chunk)
                for j in range(0, len(chunk), _ROWS):   # 15 columns a row: under SQLite's old 999 limit
                    stmt = insert(pt).values([_paper_row(fp, now) for fp in chunk[j:j + _ROWS]])
                    c.execute(stmt.on_conflict_do_update(index_elements=["key"],
                                                         set_=_merge(stmt.excluded, pt.c, self.engine)))
                for j in range(0, len(chunk), 150):
                    rows = [{"paper_key": fp.key, "source": source, "day": day, "announce_type": fp.announce_type,
                             "seen_at": now} for fp in chunk[j:j + 150]]
                    stmt = (insert(lt).values(rows).on_conflict_do_nothing(index_elements=["paper_key", "source", "day"])
                            .returning(lt.c.id))
                    new_listings += len(c.execute(stmt).all())
        return new_papers, new_listings

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
        """Keep a paper we learned of outside any list (imports, seeds), without listing it anywhere.
        An upsert that fills in what a placeholder (an imported bare id) lacked and never
        overwrites real text."""
        pt = Paper.__table__
        insert = dialect_insert(self.engine)
        stmt = insert(pt).values(key=fp.key, title=fp.title or fp.key, abstract=fp.abstract or "", arxiv_id=fp.arxiv_id,
                                 version=fp.version, authors_json=json.dumps(fp.authors, ensure_ascii=False),
                                 url=fp.url, pdf_url=fp.pdf_url, first_seen_at=None, updated_at=now)
        new, old = stmt.excluded, pt.c
        fill = {"abstract": sa.case((sa.and_(old.abstract == "", new.abstract != ""), new.abstract), else_=old.abstract)}
        if fp.title:
            fill["title"] = sa.case((old.title.in_(["", old.key]), new.title), else_=old.title)
        if fp.authors:
            fill["authors_json"] = sa.case((old.authors_json.in_(["", "[]"]), new.authors_json), else_=old.authors_json)
        with self.engine.begin() as c:
            c.execute(stmt.on_conflict_do_update(index_elements=["key"], set_=fill))

    # -- source state ----------------------------------------------------------------------------
    def source_state(self, name: str) -> SourceState:
        with self.session() as s:
            return s.get(SourceState, name) or SourceState(name=name)

    def all_source_states(self) -> dict[str, SourceState]:
        with self.session() as s:
            return {r.name: r for r in s.exec(select(SourceState))}

    def record_fetch_success(self, name: str, now: dt.datetime, count: int, etag: str | None = None,
                             last_modified: str | None = None) -> None:
        """An upsert, like every write of the source state: two processes fetching one source both succeed."""
        insert = dialect_insert(self.engine)
        t = SourceState.__table__
        stmt = insert(t).values(name=name, last_attempt_at=now, last_success_at=now, last_count=count, etag=etag,
                                last_modified=last_modified, error_count=0, next_retry_at=None)
        with self.engine.begin() as c:
            c.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={
                "last_attempt_at": now, "last_success_at": now, "last_count": count, "error_count": 0,
                "next_retry_at": None, "etag": sa.func.coalesce(stmt.excluded.etag, t.c.etag),
                "last_modified": sa.func.coalesce(stmt.excluded.last_modified, t.c.last_modified)}))

    def record_fetch_error(self, name: str, now: dt.datetime, error: str, next_retry_at: dt.datetime | None) -> int:
        """Count one more failure (in the database, so two processes count two); returns the count."""
        insert = dialect_insert(self.engine)
        t = SourceState.__table__
        stmt = insert(t).values(name=name, last_attempt_at=now, last_error_at=now, last_error=error, error_count=1,
                                next_retry_at=next_retry_at)
        stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={
            "last_attempt_at": now, "last_error_at": now, "last_error": error, "next_retry_at": next_retry_at,
            "error_count": sa.func.coalesce(t.c.error_count, 0) + 1}).returning(t.c.error_count)
        with self.engine.begin() as c:
            return c.execute(stmt).scalar_one()

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
    """The database as the ``VectorCache`` of rank.encode_once.PaperEncoder, for one model: a
    vector counts only while the paper's text still hashes the same."""

    def __init__(self, store: PaperQueries, model: str) -> None:
        self.store, self.model = store, model

    def load(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], np.ndarray]:
        have = self.store.paper_embeddings(self.model, (k for k, _ in keys))
        return {(k, h): have[k][1] for k, h in keys if k in have and have[k][0] == h}

    def save(self, vectors: dict[tuple[str, str], np.ndarray]) -> None:
        self.store.save_paper_embeddings(self.model, {k: (h, v) for (k, h), v in vectors.items()})
