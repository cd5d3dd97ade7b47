"""Schema version 1: projects, items, annotators, assignments (leases), labels, the overlap trigger."""

from __future__ import annotations

from alembic import op

from labeling_ui.migrations import apply
from labeling_ui.schema import MIGRATIONS, PG_MIGRATIONS

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    scripts = MIGRATIONS if op.get_bind().dialect.name == "sqlite" else PG_MIGRATIONS
    description, script = scripts[0]
    apply(1, description, script)
