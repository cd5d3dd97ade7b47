"""``align-label migrate``: copy a labeling campaign into another database (SQLite into PostgreSQL).

Everything a campaign is made of is copied with its ids: projects, items, accounts (password hashes,
roles, session epochs, pauses), assignments (leases), labels (withdrawn ones too: the audit trail),
reviewers' decisions (superseded ones too) and the gold rule of :mod:`labeling_ui.review`. Login
sessions are not (everyone signs in again on the new database), nor the schema history (the target
has its own).

The copy is one transaction on the target, and it is checked before it commits: the row count and a
content hash (SHA-256 over every row in id order, values in canonical form) of each table, read back
from the target inside that transaction, must equal the source's. A mismatch, a target that already
holds data, or a target that cannot be reached is an error and leaves the target as it was (apart from
an empty schema on a new database).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from sqlalchemy import text

from alignment.errors import UserError
from labeling_ui.review import MIN_GOLD_KEY, THRESHOLD_KEY
from labeling_ui.store import LabelStore, Tx

log = logging.getLogger(__name__)

#: The campaign's tables, parents before children (foreign keys).
TABLES = ("projects", "items", "annotators", "assignments", "labels", "adjudications")
#: Columns holding times: SQLite may keep a whole number there as an integer, PostgreSQL reads a float.
TIME_COLUMNS = frozenset({"created_at", "leased_at", "expires_at", "closed_at", "withdrawn_at", "paused_at",
                          "gold_since", "superseded_at"})
BATCH = 1000
#: The ``settings`` that belong to the campaign (the gold rule of :mod:`labeling_ui.review`).
CAMPAIGN_SETTINGS = (THRESHOLD_KEY, MIN_GOLD_KEY)


def _canonical(columns: list[str], row: Any) -> list[Any]:
    return [float(v) if c in TIME_COLUMNS and v is not None else v for c, v in zip(columns, row)]


def _columns(c: Tx, table: str) -> list[str]:
    """The table's columns, sorted (the engines may order them differently: ALTER TABLE appends)."""
    return sorted(c.conn.exec_driver_sql(f"SELECT * FROM {table} WHERE 1 = 0").keys())


def fingerprint(c: Tx) -> dict[str, dict[str, Any]]:
    """Per table: the row count and the SHA-256 of its rows (id order, canonical values)."""
    out = {}
    for table in TABLES:
        columns = _columns(c, table)
        h = hashlib.sha256()
        n = 0
        for row in c.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id"):
            h.update(json.dumps(_canonical(columns, row), ensure_ascii=False, separators=(",", ":")).encode())
            h.update(b"\n")
            n += 1
        out[table] = {"rows": n, "sha256": h.hexdigest()}
    return out


def copy_campaign(source: LabelStore, target: LabelStore) -> dict[str, Any]:
    """Copy every row of ``source`` into the empty ``target``; returns the verified fingerprint."""
    with target.write() as t:
        held = {table: t.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in TABLES}
        if any(held.values()):
            raise UserError(f"migrate: {target.where} already holds data "
                            f"({', '.join(f'{n} {table}' for table, n in held.items() if n)}); "
                            "copy into a new, empty database")
        with source.read() as s:
            expected = fingerprint(s)
            for table in TABLES:
                columns = _columns(s, table)
                insert = text(f"INSERT INTO {table} ({', '.join(columns)}) "
                              f"VALUES ({', '.join(':' + col for col in columns)})")
                rows = s.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id").fetchall()
                for start in range(0, len(rows), BATCH):
                    t.conn.execute(insert, [dict(zip(columns, _canonical(columns, r)))
                                            for r in rows[start:start + BATCH]])
        if t.postgres:      # the identity sequences continue after the copied ids (ids are never reused)
            for table in TABLES:
                t.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                          f"COALESCE((SELECT MAX(id) FROM {table}), 1), (SELECT COUNT(*) FROM {table}) > 0)")
            for key in CAMPAIGN_SETTINGS:       # the gold rule travels; the login cookie's id does not
                value = s.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
                if value is not None:
                    t.execute("""INSERT INTO settings (key, value) VALUES (?, ?)
                                 ON CONFLICT (key) DO UPDATE SET value = excluded.value""", (key, value[0]))
        got = fingerprint(t)
        if got != expected:
            bad = [table for table in TABLES if got[table] != expected[table]]
            raise UserError(f"migrate: the copy in {target.where} differs from {source.where} in {', '.join(bad)} "
                            "(row counts or content hashes); nothing was written")
    problems = target.check_invariants()
    if problems:
        log.warning("migrate: the copied campaign has %d consistency problem(s), as the source had: %s",
                    len(problems), "; ".join(problems[:5]))
    log.info("migrate: copied %s from %s to %s; counts and content hashes match",
             ", ".join(f"{v['rows']} {k}" for k, v in expected.items()), source.where, target.where)
    return {"source": source.where, "target": target.where, "tables": expected}
