"""The database: SQLModel tables and every query. Only this package touches SQL."""
from .db import Store, VoteRecord, open_store, paper_text
from .tables import Digest, DigestItem, Feedback, FeedbackEvent, Listing, Paper, Profile, SourceState, User

__all__ = ["Store", "VoteRecord", "open_store", "paper_text", "Digest", "DigestItem", "Feedback", "FeedbackEvent",
           "Listing", "Paper", "Profile", "SourceState", "User"]
