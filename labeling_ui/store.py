"""The labeling database: SQLite in WAL mode, schema-versioned, every write in one ``BEGIN IMMEDIATE``.

One file holds everything the labeling app knows: projects, items (a prompt and two responses, with
where they came from and what the safety filter thought of them), annotators (salted scrypt password
hashes and a role), assignments (leases, see :mod:`labeling_ui.queue`) and labels.

Conventions
-----------
* Responses are stored in a fixed order, ``response_a`` then ``response_b``. Labels always speak of that
  *stored* order (``choice`` is ``A`` / ``B`` / ``tie`` / ``both_bad``); which one the annotator saw on
  the left is recorded separately (``shown_first``), so position bias can be measured.
* Durability: WAL with ``synchronous=NORMAL`` by default. A commit is a ``write()`` into the WAL file
  before the call returns, so a committed (acknowledged) label survives SIGKILL of the server process;
  only an OS crash or power loss can drop the last transactions. ``synchronous="FULL"`` (config
  ``label.synchronous``) adds an fsync per commit for power-loss durability.
* Concurrency: a process-wide lock serialises this process's writers (no busy-wait sleeps between
  threads), and ``BEGIN IMMEDIATE`` with a busy timeout serialises writers across processes.
* Schema versions: ``PRAGMA user_version`` is the truth, and the ``schema_version`` table keeps the
  history. :data:`MIGRATIONS` is append-only; opening a database applies the missing ones in order.
* Labels are never deleted: undo sets ``withdrawn_at`` (an audit trail), and every count, the
  statistics and the export read only the labels in force. Label ids come from ``AUTOINCREMENT``, so
  no id is ever handed out twice.
* Accounts carry a ``session_epoch``: a password change, deactivation or reactivation bumps it, and
  :mod:`labeling_ui.auth` ends every session opened under an older epoch.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignment.errors import UserError

log = logging.getLogger(__name__)

ROLES = ("annotator", "admin")
CHOICES = ("A", "B", "tie", "both_bad")
#: Gold items are shown to every annotator who has not seen them: their slots never run out.
GOLD_SLOTS = 1 << 40

# --------------------------------------------------------------------------------------------- schema
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
SCHEMA_VERSION = len(MIGRATIONS)


# --------------------------------------------------------------------------------------------- passwords
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    """A salted scrypt hash, ``scrypt$n$r$p$salt$hash`` (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return "scrypt${n}${r}${p}${s}${d}".format(**_SCRYPT, s=b64(salt).decode(), d=b64(digest).decode())


#: What an unknown name is checked against: a well-formed hash (random salt and digest, no password
#: has it) with the same cost as a real one, so an unknown name costs exactly one scrypt like a known one.
_NO_SUCH_USER_HASH = "scrypt${n}${r}${p}${s}${d}".format(
    **_SCRYPT, s=base64.b64encode(secrets.token_bytes(16)).decode(),
    d=base64.b64encode(secrets.token_bytes(32)).decode())


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(base64.b64decode(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


# --------------------------------------------------------------------------------------------- records
@dataclass
class Annotator:
    id: int
    name: str
    role: str
    active: bool

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


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


# --------------------------------------------------------------------------------------------- the store
class LabelStore:
    """Thread-safe access to one labeling database file (one connection per thread)."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL", busy_timeout_ms: int = 30_000) -> None:
        synchronous = synchronous.upper()
        if synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise UserError(f"label.synchronous: expected NORMAL, FULL or EXTRA, got {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._wlock = threading.RLock()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._project_cache: dict[str, Project] = {}
        self._auth_cache: dict[str, tuple[str, bytes]] = {}
        self._auth_key = secrets.token_bytes(32)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    # ------------------------------------------------------------------ connections and transactions
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self.busy_timeout_ms / 1000)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise UserError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); is it on a network filesystem?")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error)."""
        conn = self._conn()
        with self._wlock:
            if conn.in_transaction:      # nested use from the same thread joins the outer transaction
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several reads (a deferred transaction)."""
        conn = self._conn()
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()
        self._local = threading.local()

    # ------------------------------------------------------------------ migrations
    def schema_version(self) -> int:
        return self._conn().execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        conn = self._conn()
        with self.write():
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise UserError(f"{self.path}: database schema version {current} is newer than this code "
                                f"understands ({SCHEMA_VERSION}); upgrade alignment-pipeline")
            if current == SCHEMA_VERSION:
                return
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                         "description TEXT NOT NULL, applied_at REAL NOT NULL)")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                description, sql = MIGRATIONS[version - 1]
                for statement in _split_sql(sql):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                             (version, description, time.time()))
                conn.execute(f"PRAGMA user_version = {version}")
                log.info("labeling db %s: migrated to schema version %d (%s)", self.path, version, description)

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
            c.execute("INSERT OR IGNORE INTO projects (name, overlap, created_at) VALUES (?, ?, ?)",
                      (name, overlap, time.time()))
        project = self.get_project(name)
        assert project is not None
        return project

    def get_project(self, name: str) -> Project | None:
        if name in self._project_cache:
            return self._project_cache[name]
        row = self._conn().execute("SELECT id, name, overlap FROM projects WHERE name = ?", (name,)).fetchone()
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
        return [r[0] for r in self._conn().execute("SELECT name FROM projects ORDER BY id")]

    def set_overlap(self, project: str, overlap: int) -> None:
        """Change a project's overlap; open slots are recomputed (never below what is labeled)."""
        if overlap < 1:
            raise UserError(f"label.overlap: must be >= 1, got {overlap}")
        p = self.project(project)
        with self.write() as c:
            c.execute("UPDATE projects SET overlap = ? WHERE id = ?", (overlap, p.id))
            c.execute("""UPDATE items SET slots_left = MAX(0, ? - n_labels - (SELECT COUNT(*) FROM assignments a
                         WHERE a.item_id = items.id AND a.status = 'active')) WHERE project_id = ? AND is_gold = 0""",
                      (overlap, p.id))
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
            c.execute("INSERT OR IGNORE INTO projects (name, overlap, created_at) VALUES (?, ?, ?)",
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
                cur = c.execute(
                    """INSERT INTO items (project_id, ext_id, prompt, response_a, response_b, source_a, source_b,
                       safety_a, safety_b, meta, is_gold, gold_choice, gold_strength, slots_left, created_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (project_id, item.id, item.prompt, item.response_a, item.response_b, item.source_a, item.source_b,
                     _json_or_none(item.safety_a), _json_or_none(item.safety_b), json.dumps(dict(item.meta)),
                     int(gold), item.gold_choice, item.gold_strength, GOLD_SLOTS if gold else project_overlap, now))
                ids.append(cur.lastrowid)
        log.info("project %s: added %d item(s) from %s%s", project, len(ids), source,
                 f" ({len(existing)} already there, skipped)" if existing else "")
        return ids

    def item(self, item_id: int) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
        return _item_dict(row) if row is not None else None

    def items(self, project: str) -> list[dict[str, Any]]:
        p = self.project(project)
        return [_item_dict(r) for r in self._conn().execute("SELECT * FROM items WHERE project_id = ? ORDER BY id",
                                                            (p.id,))]

    def count_pending(self, project: str) -> int:
        """Regular (non-gold) items of ``project`` that still have fewer than ``overlap`` labels.

        The ``total - complete`` of :func:`labeling_ui.agreement.project_stats` in one indexed count:
        gold items never count, and a skipped or leased item counts until it has its labels (skips and
        leases do not change ``n_labels``). The overlap is read from the database, so a change made by
        another process is seen too.
        """
        p = self.project(project)
        return self._conn().execute(
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
        self._auth_cache.pop(name, None)
        log.info("annotator %r %s", name, "reactivated" if active else "deactivated; sessions revoked")

    def session_epoch(self, name: str) -> int | None:
        """The account's session epoch (a session opened under another epoch is revoked), ``None`` when
        the account does not exist or is deactivated. One indexed read: checked on every request."""
        row = self._conn().execute("SELECT active, session_epoch FROM annotators WHERE name = ?",
                                   (name,)).fetchone()
        if row is None or not row[0]:
            return None
        return row[1]

    def annotator(self, name: str | None) -> Annotator | None:
        """The active annotator called ``name`` (``None`` for unknown or deactivated names)."""
        if not name:
            return None
        row = self._conn().execute("SELECT id, name, role, active FROM annotators WHERE name = ?", (name,)).fetchone()
        if row is None or not row["active"]:
            return None
        return Annotator(row["id"], row["name"], row["role"], bool(row["active"]))

    def annotators(self) -> list[Annotator]:
        return [Annotator(r["id"], r["name"], r["role"], bool(r["active"]))
                for r in self._conn().execute("SELECT id, name, role, active FROM annotators ORDER BY name")]

    def check_password(self, name: str, password: str) -> bool:
        """Whether ``name`` is an active annotator with this password.

        scrypt costs ~50 ms by design; a successful check is remembered (as an HMAC under a per-process
        key, tied to the stored hash, so a password reset invalidates it) to keep re-logins cheap. A
        failed check costs exactly one scrypt whether the name exists or not (no username oracle).
        """
        if not isinstance(name, str) or not isinstance(password, str):
            return False
        row = self._conn().execute("SELECT pw_hash, active FROM annotators WHERE name = ?", (name,)).fetchone()
        if row is None or not row["active"]:
            verify_password(password, _NO_SUCH_USER_HASH)   # the same one scrypt as a real check
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
        rows = self._conn().execute(
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
        return {r[0] for r in self._conn().execute("SELECT id FROM labels WHERE withdrawn_at IS NULL")}

    def recent_notes(self, project: str, limit: int = 50) -> list[dict[str, Any]]:
        """The newest labels of a project that carry a note (withdrawn ones marked), newest first."""
        p = self.project(project)
        rows = self._conn().execute(
            """SELECT l.id AS label_id, i.ext_id AS item, a.name AS annotator, l.choice, l.note, l.created_at,
                      l.withdrawn_at IS NOT NULL AS withdrawn
               FROM labels l JOIN items i ON i.id = l.item_id JOIN annotators a ON a.id = l.annotator_id
               WHERE i.project_id = ? AND l.note != '' ORDER BY l.id DESC LIMIT ?""", (p.id, limit)).fetchall()
        return [dict(r) | {"withdrawn": bool(r["withdrawn"])} for r in rows]

    def check_invariants(self, project: str | None = None) -> list[str]:
        """Consistency problems (empty when all is well): over-assigned items, counters out of step."""
        c = self._conn()
        where, args = ("WHERE i.project_id = ?", (self.project(project).id,)) if project else ("", ())
        problems = []
        for r in c.execute(f"""SELECT i.id, i.is_gold, i.n_labels, i.slots_left, p.overlap,
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


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (``sqlite3.complete_statement`` keeps triggers whole)."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements


def _existing_ids(conn: sqlite3.Connection, project_id: int, ext_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ext_ids), 500):
        chunk = ext_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in conn.execute(
            f"SELECT ext_id FROM items WHERE project_id = ? AND ext_id IN ({marks})", (project_id, *chunk)))
    return found


def _json_or_none(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(dict(value), sort_keys=True)


def _item_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for key in ("safety_a", "safety_b"):
        d[key] = json.loads(d[key]) if d[key] is not None else None
    d["meta"] = json.loads(d["meta"]) if d["meta"] else {}
    d["is_gold"] = bool(d["is_gold"])
    return d
