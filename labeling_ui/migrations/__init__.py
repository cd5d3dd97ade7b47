"""Alembic migrations of the labeling database (see :mod:`labeling_ui.schema` for the SQL).

:class:`labeling_ui.store.LabelStore` runs them when it opens a database, inside the same transaction
that checks the current revision (on PostgreSQL under an advisory lock, so that two app servers
starting together on a new database do not both create it). Each revision records itself in
``schema_version`` and, on SQLite, in ``PRAGMA user_version``: the numbers the hand-written migrations
used, so old databases and old tools agree with the new code about the version.
"""

from __future__ import annotations

import time

from alembic import op
from sqlalchemy import text

from labeling_ui.schema import SCHEMA_VERSION_SQL, split_sql


def real_type() -> str:
    """The double-precision type of the engine being migrated."""
    return "REAL" if op.get_bind().dialect.name == "sqlite" else "DOUBLE PRECISION"


def apply(version: int, description: str, script: str) -> None:
    """Run ``script`` (statements of this engine's dialect) and record ``version`` as applied."""
    bind = op.get_bind()
    dialect = bind.dialect.name
    bind.exec_driver_sql(SCHEMA_VERSION_SQL.format(real=real_type()))
    for statement in split_sql(script, dialect):
        bind.exec_driver_sql(statement)
    bind.execute(text("INSERT INTO schema_version (version, description, applied_at) VALUES (:v, :d, :t)"),
                 {"v": version, "d": description, "t": time.time()})
    if dialect == "sqlite":
        bind.exec_driver_sql(f"PRAGMA user_version = {int(version)}")
