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

The file is UTF-8 (a leading byte-order mark, as spreadsheet tools write, is ignored). Every problem
(bytes that are not UTF-8, e.g. a binary file; bad JSON, missing keys, empty responses, transcripts
that do not share a prompt, duplicate ids, a prompt or response longer than ``max_text_chars``)
raises :class:`UserError` naming the file and line, before anything is written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from alignment.data.loading import parse_json_object
from alignment.data.preferences import hh_pair
from alignment.errors import UserError
from labeling_ui.store import LabelStore, coerce_item

#: The default of ``label.max_text_chars``: longer prompts or responses are refused at import.
MAX_TEXT_CHARS = 20_000
_BOM = b"\xef\xbb\xbf"


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
               skipped: list[str] | None = None,
               max_text_chars: int = MAX_TEXT_CHARS) -> tuple[list[dict[str, Any]], list[int]]:
    """The items of a JSONL file and the line number of each; raises :class:`UserError` on any bad line.

    With ``skip_invalid`` a bad line (or a repeated id) is left out instead, and its error message is
    appended to ``skipped`` (the real HH-RLHF test split has a few records with an empty last turn).
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a JSONL file")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if not isinstance(max_text_chars, int) or max_text_chars < 1:
        raise UserError(f"label.max_text_chars: must be an integer >= 1, got {max_text_chars!r}")
    items: list[dict[str, Any]] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    try:
        f = path.open("rb")
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror})") from None
    with f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            where = f"{path}:{lineno}"
            try:
                line = _decode(raw, where)
                if not line.strip():
                    continue
                item = _parse_line(line, where, as_gold)
                clean = coerce_item(item, where)
                _check_length(clean.prompt, clean.response_a, clean.response_b, where, max_text_chars)
                ext_id = clean.id
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


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                        "is it a binary file? Save the file as UTF-8 JSONL") from None


def _check_length(prompt: str, response_a: str, response_b: str, where: str, limit: int) -> None:
    for key, text in (("prompt", prompt), ("response_a", response_a), ("response_b", response_b)):
        if len(text) > limit:
            raise UserError(f"{where}: {key} has {len(text):,} characters, more than label.max_text_chars={limit:,} "
                            "allows (raise it to import such texts)")


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
                skip_invalid: bool = False, skipped: list[str] | None = None,
                max_text_chars: int = MAX_TEXT_CHARS) -> int:
    """Import a JSONL file into ``project`` in one transaction; returns the number of items added."""
    items, lines = read_jsonl(path, as_gold=as_gold, skip_invalid=skip_invalid, skipped=skipped,
                              max_text_chars=max_text_chars)
    ids = store.add_items(project, items, overlap=overlap, source=str(path), line_numbers=lines)
    return len(ids)
