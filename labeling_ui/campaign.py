"""The admin tab's campaign views, computed from what the store already reads (``items``, ``labels``):
an item browser (every item with its status, agreement and flags; every label of an item) and each
annotator's throughput per day and agreement with the other annotators' majority.

Plain functions over plain rows, no queries of their own: the UI calls them, tests feed them rows.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

#: Item status filter values (``gold`` items are never complete: they are labeled by everyone).
STATUSES = ("complete", "in_progress", "untouched", "gold")
#: Agreement filter values: every label the same choice, or not (items with fewer than 2 labels are neither).
AGREEMENTS = ("unanimous", "split")
FLAG_FILTERS = ("flagged", "unflagged")


def item_status(item: dict[str, Any], overlap: int) -> str:
    if item["is_gold"]:
        return "gold"
    if item["n_labels"] >= overlap:
        return "complete"
    return "in_progress" if item["n_labels"] > 0 else "untouched"


def majority_share(choices: list[str]) -> float | None:
    """The share of labels that made the most common choice; ``None`` under two labels."""
    if len(choices) < 2:
        return None
    return Counter(choices).most_common(1)[0][1] / len(choices)


def item_rows(items: Iterable[dict[str, Any]], labels: Iterable[dict[str, Any]], overlap: int) -> list[dict[str, Any]]:
    """One row per item: status, labels in force (oldest first), agreement, the flagged categories."""
    by_item: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for lab in labels:
        by_item[lab["item_id"]].append(lab)
    rows = []
    for item in items:
        mine = sorted(by_item.get(item["id"], []), key=lambda lab: lab["id"])
        flags = sorted({f for lab in mine for f in (*lab["flags_a"], *lab["flags_b"])})
        rows.append({"id": item["id"], "ext_id": item["ext_id"], "prompt": item["prompt"],
                     "response_a": item["response_a"], "response_b": item["response_b"],
                     "status": item_status(item, overlap), "n_labels": len(mine),
                     "agreement": majority_share([lab["choice"] for lab in mine]), "flags": flags, "labels": mine})
    return rows


def filter_items(rows: list[dict[str, Any]], *, search: str = "", status: str | None = None,
                 agreement: str | None = None, flags: str | None = None) -> list[dict[str, Any]]:
    """The rows that match every given filter. ``search`` (case-insensitive) looks in the item's id, its
    texts and its labels' notes and annotators."""
    needle = search.strip().lower()

    def matches(row: dict[str, Any]) -> bool:
        if status and row["status"] != status:
            return False
        if agreement == "unanimous" and row["agreement"] != 1.0:
            return False
        if agreement == "split" and (row["agreement"] is None or row["agreement"] >= 1.0):
            return False
        if flags == "flagged" and not row["flags"]:
            return False
        if flags == "unflagged" and row["flags"]:
            return False
        if needle:
            texts = [row["ext_id"], row["prompt"], row["response_a"], row["response_b"],
                     *(lab["note"] for lab in row["labels"]), *(lab["annotator"] for lab in row["labels"])]
            return any(needle in text.lower() for text in texts)
        return True

    return [row for row in rows if matches(row)]


def annotator_quality(labels: Iterable[dict[str, Any]], *, days: int = 7,
                      now: float | None = None) -> dict[str, dict[str, Any]]:
    """Per annotator: labels per day over the last ``days`` days (local dates, oldest first) and agreement
    with the majority of the *other* annotators of the same items (regular items where the others' most
    common choice is unique). Gold accuracy is in :func:`labeling_ui.agreement.project_stats`."""
    now = time.time() if now is None else now
    labels = list(labels)
    dates = [time.strftime("%Y-%m-%d", time.localtime(now - 86400 * d)) for d in range(days - 1, -1, -1)]
    by_item: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for lab in labels:
        if not lab["is_gold"]:
            by_item[lab["item_id"]].append(lab)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted({lab["annotator"] for lab in labels}):
        mine = [lab for lab in labels if lab["annotator"] == name]
        per_day = Counter(time.strftime("%Y-%m-%d", time.localtime(lab["created_at"])) for lab in mine)
        agree = compared = 0
        for lab in mine:
            if lab["is_gold"]:
                continue
            others = Counter(o["choice"] for o in by_item[lab["item_id"]] if o["annotator"] != name)
            top = others.most_common(2)
            if not top or (len(top) == 2 and top[0][1] == top[1][1]):
                continue                    # no other label, or no single majority
            compared += 1
            agree += lab["choice"] == top[0][0]
        out[name] = {
            "labels": len(mine),
            "per_day": {d: per_day.get(d, 0) for d in dates},
            "compared": compared,
            "majority_agreement": agree / compared if compared else None,
        }
    return out
