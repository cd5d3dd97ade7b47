"""Campaign quality control: reviewers' decisions on disagreements, and pausing annotators.

Adjudication
------------
A reviewer (role ``reviewer`` or ``admin``) reads every label of an item whose labels disagree and
records a decision in stored order: ``A`` / ``B`` with a strength 1-4, ``tie`` or ``both_bad``, the
safety flags of each response and a note. A decision is stored with its reviewer and time and never
deleted: a newer decision on the same item supersedes it (``superseded_at``), so the history stays.
The export (:mod:`labeling_ui.export`) takes the item's current decision instead of the majority vote.

Pausing
-------
An account can be paused: it gets no new items (the queue hands it none, refuses its labels and undo,
and the page says why), and its open leases go back to the queue in the same transaction. An admin
pauses and un-pauses from the Admin tab; the campaign's gold rule (:class:`PauseRule`, in the
database's ``settings`` so every app server applies the same one) pauses automatically: when a label
on a gold item brings the account's gold accuracy below ``threshold`` after at least ``min_gold`` gold
labels. Un-pausing starts the count afresh (``gold_since``): only gold labels given after it count, so
the account is not paused again at once by the same old answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from alignment.errors import UserError
from labeling_ui.store import CHOICES, Annotator, LabelStore, Tx, clean_flags

#: The ``settings`` keys of the gold rule (absent threshold: no automatic pausing).
THRESHOLD_KEY = "pause_gold_accuracy"
MIN_GOLD_KEY = "pause_gold_min"
DEFAULT_MIN_GOLD = 10
#: What the reviewer's list shows: items still waiting for a decision, decided ones, or both.
REVIEW_STATES = ("open", "decided")


class ReviewError(Exception):
    """A decision the store refuses (bad choice, unknown item, not a reviewer); the message is user-safe."""


@dataclass(frozen=True)
class PauseRule:
    """Pause an annotator whose gold accuracy is below ``threshold`` once ``min_gold`` gold labels count."""

    threshold: float
    min_gold: int


# --------------------------------------------------------------------------------------------- pausing
def pause_rule(store: LabelStore) -> PauseRule | None:
    """The campaign's gold rule, or ``None`` when automatic pausing is off."""
    threshold = store.setting(THRESHOLD_KEY)
    if threshold is None:
        return None
    return PauseRule(float(threshold), int(store.setting(MIN_GOLD_KEY) or DEFAULT_MIN_GOLD))


def set_pause_rule(store: LabelStore, threshold: float | None, min_gold: int = DEFAULT_MIN_GOLD) -> PauseRule | None:
    """Set (or, with ``threshold=None``, turn off) the gold rule for every app server on the database."""
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise UserError(f"pause rule: the gold accuracy threshold must be in (0, 1], got {threshold!r}")
    if not isinstance(min_gold, int) or isinstance(min_gold, bool) or min_gold < 1:
        raise UserError(f"pause rule: the minimum number of gold labels must be an integer >= 1, got {min_gold!r}")
    with store.write() as c:
        if threshold is None:
            c.execute("DELETE FROM settings WHERE key = ?", (THRESHOLD_KEY,))
        else:
            for key, value in ((THRESHOLD_KEY, repr(float(threshold))), (MIN_GOLD_KEY, str(min_gold))):
                c.execute("""INSERT INTO settings (key, value) VALUES (?, ?)
                             ON CONFLICT (key) DO UPDATE SET value = excluded.value""", (key, value))
    return pause_rule(store)


def return_leases(c: Tx, leases: Iterable[Any], now: float) -> int:
    """Close ``leases`` (rows of assignment id, item id) as expired and give their slots back to the pool,
    items updated in id order (one lock order for everyone who returns slots: no deadlock between them)."""
    per_item: dict[int, int] = {}
    n = 0
    for assignment_id, item_id in leases:
        c.execute("UPDATE assignments SET status = 'expired', closed_at = ? WHERE id = ?", (now, assignment_id))
        per_item[item_id] = per_item.get(item_id, 0) + 1
        n += 1
    for item_id in sorted(per_item):
        c.execute("UPDATE items SET slots_left = slots_left + ? WHERE id = ?", (per_item[item_id], item_id))
    return n


def pause_in(c: Tx, annotator_id: int, reason: str, now: float) -> int:
    """Pause the account inside the caller's transaction and return its open leases to the queue;
    returns how many went back (0 as well when it was paused already)."""
    if c.execute("UPDATE annotators SET paused_at = ?, pause_reason = ? WHERE id = ? AND paused_at IS NULL",
                 (now, reason, annotator_id)).rowcount != 1:
        return 0
    leases = c.execute(f"""SELECT id, item_id FROM assignments WHERE annotator_id = ? AND status = 'active'
                           ORDER BY id{c.for_update()}""", (annotator_id,)).fetchall()
    return return_leases(c, ((r[0], r[1]) for r in leases), now)


def gold_accuracy_in(c: Tx, annotator_id: int) -> tuple[int, int]:
    """``(gold labels, correct ones)`` of the account that count for the gold rule (in force, given since
    its last un-pause)."""
    n, correct = c.execute(
        """SELECT COUNT(*), COALESCE(SUM(CASE WHEN l.choice = i.gold_choice THEN 1 ELSE 0 END), 0)
           FROM labels l JOIN items i ON i.id = l.item_id JOIN annotators n ON n.id = l.annotator_id
           WHERE l.annotator_id = ? AND i.is_gold = 1 AND l.withdrawn_at IS NULL
             AND l.created_at >= COALESCE(n.gold_since, 0)""", (annotator_id,)).fetchone()
    return int(n), int(correct)


def apply_gold_rule(c: Tx, annotator_id: int, now: float) -> bool:
    """After a label on a gold item: pause the account when the campaign's rule says so; whether it did."""
    row = c.execute("SELECT key, value FROM settings WHERE key IN (?, ?)", (THRESHOLD_KEY, MIN_GOLD_KEY)).fetchall()
    values = {r[0]: r[1] for r in row}
    if THRESHOLD_KEY not in values:
        return False
    threshold, min_gold = float(values[THRESHOLD_KEY]), int(values.get(MIN_GOLD_KEY, DEFAULT_MIN_GOLD))
    n, correct = gold_accuracy_in(c, annotator_id)
    if n < min_gold or correct / n >= threshold:
        return False
    pause_in(c, annotator_id, "gold", now)
    return True


def _account(c: Tx, name: str) -> int:
    row = c.execute("SELECT id FROM annotators WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise UserError(f"no annotator named {name!r}")
    return row[0]


def pause(store: LabelStore, name: str, *, reason: str = "admin") -> int:
    """Pause ``name`` now (an admin's decision); returns how many open leases went back to the queue."""
    return store.transact(lambda c: pause_in(c, _account(c, name), reason, time.time()))


def unpause(store: LabelStore, name: str) -> bool:
    """Let ``name`` label again; gold accuracy counts afresh from now. ``False`` when it was not paused."""
    def run(c: Tx) -> bool:
        now = time.time()
        return c.execute("""UPDATE annotators SET paused_at = NULL, pause_reason = NULL, gold_since = ?
                            WHERE id = ? AND paused_at IS NOT NULL""", (now, _account(c, name))).rowcount == 1
    return store.transact(run)


def is_paused(store: LabelStore, annotator: str | Annotator) -> bool:
    """Whether the account is paused (read now: another server may have paused it a moment ago)."""
    name = annotator.name if isinstance(annotator, Annotator) else annotator
    with store.read() as c:
        row = c.execute("SELECT paused_at FROM annotators WHERE name = ?", (name,)).fetchone()
    return row is not None and row[0] is not None


def pause_states(store: LabelStore) -> dict[str, dict[str, Any]]:
    """Per account: paused or not (when, why) and the gold labels that count for the rule."""
    out = {}
    with store.read() as c:
        for r in c.execute("SELECT id, name, paused_at, pause_reason FROM annotators ORDER BY name").fetchall():
            n, correct = gold_accuracy_in(c, r["id"])
            out[r["name"]] = {"paused_at": r["paused_at"], "reason": r["pause_reason"], "gold_counted": n,
                              "gold_accuracy": correct / n if n else None}
    return out


# --------------------------------------------------------------------------------------------- adjudication
def adjudicate(store: LabelStore, item_id: int, reviewer: Annotator, choice: str, strength: int | None = None,
               flags_a: Iterable[str] = (), flags_b: Iterable[str] = (), note: str = "") -> int:
    """Record ``reviewer``'s decision on an item (stored order), superseding any earlier one; its id."""
    if not reviewer.is_reviewer:
        raise ReviewError("only reviewers and admins adjudicate")
    if choice not in CHOICES:
        raise ReviewError(f"choice must be one of {CHOICES}, got {choice!r}")
    if choice in ("A", "B"):
        if not isinstance(strength, int) or isinstance(strength, bool) or not 1 <= strength <= 4:
            raise ReviewError(f"strength must be 1-4 for {choice}, got {strength!r}")
    else:
        strength = None
    try:
        flags = json.dumps(clean_flags(flags_a)), json.dumps(clean_flags(flags_b))
    except ValueError as e:
        raise ReviewError(str(e)) from None

    def run(c: Tx) -> int:
        now = time.time()
        if c.execute(f"SELECT id FROM items WHERE id = ?{c.for_update()}", (item_id,)).fetchone() is None:
            raise ReviewError("no such item")
        c.execute("UPDATE adjudications SET superseded_at = ? WHERE item_id = ? AND superseded_at IS NULL",
                  (now, item_id))
        return c.execute("""INSERT INTO adjudications (item_id, reviewer_id, choice, strength, flags_a, flags_b, note,
                            created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
                         (item_id, reviewer.id, choice, strength, *flags, str(note or "")[:5000], now)).fetchone()[0]
    return store.transact(run)


def adjudications(store: LabelStore, project: str, *, history: bool = False) -> list[dict[str, Any]]:
    """The decisions on a project's items (the current ones; every one with ``history``), oldest first,
    with the reviewer's name and the item's external id."""
    p = store.project(project)
    keep = "" if history else "AND d.superseded_at IS NULL"
    with store.read() as c:
        rows = c.execute(
            f"""SELECT d.*, n.name AS reviewer, i.ext_id FROM adjudications d JOIN items i ON i.id = d.item_id
                JOIN annotators n ON n.id = d.reviewer_id WHERE i.project_id = ? {keep} ORDER BY d.id""",
            (p.id,)).fetchall()
    return [dict(r) | {"flags_a": json.loads(r["flags_a"]), "flags_b": json.loads(r["flags_b"])} for r in rows]


def disagreements(rows: list[dict[str, Any]], decided: dict[int, dict[str, Any]], *,
                  state: str | None = None) -> list[dict[str, Any]]:
    """The item-browser rows (:func:`labeling_ui.campaign.item_rows`) of regular items whose labels
    disagree (two or more labels, not all the same choice), each with its current ``decision`` (or
    ``None``); ``state`` keeps only the ``open`` or the ``decided`` ones."""
    out = []
    for row in rows:
        if row["status"] == "gold" or row["agreement"] is None or row["agreement"] >= 1.0:
            continue
        decision = decided.get(row["id"])
        if (state == "open" and decision is not None) or (state == "decided" and decision is None):
            continue
        out.append(row | {"decision": decision})
    return out
