"""Annotation quality and progress figures for the admin tab (and ``align-label stats``).

* raw agreement: the share of pairs of labels on the same item that agree, with all four choices, and
  without ties (only pairs where both annotators picked A or B);
* Cohen's kappa per annotator pair over the items both labeled (``sklearn.metrics.cohen_kappa_score``);
* Krippendorff's alpha on the ordinal strength scale: a label is a signed score in stored order,
  ``-strength`` for A, ``+strength`` for B, ``0`` for a tie (both-bad is missing), i.e. nine ordered
  values from "A much better" to "B much better" (the ``krippendorff`` package);
* gold accuracy per annotator, position bias (how often the response shown first was picked),
  labels per annotator and per hour, safety-flag counts.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter, defaultdict
from itertools import combinations
from statistics import median
from typing import Any

import numpy as np

from alignment.safety.categories import CATEGORIES
from labeling_ui.store import LabelStore

ORDINAL_DOMAIN = list(range(-4, 5))


def signed_score(choice: str, strength: int | None) -> float:
    """The ordinal value of a label (stored order): A by 4 = -4 ... tie = 0 ... B by 4 = +4; both-bad NaN."""
    if choice == "A":
        return -float(strength or 1)
    if choice == "B":
        return float(strength or 1)
    if choice == "tie":
        return 0.0
    return math.nan


def raw_agreement(by_item: dict[int, dict[str, str]]) -> dict[str, Any]:
    pairs = agree = pairs_nt = agree_nt = 0
    for labels in by_item.values():
        for x, y in combinations(labels.values(), 2):
            pairs += 1
            agree += x == y
            if x in ("A", "B") and y in ("A", "B"):
                pairs_nt += 1
                agree_nt += x == y
    return {"pairs": pairs, "with_ties": agree / pairs if pairs else None,
            "pairs_without_ties": pairs_nt, "without_ties": agree_nt / pairs_nt if pairs_nt else None}


def cohen_kappas(by_item: dict[int, dict[str, str]], min_shared: int = 2) -> list[dict[str, Any]]:
    from sklearn.metrics import cohen_kappa_score

    shared: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for labels in by_item.values():
        for x, y in combinations(sorted(labels), 2):
            shared[(x, y)].append((labels[x], labels[y]))
    out = []
    for (x, y), pairs in sorted(shared.items()):
        if len(pairs) < min_shared:
            continue
        a, b = zip(*pairs, strict=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kappa = float(cohen_kappa_score(a, b, labels=["A", "B", "tie", "both_bad"]))
        out.append({"annotators": [x, y], "items": len(pairs),
                    "kappa": None if math.isnan(kappa) else kappa,
                    "raw": sum(p == q for p, q in pairs) / len(pairs)})
    return out


def krippendorff_alpha(labels: list[dict[str, Any]]) -> float | None:
    import krippendorff

    annotators = sorted({lab["annotator"] for lab in labels})
    items = sorted({lab["item_id"] for lab in labels})
    if len(annotators) < 2 or not items:
        return None
    row = {a: i for i, a in enumerate(annotators)}
    col = {it: j for j, it in enumerate(items)}
    data = np.full((len(annotators), len(items)), np.nan)
    for lab in labels:
        data[row[lab["annotator"]], col[lab["item_id"]]] = signed_score(lab["choice"], lab["strength"])
    pairable = (~np.isnan(data)).sum(axis=0) >= 2
    if not pairable.any():
        return None
    data = data[:, pairable]
    if len(set(data[~np.isnan(data)].tolist())) < 2:
        return 1.0   # perfect agreement on a single value: alpha is undefined, report agreement
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal",
                                             value_domain=ORDINAL_DOMAIN))
    except (ValueError, ZeroDivisionError):
        return None
    return None if math.isnan(alpha) else alpha


def project_stats(store: LabelStore, project: str, now: float | None = None) -> dict[str, Any]:
    """Everything the admin tab shows, as plain JSON-able data."""
    now = time.time() if now is None else now
    p = store.project(project)
    labels = store.labels(project)
    with store.read() as c:
        total, complete, started, gold_items = c.execute(
            """SELECT COALESCE(SUM(1 - is_gold), 0),
                      COALESCE(SUM(CASE WHEN is_gold = 0 AND n_labels >= ? THEN 1 ELSE 0 END), 0),
                      COALESCE(SUM(CASE WHEN is_gold = 0 AND n_labels > 0 AND n_labels < ? THEN 1 ELSE 0 END), 0),
                      COALESCE(SUM(is_gold), 0)
               FROM items WHERE project_id = ?""", (p.overlap, p.overlap, p.id)).fetchone()
        leases = c.execute("""SELECT COUNT(*) FROM assignments a JOIN items i ON i.id = a.item_id
                              WHERE i.project_id = ? AND a.status = 'active' AND a.expires_at >= ?""",
                           (p.id, now)).fetchone()[0]
        skips = c.execute("""SELECT COUNT(*) FROM assignments a JOIN items i ON i.id = a.item_id
                             WHERE i.project_id = ? AND a.status = 'skipped'""", (p.id,)).fetchone()[0]
        withdrawn = c.execute("""SELECT COUNT(*) FROM labels l JOIN items i ON i.id = l.item_id
                                 WHERE i.project_id = ? AND l.withdrawn_at IS NOT NULL""", (p.id,)).fetchone()[0]

    regular = [lab for lab in labels if not lab["is_gold"]]
    by_item: dict[int, dict[str, str]] = defaultdict(dict)
    for lab in regular:
        by_item[lab["item_id"]][lab["annotator"]] = lab["choice"]

    by_annotator: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for lab in labels:
        by_annotator[lab["annotator"]].append(lab)
    per_annotator: dict[str, dict[str, Any]] = {}
    for name, mine in sorted(by_annotator.items()):
        gold = [lab for lab in mine if lab["is_gold"]]
        ab = [lab for lab in mine if lab["choice"] in ("A", "B")]
        times = [lab["time_ms"] for lab in mine if lab["time_ms"] is not None]
        per_annotator[name] = {
            "labels": len(mine),
            "last_hour": sum(lab["created_at"] >= now - 3600 for lab in mine),
            "median_time_s": median(times) / 1000 if times else None,
            "gold_labels": len(gold),
            "gold_accuracy": (sum(lab["choice"] == lab["gold_choice"] for lab in gold) / len(gold)) if gold else None,
            "picked_first_shown": (sum(lab["choice"] == lab["shown_first"] for lab in ab) / len(ab)) if ab else None,
            "ties": sum(lab["choice"] == "tie" for lab in mine),
            "both_bad": sum(lab["choice"] == "both_bad" for lab in mine),
        }

    per_hour: Counter[str] = Counter()
    for lab in labels:
        if lab["created_at"] >= now - 24 * 3600:
            per_hour[time.strftime("%Y-%m-%d %H:00", time.localtime(lab["created_at"]))] += 1

    flags = {"a_or_b_flagged_labels": 0, "by_category": dict.fromkeys(CATEGORIES, 0)}
    for lab in labels:
        if lab["flags_a"] or lab["flags_b"]:
            flags["a_or_b_flagged_labels"] += 1
        for cat in set(lab["flags_a"]) | set(lab["flags_b"]):
            flags["by_category"][cat] = flags["by_category"].get(cat, 0) + 1

    return {
        "project": project, "overlap": p.overlap,
        "items": {"total": total, "complete": complete, "in_progress": started,
                  "untouched": total - complete - started, "gold": gold_items,
                  "active_leases": leases, "skips": skips},
        "labels": {"total": len(labels), "regular": len(regular), "gold": len(labels) - len(regular),
                   "withdrawn_by_undo": withdrawn,
                   "choices": dict(Counter(lab["choice"] for lab in labels))},
        "per_annotator": per_annotator,
        "per_hour": dict(sorted(per_hour.items())),
        "agreement": {**raw_agreement(by_item), "krippendorff_alpha_ordinal": krippendorff_alpha(regular),
                      "cohen_kappa": cohen_kappas(by_item)},
        "safety_flags": flags,
    }
