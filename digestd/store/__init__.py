"""The database: SQLModel tables and every query. Only this package touches SQL."""
from .db import STALE_CLAIM, EmbeddingCache, Store, VoteRecord, open_store, paper_text
from .tables import (Digest, DigestItem, Feedback, FeedbackEvent, Listing, Paper, PaperEmbedding, Profile, SourceState,
                     User)

__all__ = ["STALE_CLAIM", "EmbeddingCache", "Store", "VoteRecord", "open_store", "paper_text", "Digest", "DigestItem", "Feedback", "FeedbackEvent",
           "Listing", "Paper", "PaperEmbedding", "Profile", "SourceState", "User"]
