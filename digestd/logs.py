"""Logging with the fixed keys every line may carry: source, user, paper."""
from __future__ import annotations

import logging
import sys

KEYS = ("source", "user", "paper")


class _KeyDefaults(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        extras = []
        for k in KEYS:
            v = getattr(record, k, None)
            if v is not None:
                extras.append(f"{k}={v}")
        record.ids = (" " + " ".join(extras)) if extras else ""
        return True


class _SafeFormatter(logging.Formatter):
    """Log lines carry text from servers digestd does not control: no escape codes or control
    characters reach the journal or a terminal, and no credential in a URL is written down."""

    def format(self, record: logging.LogRecord) -> str:
        from .safety import clean_text, redact_text

        line = super().format(record)
        head, sep, trace = line.partition("\n")   # a traceback keeps its lines
        head = redact_text(clean_text(head, one_line=True))
        return head + sep + redact_text(clean_text(trace)) if sep else head


def setup_logging(level: str = "INFO", stream=None) -> None:
    root = logging.getLogger("digestd")
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_KeyDefaults())
    handler.setFormatter(_SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s%(ids)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(isinstance(f, _KeyDefaults) for f in logger.filters):
        logger.addFilter(_KeyDefaults())
    return logger
