"""Re-ranking the untouched part of a project's queue while it is being labelled.

An active-learning loop (:mod:`alignment.acquisition`) learns from the first labels of a round and
wants the rest of the round's budget spent on other pairs than those it queued at the start. Here
that happens without annotators seeing anything but their next item:

* only **untouched** items may go: regular (not gold) items with no label, no assignment of any kind
  (active, expired, skipped: an annotator who saw it may come back to it), no reviewer decision,
  all their slots free, that the caller's ``replaceable`` accepts (e.g. "chosen by uncertainty", so a
  random share stays put), and not among the ``keep_next`` untouched items next in line;
* the caller's ``choose`` ranks the replacements; of the ``n`` best, those already queued stay where
  they are, the others come in, and as many of the movable items as came in go out (the lowest ranked,
  newest first). A pair the project holds in either order, or offered twice, is never queued again;
* SQLite: one write transaction (writers are serialised: an annotator asking meanwhile waits for it).
  PostgreSQL: the new items are committed first, then the old ones deleted in a second transaction,
  locked ``FOR UPDATE SKIP LOCKED`` and only if still untouched. PostgreSQL's queue passes over locked
  rows and cannot see uncommitted ones, so in one transaction an annotator asking meanwhile could find
  the queue empty. An item leased in between stays, and one of the new items still untouched goes
  instead; only when all of those were leased too does the queue end longer (annotators faster than
  the re-ranking's two transactions).

New items go to the end of the queue (higher ids); leases, labels and slot counts of every other item
are not touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labeling_ui.store import LabelStore, Tx, coerce_item, item_fingerprint

log = logging.getLogger(__name__)


def pair_key(prompt: str, response_a: str, response_b: str) -> tuple[str, frozenset[str]]:
    """A pair's identity whatever the order of its answers (surrounding whitespace ignored)."""
    return prompt.strip(), frozenset((response_a.strip(), response_b.strip()))


def item_pair_key(item: Mapping[str, Any]) -> tuple[str, frozenset[str]]:
    """:func:`pair_key` of an item (or a pool row): its ``prompt``, ``response_a`` and ``response_b``."""
    return pair_key(item["prompt"], item["response_a"], item["response_b"])


@dataclass
class Requeued:
    """What one re-ranking did: the ``ext_id`` of each item taken out and of each item put in."""

    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    #: Untouched items that could have gone (``replaceable``, not next in line).
    candidates: int = 0


_UNTOUCHED = """SELECT i.* FROM items i JOIN projects p ON p.id = i.project_id
    WHERE i.project_id = ? AND i.is_gold = 0 AND i.n_labels = 0 AND i.slots_left = p.overlap
      AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.item_id = i.id)
      AND NOT EXISTS (SELECT 1 FROM adjudications d WHERE d.item_id = i.id)"""


def _delete_untouched(c: Tx, project_id: int, ids: Sequence[int], limit: int) -> list[str]:
    """Delete the ``limit`` newest of ``ids`` that are still untouched (fewer if fewer are); their
    ``ext_id``s. Only the rows deleted are locked: the others stay free for the queue."""
    if limit <= 0 or not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = c.execute(f"{_UNTOUCHED} AND i.id IN ({marks}) ORDER BY i.id DESC LIMIT ?"
                     f"{c.for_update('i', skip_locked=True)}", (project_id, *ids, limit)).fetchall()
    if rows:
        c.execute(f"DELETE FROM items WHERE id IN ({','.join('?' * len(rows))})", tuple(r["id"] for r in rows))
    return [r["ext_id"] for r in rows]


def requeue_untouched(store: LabelStore, project: str, replaceable: Callable[[dict[str, Any]], bool],
                      choose: Callable[[list[dict[str, Any]], int], Sequence[Mapping[str, Any]]], *,
                      keep_next: int = 10) -> Requeued:
    """Replace untouched items ``replaceable`` accepts by the best of ``choose(fixed_items, n)``.

    ``fixed_items`` are the project's items that stay whatever happens (dicts as :meth:`LabelStore.items`
    returns them); ``choose`` returns items in :meth:`LabelStore.add_items` form, best first (the
    movable items themselves may be among them: they then stay), and may return more than ``n``.
    """
    project_id = store.project(project).id
    with store.read() as c:
        items = store.items(project)  # in this read's snapshot: the store's queries join the open transaction
        untouched = [r["id"] for r in c.execute(_UNTOUCHED + " ORDER BY i.id", (project_id,)).fetchall()]
    movable_ids = set(untouched[keep_next:])
    movable = [it for it in items if it["id"] in movable_ids and replaceable(it)]
    done = Requeued(candidates=len(movable))
    if not movable:
        return done
    movable_ids = {it["id"] for it in movable}
    fixed = [it for it in items if it["id"] not in movable_ids]
    held, best = {item_pair_key(it) for it in fixed}, []
    for raw in choose(fixed, len(movable)):
        item = coerce_item(raw, "re-ranked item")
        key = pair_key(item.prompt, item.response_a, item.response_b)
        if key not in held:
            held.add(key)
            best.append((key, dict(raw) | {"id": item.id or item_fingerprint(item)}))
        if len(best) == len(movable):
            break
    staying, queued = {key for key, _ in best}, {item_pair_key(it) for it in movable}
    new = [raw for key, raw in best if key not in queued]
    leaving = [it["id"] for it in movable if item_pair_key(it) not in staying]
    if not new:
        return done

    def swap(c: Tx, added_ids: list[int]) -> tuple[list[str], list[str]]:
        removed = _delete_untouched(c, project_id, leaving, len(added_ids))
        # an item leased since the read stays: one of the new ones still untouched goes instead (the lowest ranked)
        undone = set(_delete_untouched(c, project_id, added_ids, len(added_ids) - len(removed)))
        marks = ",".join("?" * len(added_ids))
        added = [r[0] for r in c.execute(f"SELECT ext_id FROM items WHERE id IN ({marks}) ORDER BY id",
                                         tuple(added_ids)).fetchall() if r[0] not in undone] if added_ids else []
        return removed, added

    if store.postgres:      # the new items committed first: the queue never looks empty (see the module doc)
        with store.read() as c:     # as many as can still go: the choice took a while
            marks = ",".join("?" * len(leaving))
            free = len(c.execute(f"{_UNTOUCHED} AND i.id IN ({marks})", (project_id, *leaving)).fetchall())
        added_ids = store.add_items(project, new[:free], source="re-ranking", skip_existing=True) if free else []
        done.removed, done.added = store.transact(lambda c: swap(c, added_ids))
    else:                   # one transaction: the queue waits for it, and keeps its size exactly
        done.removed, done.added = store.transact(
            lambda c: swap(c, store.add_items(project, new, source="re-ranking", skip_existing=True)))
    log.info("project %s: re-ranked the queue, %d untouched item(s) replaced (%d could have been)",
             project, len(done.removed), len(movable))
    return done
