"""Alembic's environment: migrate the connection :class:`labeling_ui.store.LabelStore` hands over.

The store opens the transaction (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL) and
passes its connection in ``config.attributes["connection"]``; the migrations run inside it, so a
failing one leaves the database as it was.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
