"""The database: SQLModel tables and every query. Only this package touches SQL."""
from .db import Store, migrate_store, open_store
from .papers import EmbeddingCache
from .digests import Composed, Finish
from .records import Item, VoteRecord, paper_text
from .vectors import TextEmbeddingCache
from .tables import (Digest, DigestItem, Feedback, FeedbackEvent, Listing, Paper, PaperEmbedding, Profile, SourceState,
                     TextEmbedding, User)

__all__ = ["Composed", "EmbeddingCache", "Finish", "Item", "Store", "TextEmbeddingCache", "VoteRecord", "migrate_store",
           "open_store", "paper_text", "Digest", "DigestItem", "Feedback", "FeedbackEvent", "Listing", "Paper",
           "PaperEmbedding", "Profile", "SourceState", "TextEmbedding", "User"]
