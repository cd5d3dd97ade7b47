"""The labeling database: SQLite (the embedded default) or PostgreSQL (several app servers; the engines,
their durability and concurrency are :mod:`labeling_ui.db`'s), schema-versioned by Alembic, every write in
one transaction. One database holds everything the labeling app
knows: projects, items (a prompt and two responses, with where they came from and what the safety
filter thought of them), annotators (salted scrypt password hashes and a role), assignments (leases,
see :mod:`labeling_ui.queue`), labels, and the login sessions.

Conventions
-----------
* Responses are stored in a fixed order, ``response_a`` then ``response_b``. Labels always speak of that
  *stored* order (``choice`` is ``A`` / ``B`` / ``tie`` / ``both_bad``); which one the annotator saw on
  the left is recorded separately (``shown_first``), so position bias can be measured.
* Schema versions: Alembic revisions ``0001``, ``0002``... (:mod:`labeling_ui.migrations`, SQL in
  :mod:`labeling_ui.schema`); the ``schema_version`` table keeps the history and, on SQLite, ``PRAGMA
  user_version`` the number, as the hand-written migrations did, so a database they wrote upgrades in
  place. Opening a database applies the missing revisions; one newer than the code is refused.
* Labels are never deleted: undo sets ``withdrawn_at`` (an audit trail), and every count, the
  statistics and the export read only the labels in force. Label ids come from ``AUTOINCREMENT``, so
  no id is ever handed out twice.
* Accounts carry a ``session_epoch``: a password change, deactivation or reactivation bumps it, and
  :mod:`labeling_ui.auth` ends every session opened under an older epoch. Login sessions live in the
  ``sessions`` table (token hashes), so every app server on the database honours them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from alignment.errors import UserError
from alignment.safety.categories import CATEGORIES
from labeling_ui.db import Database, Row, Tx, database_url
from labeling_ui.passwords import NO_SUCH_USER_HASH, hash_password, verify_password
from labeling_ui.schema import MIGRATIONS

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "LabelStore", "Tx", "Row", "database_url"]
T = TypeVar("T")

log = logging.getLogger(__name__)

#: Reviewers label like annotators and also adjudicate disagreements; admins do both and run the campaign.
ROLES = ("annotator", "reviewer", "admin")
CHOICES = ("A", "B", "tie", "both_bad")
#: Gold items are shown to every annotator who has not seen them: their slots never run out.
GOLD_SLOTS = 1 << 40

#: The newest schema version (Alembic revision ``000N``) this code knows.
SCHEMA_VERSION = 4


# --------------------------------------------------------------------------------------------- records
@dataclass
class Annotator:
    id: int
    name: str
    role: str
    active: bool
    #: Paused accounts get no new items (:mod:`labeling_ui.review`).
    paused: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_reviewer(self) -> bool:
        """Whether the account may adjudicate disagreements (reviewers and admins)."""
        return self.role in ("reviewer", "admin")


@dataclass
class Project:
    id: int
    name: str
    overlap: int


@dataclass
class ItemIn:
    """One pair to label, as the candidates stage or an import file hands it over."""

    prompt: str
    response_a: str
    response_b: str
    id: str | None = None
    source_a: str | None = None
    source_b: str | None = None
    #: Safety-filter scores per category, e.g. ``{"violence": 0.93, ...}``.
    safety_a: Mapping[str, float] | None = None
    safety_b: Mapping[str, float] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: A gold item has a known answer (stored order) and measures annotator accuracy.
    gold_choice: str | None = None
    gold_strength: int | None = None


_ITEM_KEYS = {f for f in ItemIn.__dataclass_fields__} | {"sources", "safety", "gold", "model_a", "model_b"}


def coerce_item(raw: Mapping[str, Any] | ItemIn, where: str) -> ItemIn:
    """Validate one item (a dict or :class:`ItemIn`); ``where`` names it in the error message."""
    if isinstance(raw, ItemIn):
        raw = dict(raw.__dict__)
    if not isinstance(raw, Mapping):
        raise UserError(f"{where}: expected an object with prompt, response_a, response_b; got {type(raw).__name__}")
    unknown = set(raw) - _ITEM_KEYS
    if unknown:
        raise UserError(f"{where}: unknown key(s) {sorted(unknown)}; expected some of {sorted(_ITEM_KEYS)}")
    for key in ("prompt", "response_a", "response_b"):
        if key not in raw:
            raise UserError(f"{where}: missing key {key!r}")
        if not isinstance(raw[key], str):
            raise UserError(f"{where}: key {key!r} must be a string, got {type(raw[key]).__name__}")
        if not raw[key].strip():
            raise UserError(f"{where}: key {key!r} is empty")
    src_a, src_b = raw.get("source_a", raw.get("model_a")), raw.get("source_b", raw.get("model_b"))
    if raw.get("sources") is not None:
        sources = raw["sources"]
        if not (isinstance(sources, Sequence) and not isinstance(sources, str) and len(sources) == 2):
            raise UserError(f"{where}: key 'sources' must be a list of two strings (source of A, source of B)")
        src_a, src_b = sources
    for key, value in (("source_a", src_a), ("source_b", src_b)):
        if value is not None and not isinstance(value, str):
            raise UserError(f"{where}: key {key!r} must be a string")
    safety_a, safety_b = raw.get("safety_a"), raw.get("safety_b")
    if raw.get("safety") is not None:
        safety = raw["safety"]
        if not (isinstance(safety, Sequence) and len(safety) == 2):
            raise UserError(f"{where}: key 'safety' must be a list of two score objects (A, B)")
        safety_a, safety_b = safety
    for key, value in (("safety_a", safety_a), ("safety_b", safety_b)):
        if value is None:
            continue
        if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for k, v in value.items()):
            raise UserError(f"{where}: key {key!r} must map category names to finite numbers")
    gold_choice = raw.get("gold_choice", raw.get("gold"))
    if gold_choice is not None and gold_choice not in CHOICES:
        raise UserError(f"{where}: gold answer {gold_choice!r} is not one of {CHOICES}")
    gold_strength = raw.get("gold_strength")
    if gold_strength is not None and (not isinstance(gold_strength, int) or not 1 <= gold_strength <= 4):
        raise UserError(f"{where}: key 'gold_strength' must be an integer 1..4")
    ext_id = raw.get("id")
    if ext_id is not None and not isinstance(ext_id, (str, int)):
        raise UserError(f"{where}: key 'id' must be a string or an integer")
    meta = raw.get("meta") or {}
    if not isinstance(meta, Mapping):
        raise UserError(f"{where}: key 'meta' must be an object")
    return ItemIn(prompt=raw["prompt"], response_a=raw["response_a"], response_b=raw["response_b"],
                  id=None if ext_id is None else str(ext_id), source_a=src_a, source_b=src_b,
                  safety_a=dict(safety_a) if safety_a is not None else None,
                  safety_b=dict(safety_b) if safety_b is not None else None,
                  meta=dict(meta), gold_choice=gold_choice, gold_strength=gold_strength)


def item_fingerprint(item: ItemIn) -> str:
    """A content id for items that come without one (the same pair imported twice is a duplicate)."""
    h = hashlib.sha256("\x00".join((item.prompt, item.response_a, item.response_b)).encode())
    return "sha256:" + h.hexdigest()[:24]


# --------------------------------------------------------------------------------------------- database access
#: Key of the advisory lock that serialises migrations of one PostgreSQL database (two servers that
#: start together on a new database must not both create the schema).
_MIGRATION_LOCK = 0x6C61_6265_6C73
_HEAD = f"{SCHEMA_VERSION:04d}"
_MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


# --------------------------------------------------------------------------------------------- the store
class LabelStore(Database):
    """The campaign's records in one database (:class:`labeling_ui.db.Database`: SQLite or PostgreSQL,
    thread-safe), brought to the newest schema when opened."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL", busy_timeout_ms: int = 30_000,
                 pool_size: int = 16) -> None:
        super().__init__(path, synchronous, busy_timeout_ms, pool_size)
        self._project_cache: dict[str, Project] = {}
        self._auth_cache: dict[str, tuple[str, bytes]] = {}
        self._auth_key = secrets.token_bytes(32)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ migrations
    def schema_version(self) -> int:
        return int(self._exec("SELECT version_num FROM alembic_version").fetchone()[0])

    def _migrate(self) -> None:
        """Bring the database to the newest revision; refuse (changing nothing) one newer than the code."""
        with (self._wlock if not self.postgres else nullcontext()), self._connect() as conn:
            conn.execution_options(label_write=True)
            with conn.begin():
                if self.postgres:
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
                    legacy = 0
                else:
                    legacy = conn.exec_driver_sql("PRAGMA user_version").scalar() or 0
                current = _alembic_revision(conn)
                newer = legacy > SCHEMA_VERSION or (current is not None and not (
                    current.isdigit() and len(current) == 4 and int(current) <= SCHEMA_VERSION))
                if newer:
                    raise UserError(f"{self.where}: database schema version {current or legacy} is newer than this "
                                    f"code understands ({SCHEMA_VERSION}); upgrade alignment-pipeline")
                if current == _HEAD:
                    return
                from alembic import command
                from alembic.config import Config

                cfg = Config()
                cfg.set_main_option("script_location", str(_MIGRATIONS_DIR))
                cfg.attributes["connection"] = conn
                if current is None and legacy:          # written by the hand-written migrations
                    command.stamp(cfg, f"{legacy:04d}")
                    current = f"{legacy:04d}"
                command.upgrade(cfg, "head")
                log.info("labeling db %s: migrated from schema version %s to %d", self.where,
                         int(current) if current else 0, SCHEMA_VERSION)

    # ------------------------------------------------------------------ settings and shared sessions
    def setting(self, key: str) -> str | None:
        row = self._exec("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row is not None else None

    def open_session(self, token: str, name: str, epoch: int) -> bool:
        """Record a login (the cookie's token, hashed) under the account epoch its password was checked
        in; ``False`` when the account was deactivated or its epoch moved on since."""
        with self.write() as c:
            return c.execute(
                """INSERT INTO sessions (token_hash, annotator_id, epoch, created_at)
                   SELECT ?, id, session_epoch, ? FROM annotators WHERE name = ? AND active = 1 AND session_epoch = ?
                   ON CONFLICT (token_hash) DO NOTHING""", (_token_hash(token), time.time(), name, epoch)).rowcount == 1

    def session_user(self, token: str) -> str | None:
        """The account name of a login session that still holds (any server opened it), else ``None``:
        one indexed read, made on every request."""
        row = self._exec("""SELECT a.name FROM sessions s JOIN annotators a ON a.id = s.annotator_id
                            WHERE s.token_hash = ? AND a.active = 1 AND a.session_epoch = s.epoch""",
                         (_token_hash(token),)).fetchone()
        return row[0] if row is not None else None

    def close_session(self, token: str) -> None:
        with self.write() as c:
            c.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))

    # ------------------------------------------------------------------ projects
    def ensure_project(self, name: str, overlap: int = 3) -> Project:
        """The project called ``name``, created with ``overlap`` when it does not exist yet."""
        if not name or not isinstance(name, str):
            raise UserError("label.project: a project needs a non-empty name")
        if not isinstance(overlap, int) or overlap < 1:
            raise UserError(f"label.overlap: must be an integer >= 1, got {overlap!r}")
        project = self.get_project(name)
        if project is not None:
            return project
        with self.write() as c:
            c.execute("INSERT INTO projects (name, overlap, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                      (name, overlap, time.time()))
        project = self.get_project(name)
        assert project is not None
        return project

    def get_project(self, name: str) -> Project | None:
        if name in self._project_cache:
            return self._project_cache[name]
        row = self._exec("SELECT id, name, overlap FROM projects WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        project = Project(row["id"], row["name"], row["overlap"])
        self._project_cache[name] = project
        return project

    def project(self, name: str) -> Project:
        project = self.get_project(name)
        if project is None:
            raise UserError(f"label.project: no project named {name!r} in {self.path} "
                            f"(known: {self.project_names()}); import items first")
        return project

    def project_names(self) -> list[str]:
        return [r[0] for r in self._exec("SELECT name FROM projects ORDER BY id")]

    def set_overlap(self, project: str, overlap: int) -> None:
        """Change a project's overlap; open slots are recomputed (never below what is labeled)."""
        if overlap < 1:
            raise UserError(f"label.overlap: must be >= 1, got {overlap}")
        p = self.project(project)
        with self.write() as c:
            c.execute("UPDATE projects SET overlap = ? WHERE id = ?", (overlap, p.id))
            open_slots = c.greatest("0", "? - n_labels - (SELECT COUNT(*) FROM assignments a "
                                    "WHERE a.item_id = items.id AND a.status = 'active')")
            c.execute(f"UPDATE items SET slots_left = {open_slots} WHERE project_id = ? AND is_gold = 0", (overlap, p.id))
        self._project_cache.pop(project, None)

    # ------------------------------------------------------------------ items
    def add_items(self, project: str, items: Iterable[Mapping[str, Any] | ItemIn], *, overlap: int | None = None,
                  source: str = "items", line_numbers: Sequence[int] | None = None,
                  skip_existing: bool = False) -> list[int]:
        """Add pairs to label, all or nothing; returns the new rows' ids in order.

        Each item is a mapping (or :class:`ItemIn`) with ``prompt``, ``response_a``, ``response_b`` and
        optionally ``id`` (unique within the project; a content hash when absent), ``source_a`` /
        ``source_b`` (or ``sources: [a, b]``; e.g. model ids), ``safety_a`` / ``safety_b`` (safety-filter
        scores per category), ``meta`` (any JSON object), ``gold_choice`` (``A|B|tie|both_bad``, stored
        order; makes it a gold item) and ``gold_strength``. The project is created with ``overlap``
        (default 3) if needed. Bad input raises :class:`UserError` naming ``source`` and the item's
        position (or ``line_numbers[i]``) and leaves the database unchanged. An id the project already
        has is an error too, unless ``skip_existing`` (a re-run stage adding the same items again):
        then those items are left out.
        """
        def where(i: int) -> str:
            return f"{source}:{line_numbers[i]}" if line_numbers is not None else f"{source}[{i}]"

        if overlap is not None and (not isinstance(overlap, int) or overlap < 1):
            raise UserError(f"label.overlap: must be an integer >= 1, got {overlap!r}")
        if not project or not isinstance(project, str):
            raise UserError("label.project: a project needs a non-empty name")
        clean = [coerce_item(raw, where(i)) for i, raw in enumerate(items)]
        seen: dict[str, int] = {}
        for i, item in enumerate(clean):
            if item.id is None:
                item.id = item_fingerprint(item)
            if item.id in seen:
                raise UserError(f"{where(i)}: duplicate id {item.id!r} (first at {where(seen[item.id])})")
            seen[item.id] = i
        now = time.time()
        ids: list[int] = []
        with self.write() as c:      # the project too: nothing at all is written when anything fails
            c.execute("INSERT INTO projects (name, overlap, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                      (project, overlap if overlap is not None else 3, now))
            row = c.execute("SELECT id, overlap FROM projects WHERE name = ?", (project,)).fetchone()
            project_id, project_overlap = row[0], row[1]
            existing = _existing_ids(c, project_id, list(seen))
            if existing and not skip_existing:
                first = min(seen[e] for e in existing)
                raise UserError(f"{where(first)}: duplicate id {clean[first].id!r}: project {project!r} already has it "
                                f"({len(existing)} duplicate(s) in all); nothing was imported")
            for item in clean:
                if item.id in existing:
                    continue
                gold = item.gold_choice is not None
                row = c.execute(
                    """INSERT INTO items (project_id, ext_id, prompt, response_a, response_b, source_a, source_b,
                       safety_a, safety_b, meta, is_gold, gold_choice, gold_strength, slots_left, created_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
                    (project_id, item.id, item.prompt, item.response_a, item.response_b, item.source_a, item.source_b,
                     _json_or_none(item.safety_a), _json_or_none(item.safety_b), json.dumps(dict(item.meta)),
                     int(gold), item.gold_choice, item.gold_strength, GOLD_SLOTS if gold else project_overlap, now))
                ids.append(row.fetchone()[0])
        log.info("project %s: added %d item(s) from %s%s", project, len(ids), source,
                 f" ({len(existing)} already there, skipped)" if existing else "")
        return ids

    def item(self, item_id: int) -> dict[str, Any] | None:
        row = self._exec("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
        return _item_dict(row) if row is not None else None

    def items(self, project: str) -> list[dict[str, Any]]:
        p = self.project(project)
        return [_item_dict(r) for r in self._exec("SELECT * FROM items WHERE project_id = ? ORDER BY id",
                                                            (p.id,))]

    def count_pending(self, project: str) -> int:
        """Regular (non-gold) items of ``project`` that still have fewer than ``overlap`` labels.

        The ``total - complete`` of :func:`labeling_ui.agreement.project_stats` in one indexed count:
        gold items never count, and a skipped or leased item counts until it has its labels (skips and
        leases do not change ``n_labels``). The overlap is read from the database, so a change made by
        another process is seen too.
        """
        p = self.project(project)
        return self._exec(
            """SELECT COUNT(*) FROM items i JOIN projects p ON p.id = i.project_id
               WHERE i.project_id = ? AND i.is_gold = 0 AND i.n_labels < p.overlap""", (p.id,)).fetchone()[0]

    # ------------------------------------------------------------------ annotators
    def add_annotator(self, name: str, password: str, role: str = "annotator", *, update: bool = False) -> Annotator:
        """Create an annotator (or, with ``update``, reset an existing one's password and role)."""
        if role not in ROLES:
            raise UserError(f"--role: expected one of {ROLES}, got {role!r}")
        if not name or name != name.strip() or len(name) > 64 or any(ch in name for ch in "\n\r\t"):
            raise UserError(f"annotator name {name!r}: 1-64 characters, no surrounding spaces or control characters")
        if len(password) < 8:
            raise UserError(f"annotator {name!r}: the password must have at least 8 characters")
        pw_hash = hash_password(password)
        with self.write() as c:
            row = c.execute("SELECT id FROM annotators WHERE name = ?", (name,)).fetchone()
            if row is not None and not update:
                raise UserError(f"annotator {name!r} already exists (use --update to reset the password or role)")
            if row is None:
                c.execute("INSERT INTO annotators (name, role, pw_hash, created_at) VALUES (?, ?, ?, ?)",
                          (name, role, pw_hash, time.time()))
            else:       # a new password revokes the sessions opened with the old one
                c.execute("""UPDATE annotators SET role = ?, pw_hash = ?, active = 1, session_epoch = session_epoch + 1
                             WHERE id = ?""", (role, pw_hash, row[0]))
                c.execute("DELETE FROM sessions WHERE annotator_id = ?", (row[0],))
        annotator = self.annotator(name)
        assert annotator is not None
        return annotator

    def deactivate_annotator(self, name: str) -> None:
        """Cut an account off: it cannot log in, and its open sessions are revoked at once."""
        self._set_active(name, False)

    def reactivate_annotator(self, name: str) -> None:
        """Let a deactivated account log in again (its old sessions stay revoked)."""
        self._set_active(name, True)

    def _set_active(self, name: str, active: bool) -> None:
        with self.write() as c:
            if c.execute("UPDATE annotators SET active = ?, session_epoch = session_epoch + 1 WHERE name = ?",
                         (int(active), name)).rowcount != 1:
                known = [r[0] for r in c.execute("SELECT name FROM annotators ORDER BY name")]
                raise UserError(f"no annotator named {name!r} (known: {known})")
            # the epoch already ends them everywhere; the rows are deleted so that they do not pile up
            c.execute("DELETE FROM sessions WHERE annotator_id = (SELECT id FROM annotators WHERE name = ?)", (name,))
        self._auth_cache.pop(name, None)
        log.info("annotator %r %s", name, "reactivated" if active else "deactivated; sessions revoked")

    def session_epoch(self, name: str) -> int | None:
        """The account's session epoch (a session opened under another epoch is revoked), ``None`` when
        the account does not exist or is deactivated. One indexed read: checked on every request."""
        row = self._exec("SELECT active, session_epoch FROM annotators WHERE name = ?",
                                   (name,)).fetchone()
        if row is None or not row[0]:
            return None
        return row[1]

    def annotator(self, name: str | None) -> Annotator | None:
        """The active annotator called ``name`` (``None`` for unknown or deactivated names)."""
        if not name:
            return None
        row = self._exec("SELECT id, name, role, active, paused_at FROM annotators WHERE name = ?", (name,)).fetchone()
        if row is None or not row["active"]:
            return None
        return _annotator(row)

    def annotators(self) -> list[Annotator]:
        return [_annotator(r) for r in self._exec("SELECT id, name, role, active, paused_at FROM annotators ORDER BY name")]

    def check_password(self, name: str, password: str) -> bool:
        """Whether ``name`` is an active annotator with this password.

        scrypt costs ~50 ms by design; a successful check is remembered (as an HMAC under a per-process
        key, tied to the stored hash, so a password reset invalidates it) to keep re-logins cheap. A
        failed check costs exactly one scrypt whether the name exists or not (no username oracle).
        """
        if not isinstance(name, str) or not isinstance(password, str):
            return False
        row = self._exec("SELECT pw_hash, active FROM annotators WHERE name = ?", (name,)).fetchone()
        if row is None or not row["active"]:
            verify_password(password, NO_SUCH_USER_HASH)   # the same one scrypt as a real check
            return False
        tag = hmac.new(self._auth_key, password.encode(), "sha256").digest()
        cached = self._auth_cache.get(name)
        if cached is not None and cached[0] == row["pw_hash"] and hmac.compare_digest(cached[1], tag):
            return True
        if verify_password(password, row["pw_hash"]):
            self._auth_cache[name] = (row["pw_hash"], tag)
            return True
        return False

    # ------------------------------------------------------------------ labels (reads)
    def labels(self, project: str, *, withdrawn: bool = False) -> list[dict[str, Any]]:
        """Every label of a project, joined with its annotator's name and the item's gold answer.

        Labels withdrawn by undo are left out (they stay in the table as an audit trail) unless
        ``withdrawn``.
        """
        p = self.project(project)
        keep = "" if withdrawn else "AND l.withdrawn_at IS NULL"
        rows = self._exec(
            f"""SELECT l.*, a.name AS annotator, i.is_gold, i.gold_choice, i.gold_strength, i.ext_id
               FROM labels l JOIN items i ON i.id = l.item_id JOIN annotators a ON a.id = l.annotator_id
               WHERE i.project_id = ? {keep} ORDER BY l.id""", (p.id,)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["flags_a"] = json.loads(d["flags_a"])
            d["flags_b"] = json.loads(d["flags_b"])
            out.append(d)
        return out

    def label_ids(self) -> set[int]:
        """The ids of the labels in force (not withdrawn)."""
        return {r[0] for r in self._exec("SELECT id FROM labels WHERE withdrawn_at IS NULL")}

    def recent_notes(self, project: str, limit: int = 50) -> list[dict[str, Any]]:
        """The newest labels of a project that carry a note (withdrawn ones marked), newest first."""
        p = self.project(project)
        rows = self._exec(
            """SELECT l.id AS label_id, i.ext_id AS item, a.name AS annotator, l.choice, l.note, l.created_at,
                      l.withdrawn_at IS NOT NULL AS withdrawn
               FROM labels l JOIN items i ON i.id = l.item_id JOIN annotators a ON a.id = l.annotator_id
               WHERE i.project_id = ? AND l.note != '' ORDER BY l.id DESC LIMIT ?""", (p.id, limit)).fetchall()
        return [dict(r) | {"withdrawn": bool(r["withdrawn"])} for r in rows]

    def check_invariants(self, project: str | None = None) -> list[str]:
        """Consistency problems (empty when all is well): over-assigned items, counters out of step."""
        where, args = ("WHERE i.project_id = ?", (self.project(project).id,)) if project else ("", ())
        problems = []
        for r in self._exec(f"""SELECT i.id, i.is_gold, i.n_labels, i.slots_left, p.overlap,
                (SELECT COUNT(*) FROM labels l WHERE l.item_id = i.id AND l.withdrawn_at IS NULL) AS labels,
                (SELECT COUNT(*) FROM assignments a WHERE a.item_id = i.id AND a.status = 'active') AS leases
                FROM items i JOIN projects p ON p.id = i.project_id {where}""", args):
            if r["labels"] != r["n_labels"]:
                problems.append(f"item {r['id']}: n_labels {r['n_labels']} but {r['labels']} label rows")
            if not r["is_gold"]:
                if r["labels"] > r["overlap"]:
                    problems.append(f"item {r['id']}: over-assigned, {r['labels']} labels > overlap {r['overlap']}")
                if r["slots_left"] != r["overlap"] - r["labels"] - r["leases"]:
                    problems.append(f"item {r['id']}: slots_left {r['slots_left']} != overlap {r['overlap']} - "
                                    f"{r['labels']} labels - {r['leases']} leases")
        return problems


def _alembic_revision(conn: Connection) -> str | None:
    """The database's Alembic revision (``None``: a new database, or one the old code migrated by hand).
    Read directly: this runs on every open, and Alembic's own reader logs two lines each time."""
    if conn.dialect.name == "postgresql":
        exists = conn.exec_driver_sql("SELECT to_regclass('alembic_version') IS NOT NULL").scalar()
    else:
        exists = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'").scalar()
    if not exists:
        return None
    rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").fetchall()
    return rows[0][0] if rows else None


def _annotator(row: Row) -> Annotator:
    return Annotator(row["id"], row["name"], row["role"], bool(row["active"]), row["paused_at"] is not None)


def clean_flags(flags: Iterable[str] | str | None) -> list[str]:
    """Safety flags as a list of known categories without repeats; ``ValueError`` names an unknown one."""
    if flags is None:
        return []
    if isinstance(flags, str):
        flags = [flags] if flags else []
    out: list[str] = []
    for f in flags:
        if f not in CATEGORIES:
            raise ValueError(f"unknown safety category {f!r}; expected some of {list(CATEGORIES)}")
        if f not in out:
            out.append(f)
    return out


def _token_hash(token: str) -> str:
    return hashlib.sha256(str(token).encode()).hexdigest()


def _existing_ids(conn: Tx, project_id: int, ext_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ext_ids), 500):
        chunk = ext_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in conn.execute(
            f"SELECT ext_id FROM items WHERE project_id = ? AND ext_id IN ({marks})", (project_id, *chunk)))
    return found


def _json_or_none(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(dict(value), sort_keys=True)


def _item_dict(row: Row) -> dict[str, Any]:
    d = dict(row)
    for key in ("safety_a", "safety_b"):
        d[key] = json.loads(d[key]) if d[key] is not None else None
    d["meta"] = json.loads(d["meta"]) if d["meta"] else {}
    d["is_gold"] = bool(d["is_gold"])
    return d
