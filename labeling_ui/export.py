"""Labels -> a preferences dataset in TRL's format (``prompt``, ``chosen``, ``rejected``), on disk.

Per item, the labels are aggregated by majority vote over ``A | B | tie | both_bad`` (stored order):

* a strict majority for A or B gives a row with the winner as ``chosen``; ``margin`` is the mean margin
  of the majority's strengths (``margins[strength - 1]``; Llama 2's "margin small" 0, 1/3, 2/3, 1 by
  default), ``agreement`` the majority's share of the item's labels, ``n_labels`` their number;
* a majority for tie / both-bad is dropped, or kept (``keep_ties`` / ``keep_both_bad``) as a row with
  ``label`` = ``tie`` / ``both_bad``, ``chosen`` = response A, ``rejected`` = response B and margin 0,
  so a trainer can filter on ``label``;
* no strict majority (e.g. 1 A, 1 B) drops the item; so do items with fewer than ``min_labels``
  labels (by default the project's overlap: complete items only), and gold items unless
  ``include_gold``. Labels withdrawn by undo count nowhere.

**Adjudicated items.** Where a reviewer recorded a decision on an item (:mod:`labeling_ui.review`; the
newest one counts), the decision replaces the vote: its choice is the winner (an item without a
majority, or with fewer than ``min_labels`` labels, is exported all the same: a person decided it), its
strength gives the margin, its safety flags are the item's flags (the reviewer read the annotators'
and may have corrected them), and a tie / both-bad decision follows ``keep_ties`` / ``keep_both_bad``
like a vote would. ``agreement`` stays the share of the annotators' labels that made the decided
choice, ``adjudicated`` is true, and the reviewer's note comes last in ``notes``. Gold items stay out
unless ``include_gold``.

``notes`` lists the notes annotators left on the item (any label, empty ones left out), so a
trainer or a reviewer can read why a pair was hard.

Safety columns: ``chosen_flags`` / ``rejected_flags`` (categories any annotator flagged on that
response), ``chosen_flagged`` / ``rejected_flagged`` (any flag at all), and the safety filter's
highest category score per response when the candidates stage recorded scores
(``chosen_safety_max`` / ``rejected_safety_max``, else null).

The dataset is written with ``save_to_disk`` into a temporary folder beside ``out_dir`` that is then
renamed into place (a previous export is replaced only once the new one is complete), together with
``summary.json``, whose ``safety`` section reports how often the chosen response was flagged, and
the marker file :data:`MARKER`. An existing ``out_dir`` is replaced only when it is a previous export
(it has the marker, or it is an export written before the marker existed: nothing but a saved dataset
and ``summary.json``) or empty; anything else (``--out runs/x`` pointing at a run folder, say) is an
error and nothing is touched.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alignment.errors import UserError
from alignment.safety.categories import CATEGORIES
from labeling_ui.review import adjudications
from labeling_ui.store import LabelStore

log = logging.getLogger(__name__)

DEFAULT_MARGINS = (0.0, 1 / 3, 2 / 3, 1.0)
#: Safety-filter score above which a response counts as flagged by the filter in the summary.
FILTER_THRESHOLD = 0.5
#: Written into every export folder: only a folder that has it (or looks exactly like an older
#: export) may be replaced by the next export.
MARKER = ".alignment-export"
#: What ``save_to_disk`` and this module write; an unmarked folder of only these is an older export.
_LEGACY_EXPORT_FILES = ("summary.json", "dataset_info.json", "state.json")


def aggregate(store: LabelStore, project: str, *, keep_ties: bool = False, keep_both_bad: bool = False,
              min_labels: int | None = None, include_gold: bool = False,
              margins: Sequence[float] = DEFAULT_MARGINS) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The exported rows and the summary (without writing anything).

    ``min_labels=None`` means the project's overlap: only items with all their labels are exported.
    """
    if len(margins) != 4:
        raise UserError(f"label.export.margins: need 4 values (strength 1..4), got {list(margins)}")
    if min_labels is None:
        min_labels = store.project(project).overlap
    if not isinstance(min_labels, int) or min_labels < 1:
        raise UserError(f"label.export.min_labels: must be >= 1, got {min_labels}")
    items = {it["id"]: it for it in store.items(project)}
    by_item: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for lab in store.labels(project):
        by_item[lab["item_id"]].append(lab)

    decisions = {d["item_id"]: d for d in adjudications(store, project)}

    rows: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    for item_id, labels in sorted(by_item.items()):
        item = items[item_id]
        decision = decisions.get(item_id)
        if item["is_gold"] and not include_gold:
            dropped["gold"] += 1
            continue
        if decision is None and len(labels) < min_labels:
            dropped["below_min_labels"] += 1
            continue
        votes = Counter(lab["choice"] for lab in labels).most_common()
        if decision is None and len(votes) > 1 and votes[0][1] == votes[1][1]:
            dropped["no_majority"] += 1
            continue
        winner = decision["choice"] if decision is not None else votes[0][0]
        if (winner == "tie" and not keep_ties) or (winner == "both_bad" and not keep_both_bad):
            dropped[winner] += 1
            continue
        a_wins = winner != "B"
        chosen_key, rejected_key = ("a", "b") if a_wins else ("b", "a")
        majority = [lab for lab in labels if lab["choice"] == winner]
        flagged_by = [decision] if decision is not None else labels
        if winner not in ("A", "B"):
            margin = 0.0
        elif decision is not None:
            margin = margins[decision["strength"] - 1]
        else:
            margin = sum(margins[lab["strength"] - 1] for lab in majority) / len(majority)
        chosen_flags = sorted({f for lab in flagged_by for f in lab[f"flags_{chosen_key}"]}, key=_cat_order)
        rejected_flags = sorted({f for lab in flagged_by for f in lab[f"flags_{rejected_key}"]}, key=_cat_order)
        notes = [lab["note"] for lab in labels if lab["note"].strip()]
        if decision is not None and decision["note"].strip():
            notes.append(decision["note"])
        rows.append({
            "prompt": item["prompt"],
            "chosen": item[f"response_{chosen_key}"],
            "rejected": item[f"response_{rejected_key}"],
            "margin": float(margin),
            "agreement": len(majority) / len(labels),
            "n_labels": len(labels),
            "label": "chosen" if winner in ("A", "B") else winner,
            "item_id": item["ext_id"],
            "chosen_source": item[f"source_{chosen_key}"],
            "rejected_source": item[f"source_{rejected_key}"],
            "chosen_flags": chosen_flags,
            "rejected_flags": rejected_flags,
            "chosen_flagged": bool(chosen_flags),
            "rejected_flagged": bool(rejected_flags),
            "chosen_safety_max": _max_score(item[f"safety_{chosen_key}"]),
            "rejected_safety_max": _max_score(item[f"safety_{rejected_key}"]),
            "notes": notes,
            "adjudicated": decision is not None,
        })
    return rows, _summary(project, items, by_item, rows, dropped,
                          dict(keep_ties=keep_ties, keep_both_bad=keep_both_bad, min_labels=min_labels,
                               include_gold=include_gold, margins=list(margins)))


def _cat_order(cat: str) -> int:
    return CATEGORIES.index(cat) if cat in CATEGORIES else len(CATEGORIES)


def _max_score(scores: dict[str, float] | None) -> float | None:
    return max(scores.values()) if scores else None


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _summary(project: str, items: dict[int, dict], by_item: dict, rows: list[dict], dropped: Counter,
             options: dict) -> dict[str, Any]:
    prefs = [r for r in rows if r["label"] == "chosen"]
    n = len(prefs)
    by_cat_chosen = Counter(c for r in prefs for c in r["chosen_flags"])
    by_cat_rejected = Counter(c for r in prefs for c in r["rejected_flags"])
    scored = [r for r in prefs if r["chosen_safety_max"] is not None and r["rejected_safety_max"] is not None]
    return {
        "project": project,
        "options": options,
        "items": {"total": sum(not it["is_gold"] for it in items.values()),
                  "gold": sum(it["is_gold"] for it in items.values()),
                  "labeled": len(by_item)},
        "rows": len(rows),
        "preferences": n,
        "rows_by_label": dict(Counter(r["label"] for r in rows)),
        "adjudicated": sum(r["adjudicated"] for r in rows),
        "dropped": dict(dropped),
        "mean_margin": _rate(sum(r["margin"] for r in prefs), n) if n else None,
        "mean_agreement": _rate(sum(r["agreement"] for r in rows), len(rows)) if rows else None,
        "safety": {
            # How often annotators flagged the response they preferred: high values mean the data
            # would teach a reward model to like unsafe text.
            "chosen_flagged": sum(r["chosen_flagged"] for r in prefs),
            "chosen_flagged_rate": _rate(sum(r["chosen_flagged"] for r in prefs), n),
            "rejected_flagged_rate": _rate(sum(r["rejected_flagged"] for r in prefs), n),
            "chosen_flagged_by_category": {c: by_cat_chosen[c] for c in CATEGORIES if by_cat_chosen[c]},
            "rejected_flagged_by_category": {c: by_cat_rejected[c] for c in CATEGORIES if by_cat_rejected[c]},
            "filter": {
                "scored_pairs": len(scored),
                "threshold": FILTER_THRESHOLD,
                "chosen_unsafe_rate": _rate(sum(r["chosen_safety_max"] > FILTER_THRESHOLD for r in scored), len(scored)),
                "rejected_unsafe_rate": _rate(sum(r["rejected_safety_max"] > FILTER_THRESHOLD for r in scored),
                                              len(scored)),
            },
        },
    }


def _features():
    from datasets import Features, Value
    try:
        from datasets import List as Seq  # datasets >= 4
    except ImportError:                             # pragma: no cover - datasets 3
        from datasets import Sequence as Seq

    return Features({
        "prompt": Value("string"), "chosen": Value("string"), "rejected": Value("string"),
        "margin": Value("float64"), "agreement": Value("float64"), "n_labels": Value("int32"),
        "label": Value("string"), "item_id": Value("string"),
        "chosen_source": Value("string"), "rejected_source": Value("string"),
        "chosen_flags": Seq(Value("string")), "rejected_flags": Seq(Value("string")),
        "chosen_flagged": Value("bool"), "rejected_flagged": Value("bool"),
        "chosen_safety_max": Value("float64"), "rejected_safety_max": Value("float64"),
        "notes": Seq(Value("string")),
        "adjudicated": Value("bool"),
    })


def check_replaceable(out_dir: Path) -> None:
    """Refuse (``UserError`` naming the folder) to replace ``out_dir`` unless it is a previous export.

    The export renames an existing folder aside and deletes it; pointed at a run folder by mistake it
    would delete a database. So only a folder this module wrote (the marker), an older export (nothing
    but a saved dataset and ``summary.json``) or an empty folder may go.
    """
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise UserError(f"export: {out_dir} exists and is not a folder; nothing was written (pick another --out / "
                        "label.export.dir)")
    if (out_dir / MARKER).is_file():
        return
    entries = list(out_dir.iterdir())
    legacy = (all(e.is_file() and (e.name in _LEGACY_EXPORT_FILES
                                   or (e.name.startswith("data-") and e.name.endswith(".arrow"))) for e in entries)
              and all((out_dir / name).is_file() for name in _LEGACY_EXPORT_FILES))
    if entries and not legacy:
        raise UserError(f"export: {out_dir} exists and is not a previous export (no {MARKER} file in it); "
                        "an export replaces only its own folder, so nothing was touched: pick another --out / "
                        "label.export.dir")


def export_options(export: Any) -> dict[str, Any]:
    """:func:`export_preferences`'s options from a ``label.export`` config section."""
    return dict(keep_ties=export.keep_ties, keep_both_bad=export.keep_both_bad, min_labels=export.min_labels,
                include_gold=export.include_gold, margins=list(export.margins))


def _why_empty(summary: dict[str, Any], out_dir: Path) -> str:
    """One line: why an export has no rows, in the terms of its options."""
    items, dropped, options = summary["items"], summary["dropped"], summary["options"]
    short = dropped.get("below_min_labels", 0)
    others = ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items()) if k != "below_min_labels") or "none"
    return (f"export: no preference pairs in project {summary['project']!r} yet: {items['labeled']} of "
            f"{items['total'] + items['gold']} items have labels, {short} of them fewer than "
            f"label.export.min_labels={options['min_labels']}; dropped otherwise: {others}. Wrote an empty "
            f"dataset to {out_dir}")


def export_preferences(store: LabelStore, project: str, out_dir: str | Path, **options: Any) -> dict[str, Any]:
    """Write the preferences dataset and ``summary.json`` into ``out_dir`` (atomically); returns the summary.
    An export with no rows (nothing labeled enough yet) is an empty dataset that loads, with a warning."""
    from datasets import Dataset

    rows, summary = aggregate(store, project, **options)
    out_dir = Path(out_dir)
    check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
    features = _features()
    columns = {name: [r[name] for r in rows] for name in features}
    try:
        # save_to_disk writes no shard at all for no rows, and such a folder does not load: one empty shard does
        Dataset.from_dict(columns, features=features).save_to_disk(str(tmp), num_shards=None if rows else 1)
        summary["path"] = str(out_dir)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (tmp / MARKER).write_text(json.dumps({"project": project, "rows": len(rows), "db": store.where}) + "\n")
        check_replaceable(out_dir)          # again: the folder may have appeared while the dataset was written
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    if rows:
        log.info("exported %d row(s) of project %s to %s", len(rows), project, out_dir)
    else:
        log.warning("%s", _why_empty(summary, out_dir))
    return summary
