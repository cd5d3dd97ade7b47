"""Schema version 2: undo withdraws a label (audit trail, ids never reused); accounts get a session epoch."""

from __future__ import annotations

from alembic import op

from labeling_ui.migrations import apply
from labeling_ui.schema import MIGRATIONS, PG_MIGRATIONS

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    scripts = MIGRATIONS if op.get_bind().dialect.name == "sqlite" else PG_MIGRATIONS
    description, script = scripts[1]
    apply(2, description, script)
