"""Who labels what next: overlap, leases, gold items, A/B order, skip and undo.

Rules (each call is one transaction; they hold across threads, and across processes and app servers
sharing the database):

* every item needs ``overlap`` labels from distinct annotators. ``items.slots_left`` counts what is
  still open (``overlap - labels - active leases``); an item is handed out only by a conditional
  ``UPDATE ... SET slots_left = slots_left - 1 WHERE slots_left > 0``, so no item ever gets more than
  ``overlap`` labels (a trigger in the schema double-checks every insert);
* an annotator never sees an item twice: ``UNIQUE (item_id, annotator_id)`` on assignments;
* an assignment is a lease: it expires ``lease_seconds`` after it was handed out (or last renewed),
  and its slot goes back to the pool (looked for at most once a second per queue). A label sent on an expired lease is still accepted when the item
  has a free slot, else refused (the caller gets the next item instead);
* gold items (known answers) are mixed in at ``gold_rate``; they never run out of slots;
* the A/B order is drawn per assignment and stored (``shown_first``); callers speak in *display* terms
  (``A`` = the response shown first), the store in *stored* terms;
* ``skip`` releases the slot (the annotator never gets the item again); ``undo`` withdraws the
  annotator's last label (the row stays, with ``withdrawn_at``, as an audit trail; it counts nowhere
  any more) and re-opens its assignment, which becomes the current item again. Label ids are never
  reused;
* a paused account (:mod:`labeling_ui.review`) gets no new item and cannot label or undo; its open
  leases went back to the pool when it was paused. A label on a gold item applies the campaign's gold
  rule in the same transaction, so the label that brings an account's gold accuracy below the
  threshold pauses it at once.

How they hold under concurrency. SQLite: one writer at a time (``BEGIN IMMEDIATE``), so a transaction
sees everything before it. PostgreSQL (READ COMMITTED, writers in parallel, several app servers):

* a new lease takes an item with ``SELECT ... FOR UPDATE SKIP LOCKED``: concurrent requests take
  different items instead of queueing behind one row, and the slot is taken by the conditional
  ``UPDATE`` on the locked row;
* expired leases are reclaimed in their own short transaction (``FOR UPDATE SKIP LOCKED`` on the
  leases, items updated in id order), so two reclaimers never return one slot twice;
* submit, skip and undo lock the assignment (or label) row first: a submit sent twice at once (a
  retry racing the original) waits for the first and returns its label id;
* the overlap trigger locks the item row before it counts labels (:mod:`labeling_ui.schema`);
* a transaction PostgreSQL aborts for a deadlock is run again (:meth:`LabelStore.transact`); nothing
  polls or sleeps: a writer that must wait blocks on the row lock.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from labeling_ui.review import apply_gold_rule, return_leases
from labeling_ui.store import CHOICES, Annotator, LabelStore, Project, Row, Tx, clean_flags


class QueueError(Exception):
    """A request the queue refuses (not yours, already closed, bad choice); the message is user-safe."""


#: The refusal a paused account gets (:mod:`labeling_ui.review`).
PAUSED = "your account is paused"


@dataclass
class Shown:
    """An item as one annotator sees it: ``response_left`` is the one shown first (display ``A``)."""

    assignment_id: int
    item_id: int
    prompt: str
    response_left: str
    response_right: str
    expires_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_stored(choice: str, shown_first: str) -> str:
    """Map a display choice (``A`` = left) to the stored order."""
    if choice not in CHOICES:
        raise QueueError(f"choice must be one of {CHOICES}, got {choice!r}")
    if shown_first == "A" or choice in ("tie", "both_bad"):
        return choice
    return "B" if choice == "A" else "A"


class LabelQueue:
    """The assignment logic of one project over a :class:`LabelStore`."""

    def __init__(self, store: LabelStore, project: str, *, gold_rate: float = 0.1, lease_seconds: float = 600.0,
                 seed: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.project_name = project
        self.gold_rate = gold_rate
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._rng = random.Random(f"queue/{project}/{seed}")
        self._reclaimed_at = -math.inf

    @property
    def project(self) -> Project:
        return self.store.project(self.project_name)

    # ------------------------------------------------------------------ internals (inside a transaction)
    def _annotator_id(self, annotator: str | Annotator) -> int:
        """The id of an annotator given by name (looked up) or as an :class:`Annotator` just looked up."""
        if isinstance(annotator, Annotator):
            return annotator.id
        a = self.store.annotator(annotator)
        if a is None:
            raise QueueError("unknown or deactivated annotator")
        return a.id

    def _reclaim_due(self, now: float) -> bool:
        """Whether to look for expired leases now: at most once a second (a tenth of the lease, if
        shorter) per queue. A lease is reclaimed a moment after it expires instead of on every
        request, which spares every request a scan (and, on PostgreSQL, a transaction)."""
        if now - self._reclaimed_at < min(1.0, self.lease_seconds / 10):
            return False
        self._reclaimed_at = now
        return True

    def _reclaim(self, c: Tx, now: float) -> int:
        """Return the slots of expired leases to the pool."""
        rows = c.execute(f"""SELECT id, item_id FROM assignments WHERE status = 'active' AND expires_at < ?
                             ORDER BY id{c.for_update(skip_locked=True)}""", (now,)).fetchall()
        return return_leases(c, ((r[0], r[1]) for r in rows), now)

    def _reclaim_apart(self) -> None:
        """On PostgreSQL, reclaim in a short transaction of its own before the caller's: its row locks
        are released at once instead of being held while the caller takes others (fewer lock waits and
        deadlocks between app servers). On SQLite ``_next`` reclaims inside the one serialised transaction."""
        now = self.clock()
        if self.store.postgres and self._reclaim_due(now):
            self.store.transact(lambda c: self._reclaim(c, now))

    def _shown(self, c: Tx, assignment_id: int) -> Shown:
        r = c.execute("""SELECT a.id, a.item_id, a.shown_first, a.expires_at, i.prompt, i.response_a, i.response_b
                         FROM assignments a JOIN items i ON i.id = a.item_id WHERE a.id = ?""",
                      (assignment_id,)).fetchone()
        return _as_shown(r)

    def _next(self, c: Tx, annotator_id: int, now: float) -> Shown | None:
        if c.postgres:
            return self._next_pg(c, annotator_id, now)
        project = self.project
        if self._reclaim_due(now):
            self._reclaim(c, now)
        # The annotator's own open lease first (a reload, or the item re-opened by undo).
        r = c.execute("""SELECT a.id FROM assignments a JOIN items i ON i.id = a.item_id
                         WHERE a.annotator_id = ? AND a.status = 'active' AND i.project_id = ?
                         ORDER BY a.leased_at DESC, a.id DESC LIMIT 1""", (annotator_id, project.id)).fetchone()
        if r is not None:
            c.execute("UPDATE assignments SET expires_at = ? WHERE id = ?", (now + self.lease_seconds, r[0]))
            return self._shown(c, r[0])
        if c.execute("SELECT paused_at FROM annotators WHERE id = ?", (annotator_id,)).fetchone()[0] is not None:
            return None                 # a paused account gets no new item
        want_gold = self.gold_rate > 0 and self._rng.random() < self.gold_rate
        for is_gold in ((1, 0) if want_gold else (0,)):
            while True:
                # SQLite's planner needs the hint to walk the partial index of open items in id order.
                row = c.execute(
                    """SELECT i.id FROM items i INDEXED BY items_open
                       WHERE i.project_id = ? AND i.is_gold = ? AND i.slots_left > 0
                         AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.item_id = i.id AND a.annotator_id = ?)
                       ORDER BY i.id LIMIT 1""", (project.id, is_gold, annotator_id)).fetchone()
                if row is None:
                    break
                item_id = row[0]
                if c.execute("UPDATE items SET slots_left = slots_left - 1 WHERE id = ? AND slots_left > 0",
                             (item_id,)).rowcount != 1:
                    continue        # cannot happen under BEGIN IMMEDIATE; kept as a belt-and-braces retry
                shown_first = "A" if self._rng.random() < 0.5 else "B"
                new = c.execute(
                    """INSERT INTO assignments (item_id, annotator_id, shown_first, status, leased_at, expires_at)
                       VALUES (?, ?, ?, 'active', ?, ?) RETURNING id""",
                    (item_id, annotator_id, shown_first, now, now + self.lease_seconds)).fetchone()[0]
                return self._shown(c, new)
        return None

    def _next_pg(self, c: Tx, annotator_id: int, now: float) -> Shown | None:
        """:meth:`_next` on PostgreSQL: the same rules, one round trip per step. The own lease is renewed
        and read back in one statement; a new lease is one statement too: the first open item this
        annotator has not seen, locked with ``FOR UPDATE SKIP LOCKED`` (a row another transaction is
        leasing is passed over, not waited for), its slot taken, the assignment inserted, and the item
        read back. The items this annotator has seen are excluded with ``NOT IN`` (one hashed subplan
        over their assignments) rather than ``NOT EXISTS``: with statistics gathered while the table
        was small, PostgreSQL plans the latter as a nested loop over all of them per item, a cost that
        grows with the square of the annotator's count. A paused account gets no new lease: the
        statement first takes a share lock on the account's row and finds it not paused, so a pause
        (which updates that row) either waits for this lease and then returns it, or this statement
        waits for the pause and then sees it."""
        project = self.project
        r = c.execute(
            """WITH own AS (SELECT a.id FROM assignments a JOIN items i ON i.id = a.item_id
                            WHERE a.annotator_id = ? AND a.status = 'active' AND i.project_id = ?
                            ORDER BY a.leased_at DESC, a.id DESC LIMIT 1),
                    renewed AS (UPDATE assignments SET expires_at = ? FROM own WHERE assignments.id = own.id
                                RETURNING assignments.id, assignments.item_id, assignments.shown_first,
                                          assignments.expires_at)
               SELECT r.id, r.item_id, r.shown_first, r.expires_at, i.prompt, i.response_a, i.response_b
               FROM renewed r JOIN items i ON i.id = r.item_id""",
            (annotator_id, project.id, now + self.lease_seconds)).fetchone()
        if r is not None:
            return _as_shown(r)
        want_gold = self.gold_rate > 0 and self._rng.random() < self.gold_rate
        shown_first = "A" if self._rng.random() < 0.5 else "B"
        for is_gold in ((1, 0) if want_gold else (0,)):
            r = c.execute(
                """WITH me AS (SELECT id FROM annotators WHERE id = ? AND paused_at IS NULL FOR SHARE),
                        pick AS (SELECT i.id FROM items i
                                 WHERE EXISTS (SELECT 1 FROM me) AND i.project_id = ? AND i.is_gold = ?
                                   AND i.slots_left > 0
                                   AND i.id NOT IN (SELECT a.item_id FROM assignments a WHERE a.annotator_id = ?)
                                 ORDER BY i.id LIMIT 1 FOR UPDATE OF i SKIP LOCKED),
                        took AS (UPDATE items SET slots_left = items.slots_left - 1 FROM pick
                                 WHERE items.id = pick.id AND items.slots_left > 0
                                 RETURNING items.id, items.prompt, items.response_a, items.response_b),
                        leased AS (INSERT INTO assignments (item_id, annotator_id, shown_first, status, leased_at,
                                                            expires_at)
                                   SELECT took.id, ?, ?, 'active', ?, ? FROM took
                                   RETURNING id, item_id, shown_first, expires_at)
                   SELECT l.id, l.item_id, l.shown_first, l.expires_at, t.prompt, t.response_a, t.response_b
                   FROM leased l JOIN took t ON t.id = l.item_id""",
                (annotator_id, project.id, is_gold, annotator_id, annotator_id, shown_first, now,
                 now + self.lease_seconds)).fetchone()
            if r is not None:
                return _as_shown(r)
        return None

    def _own_assignment(self, c: Tx, annotator_id: int, assignment_id: Any) -> Row:
        """The caller's assignment, locked until the transaction ends (PostgreSQL)."""
        try:
            assignment_id = int(assignment_id)
        except (TypeError, ValueError):
            raise QueueError("no such assignment") from None
        if not -(2 ** 31) <= assignment_id < 2 ** 31:
            raise QueueError("no such assignment")
        r = c.execute(f"""SELECT a.*, i.project_id, i.is_gold, n.paused_at FROM assignments a
                          JOIN items i ON i.id = a.item_id JOIN annotators n ON n.id = a.annotator_id
                          WHERE a.id = ?{c.for_update("a")}""", (assignment_id,)).fetchone()
        # Someone else's assignment reads exactly like a missing one: nothing leaks.
        if r is None or r["annotator_id"] != annotator_id or r["project_id"] != self.project.id:
            raise QueueError("no such assignment")
        return r

    # ------------------------------------------------------------------ public API
    def next_item(self, annotator: str | Annotator) -> Shown | None:
        """The annotator's current item (leasing a new one when needed), or ``None`` when nothing is left
        for them or their account is paused (:func:`labeling_ui.review.is_paused` tells which)."""
        annotator_id = self._annotator_id(annotator)
        self._reclaim_apart()
        return self.store.transact(lambda c: self._next(c, annotator_id, self.clock()), retry_unique=True)

    def submit(self, annotator: str | Annotator, assignment_id: int, choice: str, strength: int | None = None,
               flags_left: Iterable[str] = (), flags_right: Iterable[str] = (), note: str = "",
               time_ms: int | None = None) -> tuple[int, Shown | None]:
        """Store a label given in display terms; returns ``(label_id, next item)``.

        Idempotent: re-sending a label for an assignment that is already labeled returns the same
        label id (a client retrying after a lost response never creates a second label), also when
        the two arrive at once (the second waits for the first's lock on the assignment).
        """
        choice = str(choice)
        if choice not in CHOICES:
            raise QueueError(f"choice must be one of {CHOICES}, got {choice!r}")
        if choice in ("A", "B"):
            try:
                strength = int(strength)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise QueueError("choose how much better (strength 1-4) before picking A or B") from None
            if not 1 <= strength <= 4:
                raise QueueError(f"strength must be 1-4, got {strength}")
        else:
            strength = None
        flags_left, flags_right = _flags(flags_left), _flags(flags_right)
        note = str(note or "")[:5000]
        annotator_id = self._annotator_id(annotator)
        self._reclaim_apart()

        def label(c: Tx) -> tuple[int, Shown | None]:
            nonlocal time_ms
            now = self.clock()
            a = self._own_assignment(c, annotator_id, assignment_id)
            if a["status"] == "labeled":
                row = c.execute("SELECT id FROM labels WHERE assignment_id = ? AND withdrawn_at IS NULL",
                                (a["id"],)).fetchone()
                return row[0], self._next(c, annotator_id, now)
            if a["paused_at"] is not None:
                raise QueueError(PAUSED)
            if a["status"] == "skipped":
                raise QueueError("this item was skipped")
            if a["status"] == "expired":
                # The lease ran out and its slot went back to the pool: take it again if still free.
                if c.execute("UPDATE items SET slots_left = slots_left - 1 WHERE id = ? AND slots_left > 0",
                             (a["item_id"],)).rowcount != 1:
                    raise QueueError("the lease on this item expired and it has all its labels now")
            stored = to_stored(choice, a["shown_first"])
            flags_a, flags_b = (flags_left, flags_right) if a["shown_first"] == "A" else (flags_right, flags_left)
            if time_ms is None:
                time_ms = int(max(0.0, now - a["leased_at"]) * 1000)
            time_ms = max(0, min(int(time_ms), 86_400_000))
            values = (a["item_id"], annotator_id, a["id"], stored, a["shown_first"], strength,
                      json.dumps(flags_a), json.dumps(flags_b), note, int(time_ms), now)
            insert = """INSERT INTO labels (item_id, annotator_id, assignment_id, choice, shown_first, strength,
                        flags_a, flags_b, note, time_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        RETURNING id"""
            try:
                if c.postgres:      # one round trip: the label and its assignment's new status
                    label_id = c.execute(f"""WITH l AS ({insert}), done AS (UPDATE assignments SET status = 'labeled',
                                             closed_at = ? WHERE id = ?) SELECT id FROM l""",
                                         (*values, now, a["id"])).fetchone()[0]
                else:
                    label_id = c.execute(insert, values).fetchone()[0]
                    c.execute("UPDATE assignments SET status = 'labeled', closed_at = ? WHERE id = ?", (now, a["id"]))
            except IntegrityError as e:     # the overlap trigger: never expected, never silent
                raise QueueError(f"label refused: {str(e.orig).splitlines()[0]}") from None
            c.execute("UPDATE items SET n_labels = n_labels + 1 WHERE id = ?", (a["item_id"],))
            if a["is_gold"]:
                apply_gold_rule(c, annotator_id, now)       # may pause the account: then no next item
            return label_id, self._next(c, annotator_id, now)

        return self.store.transact(label, retry_unique=True)

    def skip(self, annotator: str | Annotator, assignment_id: int) -> Shown | None:
        """Give the item back to the pool (this annotator will not get it again); returns the next item."""
        annotator_id = self._annotator_id(annotator)
        self._reclaim_apart()

        def skip(c: Tx) -> Shown | None:
            now = self.clock()
            a = self._own_assignment(c, annotator_id, assignment_id)
            if a["status"] == "active":
                c.execute("UPDATE assignments SET status = 'skipped', closed_at = ? WHERE id = ?", (now, a["id"]))
                c.execute("UPDATE items SET slots_left = slots_left + 1 WHERE id = ?", (a["item_id"],))
            elif a["status"] == "expired":
                c.execute("UPDATE assignments SET status = 'skipped', closed_at = ? WHERE id = ?", (now, a["id"]))
            elif a["status"] == "labeled":
                raise QueueError("this item is already labeled (use undo to change the label)")
            return self._next(c, annotator_id, now)

        return self.store.transact(skip, retry_unique=True)

    def undo(self, annotator: str | Annotator) -> Shown | None:
        """Withdraw the annotator's last label in this project; its item becomes the current one again.

        Returns that item, or the current item unchanged when there is nothing to undo.
        """
        annotator_id = self._annotator_id(annotator)
        self._reclaim_apart()

        def undo(c: Tx) -> Shown | None:
            now = self.clock()
            if c.execute("SELECT paused_at FROM annotators WHERE id = ?", (annotator_id,)).fetchone()[0] is not None:
                return None             # undo would re-open a lease: a paused account gets none
            r = c.execute(f"""SELECT l.id, l.item_id, l.assignment_id FROM labels l JOIN items i ON i.id = l.item_id
                              WHERE l.annotator_id = ? AND i.project_id = ? AND l.withdrawn_at IS NULL
                              ORDER BY l.id DESC LIMIT 1{c.for_update("l")}""",
                          (annotator_id, self.project.id)).fetchone()
            if r is None:
                return self._next(c, annotator_id, now)
            if c.execute("UPDATE labels SET withdrawn_at = ? WHERE id = ? AND withdrawn_at IS NULL",
                         (now, r["id"])).rowcount != 1:
                raise QueueError("that label was withdrawn already")
            c.execute("UPDATE items SET n_labels = n_labels - 1 WHERE id = ?", (r["item_id"],))
            # The label's slot becomes the re-opened lease's slot: slots_left does not move.
            c.execute("""UPDATE assignments SET status = 'active', leased_at = ?, expires_at = ?, closed_at = NULL
                         WHERE id = ?""", (now, now + self.lease_seconds, r["assignment_id"]))
            return self._shown(c, r["assignment_id"])

        return self.store.transact(undo, retry_unique=True)

    def progress(self, annotator: str | Annotator) -> dict[str, int]:
        """The annotator's own counts, and the project's open/complete item counts (no one else's data)."""
        annotator_id = self._annotator_id(annotator)
        project = self.project
        with self.store.read() as c:
            mine = c.execute("""SELECT COUNT(*) FROM labels l JOIN items i ON i.id = l.item_id
                                WHERE l.annotator_id = ? AND i.project_id = ? AND l.withdrawn_at IS NULL""",
                             (annotator_id, project.id)).fetchone()[0]
            today = c.execute("""SELECT COUNT(*) FROM labels l JOIN items i ON i.id = l.item_id
                                 WHERE l.annotator_id = ? AND i.project_id = ? AND l.created_at >= ?
                                   AND l.withdrawn_at IS NULL""",
                              (annotator_id, project.id, time.time() - 86400)).fetchone()[0]
            skipped = c.execute("""SELECT COUNT(*) FROM assignments a JOIN items i ON i.id = a.item_id
                                   WHERE a.annotator_id = ? AND a.status = 'skipped' AND i.project_id = ?""",
                                (annotator_id, project.id)).fetchone()[0]
            total, complete = c.execute("""SELECT COUNT(*), COALESCE(SUM(CASE WHEN n_labels >= ? THEN 1 ELSE 0 END), 0) FROM items
                                           WHERE project_id = ? AND is_gold = 0""",
                                        (project.overlap, project.id)).fetchone()
        return {"labeled": mine, "labeled_24h": today, "skipped": skipped,
                "project_items": total, "project_complete": complete}


def _as_shown(r: Row) -> Shown:
    """A row of (assignment id, item id, shown_first, expires_at, prompt, response_a, response_b)."""
    left, right = (r["response_a"], r["response_b"]) if r["shown_first"] == "A" else (r["response_b"], r["response_a"])
    return Shown(r["id"], r["item_id"], r["prompt"], left, right, r["expires_at"])


def _flags(flags: Iterable[str] | None) -> list[str]:
    try:
        return clean_flags(flags)
    except ValueError as e:
        raise QueueError(str(e)) from None
