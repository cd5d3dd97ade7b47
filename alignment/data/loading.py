"""Load user datasets: a JSONL file, a ``save_to_disk`` folder, or a hub name, with clear errors.

JSONL is parsed here (not by ``datasets``) so a bad line is reported with its file and line number;
a ``.gz`` file is read decompressed (the packaged data sets are compressed).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import TYPE_CHECKING

from alignment.errors import UserError

if TYPE_CHECKING:  # datasets is imported where it is used: PPO reads prompt files without loading it
    from datasets import Dataset, DatasetDict


def parse_json_object(line: str, where: str) -> dict:
    """One JSONL line as a dict; anything else is a :class:`UserError` naming ``where`` (file:line)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise UserError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def read_jsonl(path: str | Path) -> list[dict]:
    """Every line of a JSONL file as a dict; a line that is not a JSON object is an error naming it."""
    return [row for _, row in read_jsonl_numbered(path)]


def read_jsonl_numbered(path: str | Path) -> list[tuple[int, dict]]:
    """``(line number, row)`` for every non-blank line of a JSONL file (gzip-compressed if ``.gz``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    rows = []
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                rows.append((lineno, parse_json_object(line, f"{path}:{lineno}")))
    except (OSError, EOFError, UnicodeDecodeError) as err:  # a corrupt .gz or a binary file
        raise UserError(f"{path}: cannot be read as UTF-8 JSONL ({type(err).__name__}: {err})") from None
    if not rows:
        raise UserError(f"{path}: the file has no rows")
    return rows


def load_source(source: str, split: str = "train") -> tuple[Dataset, Dataset | None, str]:
    """``(train, eval or None, description)`` from a JSONL file, a ``save_to_disk`` folder or a hub name.

    A JSONL row's position is kept in a ``_line`` column so later validation can name the line.
    """
    from datasets import Dataset, load_dataset, load_from_disk

    path = Path(source).expanduser()
    if path.suffix in {".jsonl", ".json"} or path.is_file():
        rows = [{**row, "_line": lineno} for lineno, row in read_jsonl_numbered(path)]
        return Dataset.from_list(rows), None, str(path)
    if path.is_dir():
        try:
            data = load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as err:
            raise UserError(f"{path}: not a dataset saved with save_to_disk ({err})") from err
        except IndexError:  # datasets saves an empty dataset as zero shards, then cannot load it
            raise UserError(f"{path}: the saved dataset is empty") from None
        return _pick_splits(data, split, str(path))
    if source.count("/") == 1 and not source.startswith((".", "/", "~")):
        try:
            data = load_dataset(source)
        except Exception as err:  # noqa: BLE001 - the hub client raises many types; all mean "cannot load"
            raise UserError(f"data.source={source!r}: no such file or folder, and loading it as a hub "
                            f"dataset failed ({type(err).__name__}: {err})") from err
        return _pick_splits(data, split, source)
    raise UserError(f"data.source={source!r}: no such file or folder")


def _pick_splits(data: Dataset | DatasetDict, split: str, where: str) -> tuple[Dataset, Dataset | None, str]:
    from datasets import Dataset

    if isinstance(data, Dataset):
        return data, None, where
    if split not in data:
        raise UserError(f"{where}: has no split {split!r} (splits: {sorted(data)}); set data.train_split")
    held = next((data[s] for s in ("test", "validation", "eval") if s in data and s != split), None)
    return data[split], held, where


def row_location(ds_source: str, row: dict, index: int) -> str:
    """``file:line`` for JSONL rows, ``source row N`` otherwise: how errors name a bad row."""
    if "_line" in row:
        return f"{ds_source}:{row['_line']}"
    return f"{ds_source} row {index}"
