"""What a render worker process needs: one message's job, and rendering it into bytes.

Kept apart from ``pipeline.render_pool`` (the pass's side): a spawned worker imports this module,
and this module imports only the templates, MIME and TeX conversion. Importing the pipeline
package brought numpy, SQLAlchemy and the scheduler into every worker: 102 MiB of RSS in a
10,000-reader pass, beside the pass's own.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass

from .models import Digest


@dataclass(frozen=True)
class RenderJob:
    view: Digest
    from_addr: str
    message_id: str
    date: dt.datetime
    list_id: str
    as_stored: bool = False      # the view's texts are as stored: make them readable first


def readable_view(view: Digest) -> Digest:
    """What ``build_views`` shows, from a view it built with ``readable_text=False``: TeX as Unicode,
    control characters gone (``mathtext.readable``). Converting TeX (pylatexenc, milliseconds an
    abstract) is then the workers' work too, not the pass's."""
    from .mathtext import readable

    papers = [dataclasses.replace(p, title=readable(p.title, one_line=True), abstract=readable(p.abstract),
                                  authors=[readable(a, one_line=True) for a in p.authors],
                                  highlight=readable(p.highlight) or None, ai_summary=readable(p.ai_summary))
              for p in view.papers]
    return dataclasses.replace(view, papers=papers)


def render_one(job: RenderJob) -> bytes:
    from .render import render_message

    view = readable_view(job.view) if job.as_stored else job.view
    return render_message(view, from_addr=job.from_addr, message_id=job.message_id, date=job.date,
                          list_id=job.list_id)


def render_chunk(jobs: list[RenderJob]) -> tuple[list[tuple[bool, object]], float]:
    """In a worker: each job's bytes, or its error as one line (an exception object might not
    pickle); and the seconds it took, for the pass's ``render`` stage."""
    t = time.perf_counter()
    out: list[tuple[bool, object]] = []
    for job in jobs:
        try:
            out.append((True, render_one(job)))
        except Exception as e:  # one reader's bad digest must not take the chunk's others with it
            out.append((False, f"{e.__class__.__name__}: {e}"))
    return out, time.perf_counter() - t
