"""The pass, in the order it runs:

    fetch.py     sources -> store          (each source alone; a failing one backs off)
    corpus.py    the background, its feature space, the readers' trained models
    compose.py   due readers -> picks      (a batch of readers ranked together against one pool)
    view.py      picks -> what a message shows
    deliver.py   messages -> mailer        (batches claimed under leases, rendered, handed over)
    handoff.py   the sending thread, and the batches in flight with their leases

``run_once`` is `digestd run --once`: fetch everything, then deliver every digest due by now.
"""
from .compose import Composition, compose_batch, compose_one
from .corpus import current_corpus, encode_keywords, release_encoder, warm_corpus
from .deliver import DeliveryOutcome, deliver_due, deliver_pending, pending_deliveries, run_once
from .deliver import deliver_work
from .fetch import FetchOutcome, complete_papers, fetch_all, fetch_source, sources_to_fetch, vectors_after_fetch
from .view import build_views, preview

__all__ = ["Composition", "DeliveryOutcome", "FetchOutcome", "build_views", "complete_papers", "compose_batch", "compose_one",
           "current_corpus", "deliver_due", "deliver_work", "deliver_pending", "encode_keywords", "fetch_all",
           "fetch_source", "pending_deliveries", "preview", "release_encoder", "run_once", "sources_to_fetch",
           "vectors_after_fetch", "warm_corpus"]
