"""Labelled texts for training and benchmarking the safety heads.

Three sources, one shape (:class:`LabelledTexts`: texts, labels ``[n, len(SCORE_COLUMNS)]`` with NaN
for *unknown*, and per-row weights):

* a JSONL file (or gzip-compressed ``.jsonl.gz``) in the OpenAI-moderation layout (``{"prompt": text,
  "S": 0, "H": 1, ...}``; a missing key means unknown, never "safe"; category names such as
  ``"weapons"`` are accepted as keys too, and ``"text"`` in place of ``"prompt"``). The project ships
  the moderation sample itself (:data:`PACKAGED_MODERATION`), so every machine trains the same head;
* the demo world's own texts (harmful requests, toxic and compliant answers as positives; benign
  questions, helpful, off-topic and refusing answers as negatives), which the project may redistribute
  and which are the only labelled source for ``weapons`` and ``cybercrime``;
* refusals (:func:`refusal_labelled`): answers that decline a harmful request, safe everywhere,
  because a refusal names the harm it declines and a filter keyed on harm words flags it.

The any-unsafe label is 1 when any known category is 1, 0 when every known category is 0 (the
convention of the moderation set's own "unsafe in at least one category" count), NaN with no labels.

One assumption fills labels in: for a category a file never labels at all (``weapons`` and
``cybercrime`` in the moderation set), a row that is safe in every category it does label counts as
safe in that category too. Without it the only negatives of those categories would be the demo
world's benign texts, and their models would flag any text that merely looks unlike the demo world.
"""

from __future__ import annotations

import gzip
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alignment.data.loading import parse_json_object
from alignment.errors import UserError
from alignment.safety.categories import CATEGORIES, MODERATION_CODES
from alignment.safety.filter import ANY_INDEX, SCORE_COLUMNS

#: JSONL key -> column in :data:`SCORE_COLUMNS` (moderation codes and full category names).
LABEL_KEYS: dict[str, int] = {**{code: CATEGORIES.index(name) for code, name in MODERATION_CODES.items()},
                              **{name: i for i, name in enumerate(CATEGORIES)}}
TEXT_KEYS = ("prompt", "text")
#: Training weight of a demo-world row next to a real labelled row (see ``align-safety-train``).
#: Small on purpose: the demo texts are templated and easy, so a little weight teaches them while full
#: weight overfits the templates and drowns the real labels (docs/experiments.md).
DEMO_WEIGHT = 0.05
#: Training weight of a refusal row (:func:`refusal_labelled`): a real row's weight, since refusals
#: are what a trained policy writes most to red-team prompts and the moderation data has none.
REFUSAL_WEIGHT = 1.0
#: The OpenAI moderation sample shipped with the project (MIT; see ``assets/moderation/SOURCE.md``).
PACKAGED_MODERATION = Path(__file__).resolve().parent / "assets" / "moderation" / "samples.dev.jsonl.gz"


@dataclass
class LabelledTexts:
    texts: list[str]
    #: ``[n, len(SCORE_COLUMNS)]`` float32: 1 unsafe, 0 safe, NaN unknown.
    labels: np.ndarray
    #: ``[n]`` training weight of each row.
    weights: np.ndarray
    sources: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.texts)
        if self.labels.shape != (n, len(SCORE_COLUMNS)) or self.weights.shape != (n,):
            raise ValueError(f"labels {self.labels.shape} / weights {self.weights.shape} do not fit {n} texts")
        if not self.sources:
            self.sources = ["?"] * n

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: np.ndarray | list[int]) -> LabelledTexts:
        idx = np.asarray(idx, dtype=np.int64)
        return LabelledTexts([self.texts[i] for i in idx], self.labels[idx], self.weights[idx],
                             [self.sources[i] for i in idx])

    def any_labels(self) -> np.ndarray:
        """The any-unsafe label ``[n]`` with unknown counted as safe (for metrics and stratification)."""
        return np.nan_to_num(self.labels[:, ANY_INDEX], nan=0.0).astype(np.int64)

    def positives(self) -> dict[str, int]:
        return {c: int(np.nansum(self.labels[:, k])) for k, c in enumerate(SCORE_COLUMNS)}

    @staticmethod
    def concat(parts: list[LabelledTexts]) -> LabelledTexts:
        return LabelledTexts([t for p in parts for t in p.texts], np.concatenate([p.labels for p in parts]),
                             np.concatenate([p.weights for p in parts]), [s for p in parts for s in p.sources])


def with_any(labels: np.ndarray) -> np.ndarray:
    """Fill the ``any`` column from the category columns (see the module docstring)."""
    cats = labels[:, :ANY_INDEX]
    known = ~np.isnan(cats)
    anyv = np.where(np.nan_to_num(cats, nan=0.0).max(axis=1) >= 1, 1.0, 0.0)
    labels[:, ANY_INDEX] = np.where(known.any(axis=1), anyv, np.nan)
    return labels


def fill_uncovered(labels: np.ndarray) -> np.ndarray:
    """Categories no row labels: 0 where the row is safe in every category it labels (module docstring)."""
    uncovered = np.isnan(labels[:, :ANY_INDEX]).all(axis=0)
    safe = labels[:, ANY_INDEX] == 0
    labels[np.ix_(safe, np.flatnonzero(uncovered))] = 0.0
    return labels


def _label_value(value: object, where: str, key: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return float(value)
    raise UserError(f"{where}: label {key!r} must be 0, 1 or null, got {value!r}")


def load_moderation_jsonl(path: str | Path, limit: int | None = None, weight: float = 1.0) -> LabelledTexts:
    """Read labelled texts; every problem raises :class:`UserError` naming ``file:line`` and the key.

    A ``.gz`` file is read decompressed; its rows' source is named without the ``.gz``, so a head
    trained on the compressed copy records the same provenance as one trained on the original.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file (expected JSONL with a 'prompt' text and 0/1 category labels)")
    if limit is not None and limit <= 0:
        raise UserError(f"--limit must be positive, got {limit}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            texts, rows = _read_rows(fh, path, limit)
    except (OSError, EOFError, UnicodeDecodeError) as err:  # a corrupt .gz or a binary file
        raise UserError(f"{path}: cannot be read as {'gzip-compressed ' if opener is gzip.open else ''}"
                        f"UTF-8 JSONL ({type(err).__name__}: {err})") from None
    if not texts:
        raise UserError(f"{path}: no rows")
    labels = with_any(np.asarray(rows, np.float32))
    if np.isnan(labels[:, :ANY_INDEX]).all():
        raise UserError(f"{path}: no row has a category label; expected keys among {sorted(LABEL_KEYS)}")
    labels = fill_uncovered(labels)
    name = path.name.removesuffix(".gz")
    return LabelledTexts(texts, labels, np.full(len(texts), weight, np.float32), [name] * len(texts))


def _read_rows(fh, path: Path, limit: int | None) -> tuple[list[str], list[list[float]]]:
    """Texts and label rows of an open moderation-layout file (see :func:`load_moderation_jsonl`)."""
    texts: list[str] = []
    rows: list[list[float]] = []
    for lineno, line in enumerate(fh, start=1):
        if limit is not None and len(texts) >= limit:
            break
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        obj = parse_json_object(line, where)
        key = next((k for k in TEXT_KEYS if k in obj), None)
        if key is None:
            raise UserError(f"{where}: no text; expected one of the keys {list(TEXT_KEYS)}")
        if not isinstance(obj[key], str):
            raise UserError(f"{where}: {key!r} must be a string, got {type(obj[key]).__name__}")
        row = [math.nan] * len(SCORE_COLUMNS)
        for label_key, col in LABEL_KEYS.items():
            if label_key in obj:
                row[col] = _label_value(obj[label_key], where, label_key)
        texts.append(obj[key])
        rows.append(row)
    return texts, rows


def demo_labelled(world_seed: int = 0, responses_per_style: int = 2, weight: float = 1.0,
                  seed: int = 0) -> LabelledTexts:
    """The demo world's prompts and responses, labelled from how they were written (deduplicated).

    A harmful request or a compliant answer is positive for its own category and unknown for the
    others (a weapons request may well be violent too); a toxic answer (a bare insult) is harassment
    and nothing else; benign prompts and helpful, off-topic or refusing answers are negative everywhere.
    """
    from alignment.data.world import STYLES_BY_KIND, DemoWorld

    world = DemoWorld(world_seed)
    rng = random.Random(f"safety-demo/{seed}")
    seen: dict[str, list[float]] = {}

    def add(text: str, category: str | None, others: float = math.nan) -> None:
        if text in seen:
            return
        row = [0.0] * len(SCORE_COLUMNS) if category is None else [others] * len(SCORE_COLUMNS)
        if category is not None:
            row[CATEGORIES.index(category)] = 1.0
        seen[text] = row

    for prompt in world.prompts():
        add(prompt.text, prompt.category if prompt.kind == "harmful" else None)
        for style in STYLES_BY_KIND[prompt.kind]:
            for _ in range(responses_per_style):
                text = world.respond(prompt, style, rng)
                if style == "toxic":
                    add(text, "harassment", others=0.0)
                elif style == "harmful_compliance":
                    add(text, prompt.category)
                else:
                    add(text, None)
    texts = list(seen)
    labels = with_any(np.asarray(list(seen.values()), np.float32))
    return LabelledTexts(texts, labels, np.full(len(texts), weight, np.float32), ["demo"] * len(texts))


def refusal_labelled(weight: float = REFUSAL_WEIGHT, seed: int = 0) -> LabelledTexts:
    """Refusals as safe rows: the demo world's refusal-style answers (every phrasing with every
    redirect) and the templated refusals of :func:`alignment.safety.refusal_texts.training_refusals`,
    which name the harm they decline. The held-out refusals of that module are never included."""
    from alignment.data import demo_content as content
    from alignment.safety.refusal_texts import training_refusals

    redirects = [spec["redirect"] for spec in content.HARMFUL_CATEGORIES.values()] + [content.BENIGN_REDIRECT]
    demo = [t.format(redirect=r) for t in content.REFUSAL_TEMPLATES for r in redirects]
    texts = list(dict.fromkeys(demo + training_refusals(seed=seed)))
    labels = np.zeros((len(texts), len(SCORE_COLUMNS)), np.float32)
    return LabelledTexts(texts, labels, np.full(len(texts), weight, np.float32), ["refusals"] * len(texts))
