"""The two database engines behind the labeling store: SQLite (the embedded default) or PostgreSQL
(several app servers), through SQLAlchemy Core, every write in one transaction.

``label.db`` selects the engine (:func:`database_url`): a path or ``sqlite:///PATH`` is a SQLite file,
``postgresql://USER@HOST/DB`` a PostgreSQL database. :class:`Database` owns the pooled connections and
the transactions; :class:`labeling_ui.store.LabelStore` builds the campaign's records on it.

* Durability (SQLite): WAL with ``synchronous=NORMAL`` by default. A commit is a ``write()`` into the
  WAL file before the call returns, so a committed (acknowledged) label survives SIGKILL of the server process;
  only an OS crash or power loss can drop the last transactions. ``synchronous="FULL"`` (config
  ``label.synchronous``) adds an fsync per commit for power-loss durability.
  PostgreSQL acknowledges a commit once its WAL record is flushed (``synchronous_commit`` on, the
  server's default), so a killed app server loses nothing it acknowledged either.
* Concurrency (SQLite): a process-wide lock serialises this process's writers (no busy-wait sleeps
  between threads), and ``BEGIN IMMEDIATE`` with a busy timeout serialises writers across processes.
  PostgreSQL: concurrent transactions with row locks; see :mod:`labeling_ui.queue`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from alignment.errors import UserError

T = TypeVar("T")

log = logging.getLogger(__name__)

#: SQLSTATEs after which a PostgreSQL transaction is simply run again: a deadlock that the server broke
#: by aborting this side, a serialization failure.
_RETRY_SQLSTATES = frozenset({"40P01", "40001"})
#: ... and a unique violation, for the queue's transactions only: two requests of one annotator (two
#: tabs) that lease the same item at once; the retry finds the lease the other one took.
_UNIQUE_VIOLATION = "23505"


@lru_cache(maxsize=2048)
def _pg_sql(sql: str) -> str:
    """The store's SQL (``?`` placeholders, SQLite's and DB-API's qmark style) in psycopg's ``%s`` style
    (no statement of the store has a literal ``?`` or ``%``)."""
    return sql.replace("?", "%s")


class Row:
    """A result row readable by position (``row[0]``, unpacking) and by column name (``row["id"]``,
    ``dict(row)``), like ``sqlite3.Row`` which the store used before."""

    __slots__ = ("_values", "_index")

    def __init__(self, values: tuple, index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key]] if isinstance(key, str) else self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> Iterable[str]:
        return self._index.keys()


class Rows:
    """A fully read result: the rows (if any) and the number of rows a write touched."""

    __slots__ = ("rows", "rowcount")

    def __init__(self, cursor: Any) -> None:
        self.rowcount = cursor.rowcount
        if cursor.description:
            index = {d[0]: i for i, d in enumerate(cursor.description)}
            self.rows = [Row(tuple(r), index) for r in cursor.fetchall()]
        else:
            self.rows = []

    def fetchone(self) -> Row | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Row]:
        return self.rows

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)


class Tx:
    """One open transaction on either engine (what ``store.write()`` / ``store.read()`` yield).

    SQLAlchemy owns the engine, the pool, the transaction (begin, commit, rollback), the URL and the
    dialect, and Alembic the schema; the statements themselves run on the connection's DB-API cursor:
    compiling each ``text()`` clause through SQLAlchemy's execution path costs more than running the
    statement (docs/experiments.md), and the SQL is written once for both engines anyway. Driver errors
    are raised as SQLAlchemy's exceptions (``IntegrityError``...), as ``Connection.execute`` would raise them.
    """

    __slots__ = ("conn", "postgres", "_cursor", "_dbapi_error")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self._cursor = conn.connection.driver_connection.cursor()
        self._dbapi_error = conn.dialect.loaded_dbapi.Error

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        if self.postgres:
            sql = _pg_sql(sql)
        try:
            self._cursor.execute(sql, tuple(params))
        except self._dbapi_error as e:
            if getattr(self.conn.connection.driver_connection, "closed", False):
                self.conn.invalidate()      # the server went away: the pool must not hand this one out again
            raise DBAPIError.instance(sql, params, e, self._dbapi_error, dialect=self.conn.dialect) from None
        return Rows(self._cursor)

    def for_update(self, of: str | None = None, *, skip_locked: bool = False) -> str:
        """The row-lock clause on PostgreSQL (SQLite's ``BEGIN IMMEDIATE`` already excludes other writers)."""
        if not self.postgres:
            return ""
        return " FOR UPDATE" + (f" OF {of}" if of else "") + (" SKIP LOCKED" if skip_locked else "")

    def greatest(self, a: str, b: str) -> str:
        """SQL for the larger of two values (SQLite's scalar ``MAX``, PostgreSQL's ``GREATEST``)."""
        return f"GREATEST({a}, {b})" if self.postgres else f"MAX({a}, {b})"


class _Held:
    """A connection a thread keeps (SQLite) with its :class:`Tx`; closed, back to the pool, when dropped."""

    __slots__ = ("conn", "tx")

    def __init__(self, conn: Connection) -> None:
        self.conn, self.tx = conn, Tx(conn)

    def __del__(self) -> None:
        try:
            self.conn.close()
        except Exception:   # noqa: BLE001 - interpreter shutdown or a connection already gone
            pass


@contextmanager
def _checked_out(conn: Connection) -> Iterator[_Held]:
    with conn:
        yield _Held(conn)


def database_url(db: str | Path) -> tuple[URL, str]:
    """``label.db`` as an SQLAlchemy URL and a printable name (no password).

    A path or ``sqlite:///PATH`` is SQLite; ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`` (or
    ``postgres://``, or ``postgresql+psycopg://``) is PostgreSQL through psycopg 3.
    """
    s = str(db)
    if "://" not in s:
        return URL.create("sqlite", database=s), s
    try:
        url = make_url(s)
    except ArgumentError:
        raise UserError(f"label.db: {s!r} is not a database URL (expected a file path, sqlite:///PATH or "
                        "postgresql://USER@HOST[:PORT]/DB)") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database:
            raise UserError(f"label.db: {s!r} names no file (sqlite:///PATH)")
        return url.set(drivername="sqlite"), url.database
    if backend in ("postgresql", "postgres"):
        if not url.database:
            raise UserError(f"label.db: {url.render_as_string(hide_password=True)!r} names no database "
                            "(postgresql://USER@HOST[:PORT]/DB)")
        url = url.set(drivername="postgresql+psycopg")
        return url, url.set(drivername="postgresql").render_as_string(hide_password=True)
    raise UserError(f"label.db: unsupported database {backend!r} in {s!r} (expected a file path, sqlite:///PATH "
                    "or postgresql://USER@HOST[:PORT]/DB)")


def first_line(e: BaseException) -> str:
    """A driver error's first line, for a one-line message."""
    inner = getattr(e, "orig", None) or e
    lines = [ln.strip() for ln in str(inner).splitlines() if ln.strip()]
    return lines[0] if lines else type(inner).__name__


# --------------------------------------------------------------------------------------------- the engines
class Database:
    """Thread-safe connections and transactions on one database: a SQLite file or a PostgreSQL database.

    SQLite: a pool of connections in WAL mode; writers are serialised in this process by a lock (no
    busy-wait between threads) and across processes by ``BEGIN IMMEDIATE`` with a busy timeout.
    PostgreSQL: a pool of psycopg connections; writers run concurrently under READ COMMITTED, taking
    row locks where the queue needs them (``FOR UPDATE``, ``SKIP LOCKED``), and a transaction the
    server aborts for a deadlock is run again (:meth:`transact`).
    """

    def __init__(self, path: str | Path, synchronous: str = "NORMAL", busy_timeout_ms: int = 30_000,
                 pool_size: int = 16) -> None:
        synchronous = synchronous.upper()
        if synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise UserError(f"label.synchronous: expected NORMAL, FULL or EXTRA, got {synchronous!r}")
        url, self.where = database_url(path)
        self.postgres = url.get_backend_name() == "postgresql"
        #: The SQLite file (``None`` on PostgreSQL).
        self.path: Path | None = None if self.postgres else Path(self.where)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._wlock = threading.RLock()
        if self.postgres:
            # Connections above pool_size are closed when returned, and opening one forks a server
            # process: keep about as many open as the app's worker threads use at once. Single reads
            # (the session check of every request) have a pool of their own whose connections stay in
            # autocommit: switching a pooled connection there and back cost round trips of its own.
            connect_args = {"connect_timeout": 10, "application_name": "align-label"}
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size // 2, pool_timeout=60,
                                        connect_args=connect_args)
            self._read_engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=pool_size // 2,
                                              max_overflow=pool_size // 2, pool_timeout=60, connect_args=connect_args)
        else:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Connections are cheap and serialised by the write lock: keep one per busy thread.
            self.engine = create_engine(url, pool_size=64, max_overflow=-1,
                                        connect_args={"check_same_thread": False,
                                                      "timeout": busy_timeout_ms / 1000})
            event.listen(self.engine, "connect", self._sqlite_connect)
            event.listen(self.engine, "begin", self._sqlite_begin)
            self._read_engine = self.engine

    # ------------------------------------------------------------------ connections and transactions
    def _sqlite_connect(self, dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None        # transactions are begun by _sqlite_begin, not the driver
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise UserError(f"{self.where}: SQLite refused WAL mode (got {mode!r}); is it on a network filesystem?")
        cur.execute(f"PRAGMA synchronous = {self.synchronous}")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @staticmethod
    def _sqlite_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("label_write") else "BEGIN")

    def _connect(self, engine: Engine | None = None) -> Connection:
        """A pooled connection; a database that cannot be reached is a :class:`UserError`."""
        try:
            return (engine or self.engine).connect()
        except OperationalError as e:
            raise UserError(f"label.db: cannot connect to {self.where}: {first_line(e)}") from None

    def _held(self, engine: Engine | None = None) -> AbstractContextManager[_Held]:
        """This thread's connection (and a cursor on it) for one transaction or read.

        SQLite: the thread keeps one open connection, so a request costs no pool checkout and checkin
        per statement group (a large share of the server's work per label otherwise); it goes back to
        the pool when the thread ends or the store closes. PostgreSQL: a pooled connection per use, so
        that idle threads hold none of the server's backends.
        """
        if self.postgres:
            return _checked_out(self._connect(engine))
        held = getattr(self._local, "held", None)
        if held is None or held.conn.closed or held.conn.invalidated:
            held = self._local.held = _Held(self._connect(engine))
        return nullcontext(held)

    @contextmanager
    def _transaction(self, kind: str) -> Iterator[Tx]:
        tx = getattr(self._local, "tx", None)
        if tx is not None:               # nested use from the same thread joins the outer transaction
            yield tx
            return
        with (self._wlock if kind == "write" and not self.postgres else nullcontext()), self._held() as held:
            conn = held.conn
            conn.execution_options(label_write=kind == "write")
            if kind == "snapshot" and self.postgres:
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                tx = self._local.tx = held.tx
                try:
                    yield tx
                finally:
                    self._local.tx = None

    def write(self) -> AbstractContextManager[Tx]:
        """One write transaction (SQLite: ``BEGIN IMMEDIATE``), committed at the end, rolled back on any error."""
        return self._transaction("write")

    def read(self) -> AbstractContextManager[Tx]:
        """A consistent snapshot for several reads."""
        return self._transaction("snapshot")

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """One read statement: in this thread's open transaction if there is one, else on its own in
        autocommit (no ``BEGIN``/``COMMIT`` round trips for a single read)."""
        tx = getattr(self._local, "tx", None)
        if tx is not None:
            return tx.execute(sql, params)
        with self._held(self._read_engine) as held:
            return held.tx.execute(sql, params)

    def transact(self, fn: Callable[[Tx], T], *, retry_unique: bool = False) -> T:
        """``fn`` inside one write transaction; on PostgreSQL run again (a fresh transaction) when the
        server aborted it for a deadlock or serialization failure (or, with ``retry_unique``, a unique
        violation). No sleeping between tries: the other side has committed or rolled back by then."""
        if getattr(self._local, "tx", None) is not None:
            return fn(self._local.tx)
        for attempt in range(1, 51):
            try:
                with self.write() as c:
                    return fn(c)
            except DBAPIError as e:
                code = getattr(e.orig, "sqlstate", None)
                if not self.postgres or attempt == 50 or not (
                        code in _RETRY_SQLSTATES or (retry_unique and code == _UNIQUE_VIOLATION)):
                    raise
                log.debug("transaction aborted (%s), running it again (try %d)", code, attempt + 1)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._local = threading.local()     # first: the threads' held connections go back to the pool
        self.engine.dispose()
        if self._read_engine is not self.engine:
            self._read_engine.dispose()
