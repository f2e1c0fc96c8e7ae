"""The text of a paper as the sentence encoder reads it.

Its own module because both ``features`` (which builds the encoder lazily for the embeddings
backend) and ``embeddings`` (which encodes) need it: here, neither imports the other to get it.
"""
from __future__ import annotations

from ..models import PaperText


def paper_text_plain(p: PaperText) -> str:
    return f"{p.title}. {p.abstract or ''}".strip()
