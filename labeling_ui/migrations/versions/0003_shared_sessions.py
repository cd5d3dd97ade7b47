"""Schema version 3: login sessions in the database (every app server honours them) and the settings
table with the campaign's login-cookie id."""

from __future__ import annotations

import secrets

from alembic import op
from sqlalchemy import text

from labeling_ui.migrations import apply, real_type
from labeling_ui.schema import SESSIONS_SQL

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply(3, "shared login sessions", SESSIONS_SQL.format(real=real_type()))
    op.get_bind().execute(text("INSERT INTO settings (key, value) VALUES ('cookie_id', :v)"),
                          {"v": secrets.token_urlsafe(32)})
