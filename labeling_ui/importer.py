"""Read pairs to label from JSONL: plain pairs, or Anthropic HH-RLHF transcripts.

Each line is one JSON object, in one of two shapes (they may be mixed):

* a pair: ``{"prompt": ..., "response_a": ..., "response_b": ...}`` plus optional ``id``, ``sources``
  (``[source of A, source of B]``) or ``source_a`` / ``source_b``, ``safety_a`` / ``safety_b``,
  ``meta``, and ``gold`` / ``gold_choice`` (``A|B|tie|both_bad``: makes it a gold item);
* an HH-RLHF record: ``{"chosen": transcript, "rejected": transcript}`` where a transcript is
  ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``, the two sharing all but the last Assistant turn. The prompt
  is everything before the last ``"\\n\\nAssistant:"``; the responses are the two last Assistant turns
  (``response_a`` = chosen, ``response_b`` = rejected; the A/B order shown to annotators is drawn per
  assignment, so storing chosen first leaks nothing). The original human preference is kept in
  ``meta.hh_preferred = "A"`` and, with ``as_gold``, used as the gold answer.

Every problem (bad JSON, missing keys, empty responses, transcripts that do not share a prompt,
duplicate ids) raises :class:`UserError` naming the file and line, before anything is written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from alignment.data.loading import parse_json_object
from alignment.data.preferences import hh_pair
from alignment.errors import UserError
from labeling_ui.store import LabelStore, coerce_item


def hh_to_pair(record: dict[str, Any]) -> dict[str, Any]:
    """An HH-RLHF ``{chosen, rejected}`` record as a pair (prompt, response_a=chosen, response_b=rejected)."""
    for key in ("chosen", "rejected"):
        if key not in record:
            raise ValueError(f"missing key {key!r}")
        if not isinstance(record[key], str):
            raise ValueError(f"key {key!r} must be a string")
    pair = hh_pair(record["chosen"], record["rejected"])
    for key in ("chosen", "rejected"):
        if not pair[key]:
            raise ValueError(f"the {key} transcript's last Assistant turn is empty")
    prompt_c, chosen, rejected = pair["prompt"], pair["chosen"], pair["rejected"]
    digest = hashlib.sha256((record["chosen"] + "\x00" + record["rejected"]).encode()).hexdigest()[:16]
    return {"id": str(record.get("id", f"hh-{digest}")), "prompt": prompt_c, "response_a": chosen,
            "response_b": rejected, "sources": ["hh-rlhf:chosen", "hh-rlhf:rejected"],
            "meta": {"format": "hh-rlhf", "hh_preferred": "A"}}


def read_jsonl(path: str | Path, *, as_gold: bool = False, skip_invalid: bool = False,
               skipped: list[str] | None = None) -> tuple[list[dict[str, Any]], list[int]]:
    """The items of a JSONL file and the line number of each; raises :class:`UserError` on any bad line.

    With ``skip_invalid`` a bad line (or a repeated id) is left out instead, and its error message is
    appended to ``skipped`` (the real HH-RLHF test split has a few records with an empty last turn).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    items: list[dict[str, Any]] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                item = _parse_line(line, f"{path}:{lineno}", as_gold)
                ext_id = coerce_item(item, f"{path}:{lineno}").id
                if skip_invalid and ext_id is not None:
                    if ext_id in seen:
                        raise UserError(f"{path}:{lineno}: duplicate id {ext_id!r} (first at line {seen[ext_id]})")
                    seen[ext_id] = lineno
            except UserError as e:
                if not skip_invalid:
                    raise
                if skipped is not None:
                    skipped.append(str(e))
                continue
            items.append(item)
            lines.append(lineno)
    if not items:
        raise UserError(f"{path}: no valid records (an empty file?)")
    return items, lines


def _parse_line(line: str, where: str, as_gold: bool) -> dict[str, Any]:
    record = parse_json_object(line, where)
    if "chosen" in record or "rejected" in record:
        try:
            item = hh_to_pair(record)
        except ValueError as e:
            raise UserError(f"{where}: HH-RLHF record: {e}") from None
        if as_gold:
            item["gold_choice"] = "A"
        return item
    item = dict(record)
    if as_gold and item.get("gold") is None and item.get("gold_choice") is None:
        raise UserError(f"{where}: importing as gold needs a 'gold' answer (A|B|tie|both_bad) on every pair")
    return item


def import_file(store: LabelStore, project: str, path: str | Path, *, overlap: int = 3, as_gold: bool = False,
                skip_invalid: bool = False, skipped: list[str] | None = None) -> int:
    """Import a JSONL file into ``project`` in one transaction; returns the number of items added."""
    items, lines = read_jsonl(path, as_gold=as_gold, skip_invalid=skip_invalid, skipped=skipped)
    ids = store.add_items(project, items, overlap=overlap, source=str(path), line_numbers=lines)
    return len(ids)
