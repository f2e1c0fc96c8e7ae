"""The alembic environment: always given a connection by ``store.schema`` (no alembic.ini, no URL
here), so a migration runs inside the lock and the transaction its caller holds."""
from alembic import context
from sqlmodel import SQLModel

from digestd.store import tables  # noqa: F401  (registers the tables on the metadata)

connection = context.config.attributes["connection"]
# render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds the table instead.
context.configure(connection=connection, target_metadata=SQLModel.metadata,
                  render_as_batch=connection.dialect.name == "sqlite", transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
