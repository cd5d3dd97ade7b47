"""The labeling database's schema, as the SQL each Alembic revision runs, per engine.

Revisions ``0001`` and ``0002`` are the hand-written ``MIGRATIONS`` list this project kept before it used
Alembic (``PRAGMA user_version`` 1 and 2); ``0003`` adds the shared login sessions; ``0004`` the
``reviewer`` role, reviewers' decisions (``adjudications``) and paused accounts. Revision ``N`` of a
SQLite database is also ``PRAGMA user_version = N`` and a row of ``schema_version`` (both engines keep
that history table), so a database written by the old code upgrades in place.

PostgreSQL runs the same schema in its own dialect: ``DOUBLE PRECISION`` times (``REAL`` is 4 bytes
there), ``BIGINT`` slot counters (a gold item's are ``2**40``), identity ids that are never reused, and
the overlap rule as a PL/pgSQL trigger that first locks the item row, so that concurrent label inserts
for one item are counted one after the other (without the lock two transactions under READ COMMITTED
could each count the other's label as absent).
"""

from __future__ import annotations

import sqlite3

#: SQLite: the scripts of schema versions 1 and 2 exactly as the hand-written migrations ran them (an
#: existing database at either version is stamped with its Alembic revision and upgraded in place).
MIGRATIONS: list[tuple[str, str]] = [
    ("initial schema", """
CREATE TABLE projects (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    overlap     INTEGER NOT NULL CHECK (overlap >= 1),
    created_at  REAL NOT NULL
);
CREATE TABLE items (
    id            INTEGER PRIMARY KEY,
    project_id    INTEGER NOT NULL REFERENCES projects(id),
    ext_id        TEXT NOT NULL,
    prompt        TEXT NOT NULL,
    response_a    TEXT NOT NULL,
    response_b    TEXT NOT NULL,
    source_a      TEXT,
    source_b      TEXT,
    safety_a      TEXT,            -- JSON {category: score} from the safety filter, or NULL
    safety_b      TEXT,
    meta          TEXT NOT NULL DEFAULT '{}',
    is_gold       INTEGER NOT NULL DEFAULT 0 CHECK (is_gold IN (0, 1)),
    gold_choice   TEXT CHECK (gold_choice IN ('A', 'B', 'tie', 'both_bad')),
    gold_strength INTEGER CHECK (gold_strength BETWEEN 1 AND 4),
    n_labels      INTEGER NOT NULL DEFAULT 0 CHECK (n_labels >= 0),
    -- overlap - labels - active leases; a gold item's never runs out
    slots_left    INTEGER NOT NULL CHECK (slots_left >= 0),
    created_at    REAL NOT NULL,
    UNIQUE (project_id, ext_id),
    CHECK (is_gold = 0 OR gold_choice IS NOT NULL)
);
CREATE INDEX items_open ON items (project_id, is_gold, id) WHERE slots_left > 0;
CREATE TABLE annotators (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('annotator', 'admin')),
    pw_hash     TEXT NOT NULL,
    active      INTEGER NOT NULL DEFAULT 1,
    created_at  REAL NOT NULL
);
CREATE TABLE assignments (
    id           INTEGER PRIMARY KEY,
    item_id      INTEGER NOT NULL REFERENCES items(id),
    annotator_id INTEGER NOT NULL REFERENCES annotators(id),
    shown_first  TEXT NOT NULL CHECK (shown_first IN ('A', 'B')),
    status       TEXT NOT NULL CHECK (status IN ('active', 'labeled', 'skipped', 'expired')),
    leased_at    REAL NOT NULL,
    expires_at   REAL NOT NULL,
    closed_at    REAL,
    UNIQUE (item_id, annotator_id)          -- an annotator never sees an item twice
);
CREATE INDEX assignments_active ON assignments (expires_at) WHERE status = 'active';
CREATE INDEX assignments_annotator ON assignments (annotator_id, status);
CREATE TABLE labels (
    id            INTEGER PRIMARY KEY,
    item_id       INTEGER NOT NULL REFERENCES items(id),
    annotator_id  INTEGER NOT NULL REFERENCES annotators(id),
    assignment_id INTEGER NOT NULL UNIQUE REFERENCES assignments(id),
    choice        TEXT NOT NULL CHECK (choice IN ('A', 'B', 'tie', 'both_bad')),   -- stored order
    shown_first   TEXT NOT NULL CHECK (shown_first IN ('A', 'B')),
    strength      INTEGER CHECK (strength BETWEEN 1 AND 4),
    flags_a       TEXT NOT NULL DEFAULT '[]',       -- JSON list of safety categories
    flags_b       TEXT NOT NULL DEFAULT '[]',
    note          TEXT NOT NULL DEFAULT '',
    time_ms       INTEGER,
    created_at    REAL NOT NULL,
    UNIQUE (item_id, annotator_id),
    CHECK ((choice IN ('A', 'B')) = (strength IS NOT NULL))
);
CREATE INDEX labels_annotator ON labels (annotator_id, id);
CREATE INDEX labels_created ON labels (created_at);
-- The last line of defence of the overlap invariant (the queue already keeps it through slots_left).
CREATE TRIGGER labels_overlap BEFORE INSERT ON labels
WHEN (SELECT is_gold FROM items WHERE id = NEW.item_id) = 0
 AND (SELECT COUNT(*) FROM labels WHERE item_id = NEW.item_id)
     >= (SELECT p.overlap FROM items i JOIN projects p ON p.id = i.project_id WHERE i.id = NEW.item_id)
BEGIN
    SELECT RAISE(ABORT, 'overlap exceeded: the item already has all its labels');
END;
"""),
    # Undo withdraws a label instead of deleting it (an audit trail), and label ids are never reused:
    # the table is rebuilt with AUTOINCREMENT, and "one label per assignment / per annotator and item"
    # now holds among the labels that are not withdrawn. Sessions: a password change, deactivation or
    # reactivation bumps session_epoch, which revokes every session opened before it.
    ("withdrawn labels, session epochs", """
CREATE TABLE labels_v2 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id       INTEGER NOT NULL REFERENCES items(id),
    annotator_id  INTEGER NOT NULL REFERENCES annotators(id),
    assignment_id INTEGER NOT NULL REFERENCES assignments(id),
    choice        TEXT NOT NULL CHECK (choice IN ('A', 'B', 'tie', 'both_bad')),   -- stored order
    shown_first   TEXT NOT NULL CHECK (shown_first IN ('A', 'B')),
    strength      INTEGER CHECK (strength BETWEEN 1 AND 4),
    flags_a       TEXT NOT NULL DEFAULT '[]',       -- JSON list of safety categories
    flags_b       TEXT NOT NULL DEFAULT '[]',
    note          TEXT NOT NULL DEFAULT '',
    time_ms       INTEGER,
    created_at    REAL NOT NULL,
    withdrawn_at  REAL,                             -- set by undo; a withdrawn label counts nowhere
    CHECK ((choice IN ('A', 'B')) = (strength IS NOT NULL))
);
INSERT INTO labels_v2 (id, item_id, annotator_id, assignment_id, choice, shown_first, strength, flags_a, flags_b,
                       note, time_ms, created_at)
    SELECT id, item_id, annotator_id, assignment_id, choice, shown_first, strength, flags_a, flags_b, note, time_ms,
           created_at FROM labels;
DROP TABLE labels;
ALTER TABLE labels_v2 RENAME TO labels;
CREATE UNIQUE INDEX labels_assignment ON labels (assignment_id) WHERE withdrawn_at IS NULL;
CREATE UNIQUE INDEX labels_item_annotator ON labels (item_id, annotator_id) WHERE withdrawn_at IS NULL;
CREATE INDEX labels_annotator ON labels (annotator_id, id);
CREATE INDEX labels_created ON labels (created_at);
CREATE INDEX labels_item ON labels (item_id);
CREATE TRIGGER labels_overlap BEFORE INSERT ON labels
WHEN (SELECT is_gold FROM items WHERE id = NEW.item_id) = 0
 AND (SELECT COUNT(*) FROM labels WHERE item_id = NEW.item_id AND withdrawn_at IS NULL)
     >= (SELECT p.overlap FROM items i JOIN projects p ON p.id = i.project_id WHERE i.id = NEW.item_id)
BEGIN
    SELECT RAISE(ABORT, 'overlap exceeded: the item already has all its labels');
END;
ALTER TABLE annotators ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
"""),
]


#: PostgreSQL: the same two versions.
PG_MIGRATIONS: list[tuple[str, str]] = [
    ("initial schema", """
CREATE TABLE projects (
    id          INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    overlap     INTEGER NOT NULL CHECK (overlap >= 1),
    created_at  DOUBLE PRECISION NOT NULL
);
CREATE TABLE items (
    id            INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    project_id    INTEGER NOT NULL REFERENCES projects(id),
    ext_id        TEXT NOT NULL,
    prompt        TEXT NOT NULL,
    response_a    TEXT NOT NULL,
    response_b    TEXT NOT NULL,
    source_a      TEXT,
    source_b      TEXT,
    safety_a      TEXT,
    safety_b      TEXT,
    meta          TEXT NOT NULL DEFAULT '{}',
    is_gold       INTEGER NOT NULL DEFAULT 0 CHECK (is_gold IN (0, 1)),
    gold_choice   TEXT CHECK (gold_choice IN ('A', 'B', 'tie', 'both_bad')),
    gold_strength INTEGER CHECK (gold_strength BETWEEN 1 AND 4),
    n_labels      INTEGER NOT NULL DEFAULT 0 CHECK (n_labels >= 0),
    slots_left    BIGINT NOT NULL CHECK (slots_left >= 0),
    created_at    DOUBLE PRECISION NOT NULL,
    UNIQUE (project_id, ext_id),
    CHECK (is_gold = 0 OR gold_choice IS NOT NULL)
);
CREATE INDEX items_open ON items (project_id, is_gold, id) WHERE slots_left > 0;
CREATE TABLE annotators (
    id          INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('annotator', 'admin')),
    pw_hash     TEXT NOT NULL,
    active      INTEGER NOT NULL DEFAULT 1,
    created_at  DOUBLE PRECISION NOT NULL
);
CREATE TABLE assignments (
    id           INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    item_id      INTEGER NOT NULL REFERENCES items(id),
    annotator_id INTEGER NOT NULL REFERENCES annotators(id),
    shown_first  TEXT NOT NULL CHECK (shown_first IN ('A', 'B')),
    status       TEXT NOT NULL CHECK (status IN ('active', 'labeled', 'skipped', 'expired')),
    leased_at    DOUBLE PRECISION NOT NULL,
    expires_at   DOUBLE PRECISION NOT NULL,
    closed_at    DOUBLE PRECISION,
    UNIQUE (item_id, annotator_id)
);
CREATE INDEX assignments_active ON assignments (expires_at) WHERE status = 'active';
CREATE INDEX assignments_annotator ON assignments (annotator_id, status);
CREATE TABLE labels (
    id            INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    item_id       INTEGER NOT NULL REFERENCES items(id),
    annotator_id  INTEGER NOT NULL REFERENCES annotators(id),
    assignment_id INTEGER NOT NULL REFERENCES assignments(id),
    choice        TEXT NOT NULL CHECK (choice IN ('A', 'B', 'tie', 'both_bad')),
    shown_first   TEXT NOT NULL CHECK (shown_first IN ('A', 'B')),
    strength      INTEGER CHECK (strength BETWEEN 1 AND 4),
    flags_a       TEXT NOT NULL DEFAULT '[]',
    flags_b       TEXT NOT NULL DEFAULT '[]',
    note          TEXT NOT NULL DEFAULT '',
    time_ms       INTEGER,
    created_at    DOUBLE PRECISION NOT NULL,
    CONSTRAINT labels_assignment_once UNIQUE (assignment_id),
    CONSTRAINT labels_item_annotator_once UNIQUE (item_id, annotator_id),
    CHECK ((choice IN ('A', 'B')) = (strength IS NOT NULL))
);
CREATE INDEX labels_annotator ON labels (annotator_id, id);
CREATE INDEX labels_created ON labels (created_at);
CREATE FUNCTION labels_overlap() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    gold INTEGER;
    cap INTEGER;
    n BIGINT;
BEGIN
    SELECT i.is_gold, p.overlap INTO gold, cap FROM items i JOIN projects p ON p.id = i.project_id
     WHERE i.id = NEW.item_id FOR UPDATE OF i;
    IF gold = 0 THEN
        SELECT COUNT(*) INTO n FROM labels WHERE item_id = NEW.item_id;
        IF n >= cap THEN
            RAISE EXCEPTION 'overlap exceeded: the item already has all its labels' USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER labels_overlap BEFORE INSERT ON labels FOR EACH ROW EXECUTE FUNCTION labels_overlap();
"""),
    ("withdrawn labels, session epochs", """
ALTER TABLE labels ADD COLUMN withdrawn_at DOUBLE PRECISION;
ALTER TABLE labels DROP CONSTRAINT labels_assignment_once;
ALTER TABLE labels DROP CONSTRAINT labels_item_annotator_once;
CREATE UNIQUE INDEX labels_assignment ON labels (assignment_id) WHERE withdrawn_at IS NULL;
CREATE UNIQUE INDEX labels_item_annotator ON labels (item_id, annotator_id) WHERE withdrawn_at IS NULL;
CREATE INDEX labels_item ON labels (item_id);
CREATE OR REPLACE FUNCTION labels_overlap() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    gold INTEGER;
    cap INTEGER;
    n BIGINT;
BEGIN
    SELECT i.is_gold, p.overlap INTO gold, cap FROM items i JOIN projects p ON p.id = i.project_id
     WHERE i.id = NEW.item_id FOR UPDATE OF i;
    IF gold = 0 THEN
        SELECT COUNT(*) INTO n FROM labels WHERE item_id = NEW.item_id AND withdrawn_at IS NULL;
        IF n >= cap THEN
            RAISE EXCEPTION 'overlap exceeded: the item already has all its labels' USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
ALTER TABLE annotators ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
"""),
]

#: Both engines (``{real}`` is the engine's double-precision type): login sessions shared by every app
#: server on the database, and the campaign's settings (the login cookie's name must be the same on
#: every server, or a cookie set by one would not be read by another).
SESSIONS_SQL = """
CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,          -- sha256 of the cookie token: the table holds no usable cookie
    annotator_id INTEGER NOT NULL REFERENCES annotators(id),
    epoch        INTEGER NOT NULL,          -- the account's session_epoch at login
    created_at   {real} NOT NULL
);
CREATE INDEX sessions_annotator ON sessions (annotator_id);
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
"""

#: The history table both engines keep (one row per applied revision).
SCHEMA_VERSION_SQL = ("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                      "description TEXT NOT NULL, applied_at {real} NOT NULL)")


def split_sql(script: str, dialect: str = "sqlite") -> list[str]:
    """Split a script into statements: SQLite's ``complete_statement`` keeps triggers whole; a
    PostgreSQL script is split on ``;`` at line ends outside ``$$`` bodies."""
    statements, buf = [], ""
    in_body = False
    for line in script.splitlines(keepends=True):
        buf += line
        if dialect == "sqlite":
            done = sqlite3.complete_statement(buf)
        else:
            in_body ^= line.count("$$") % 2 == 1
            done = not in_body and line.rstrip().endswith(";")
        if done:
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements


#: Version 4, SQLite: the ``reviewer`` role (the role's CHECK is part of the table, so ``annotators`` is
#: rebuilt: copied aside, dropped, created anew and refilled; ``defer_foreign_keys`` lets the children's
#: references wait for the refill, and a row gone missing would fail the commit) and the pause columns.
REVIEW_SQLITE_ROLES = """
PRAGMA defer_foreign_keys = ON;
CREATE TABLE annotators_v3 AS SELECT id, name, role, pw_hash, active, created_at, session_epoch FROM annotators;
DROP TABLE annotators;
CREATE TABLE annotators (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('annotator', 'reviewer', 'admin')),
    pw_hash       TEXT NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1,
    created_at    REAL NOT NULL,
    session_epoch INTEGER NOT NULL DEFAULT 0
);
INSERT INTO annotators (id, name, role, pw_hash, active, created_at, session_epoch)
    SELECT id, name, role, pw_hash, active, created_at, session_epoch FROM annotators_v3;
DROP TABLE annotators_v3;
"""

#: Version 4, PostgreSQL: the role's CHECK is a named constraint there, replaced in place.
REVIEW_PG_ROLES = """
ALTER TABLE annotators DROP CONSTRAINT annotators_role_check;
ALTER TABLE annotators ADD CONSTRAINT annotators_role_check CHECK (role IN ('annotator', 'reviewer', 'admin'));
"""

#: Version 4, both engines (``{real}``, ``{id}``: the engine's double type and id column): pausing an
#: account (by the gold-accuracy rule or by an admin; ``gold_since`` is when its gold accuracy starts
#: counting again after an un-pause) and reviewers' decisions on items whose labels disagree. A decision
#: is never deleted: a newer one on the same item supersedes it (an audit trail, like withdrawn labels).
REVIEW_SQL = """
ALTER TABLE annotators ADD COLUMN paused_at {real};
ALTER TABLE annotators ADD COLUMN pause_reason TEXT CHECK (pause_reason IN ('gold', 'admin'));
ALTER TABLE annotators ADD COLUMN gold_since {real};
CREATE TABLE adjudications (
    id            {id},
    item_id       INTEGER NOT NULL REFERENCES items(id),
    reviewer_id   INTEGER NOT NULL REFERENCES annotators(id),
    choice        TEXT NOT NULL CHECK (choice IN ('A', 'B', 'tie', 'both_bad')),   -- stored order
    strength      INTEGER CHECK (strength BETWEEN 1 AND 4),
    flags_a       TEXT NOT NULL DEFAULT '[]',
    flags_b       TEXT NOT NULL DEFAULT '[]',
    note          TEXT NOT NULL DEFAULT '',
    created_at    {real} NOT NULL,
    superseded_at {real},
    CHECK ((choice IN ('A', 'B')) = (strength IS NOT NULL))
);
CREATE UNIQUE INDEX adjudications_current ON adjudications (item_id) WHERE superseded_at IS NULL;
"""
