"""One file per schema revision, oldest first (alembic reads them by path; this file makes the wheel carry them)."""
