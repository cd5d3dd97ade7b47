"""The SafetyFilter protocol: one way to score and flag texts, whatever the backend.

Every stage (sft/candidates unsafe rate, labeling-queue flags, reward red-team check, the PPO
penalty, the gates) calls the same two methods, so swapping ``safety=fast`` for ``safety=llama_guard``
changes no stage code:

* ``score(texts, prompts=None)`` -> ``[n, len(CATEGORIES)]`` per-category probabilities, and
  ``score_any(...)`` -> ``[n]`` the probability that a text is unsafe in any way. "Any" is its own
  output (a backend predicts it directly) rather than the max of the categories: labelled data often
  covers only some categories, and a direct any-unsafe model ranks better than a max of noisy ones.
  ``score_all`` returns both at once as ``[n, len(CATEGORIES) + 1]`` (columns :data:`SCORE_COLUMNS`).
* ``flag(texts, thresholds=None, prompts=None)`` -> one :class:`Verdict` per text.

Bad input (an empty list, a non-string, prompts of the wrong length) raises :class:`UserError`
instead of scoring zero: a silent zero would read as "safe" and pass a gate it should fail.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from alignment.errors import UserError
from alignment.safety.categories import CATEGORIES, MODERATION_CODES

ANY = "any"
#: Columns of :meth:`BaseFilter.score_all`: the categories, then ``any``.
SCORE_COLUMNS: tuple[str, ...] = (*CATEGORIES, ANY)
ANY_INDEX = len(CATEGORIES)


@dataclass(frozen=True)
class Verdict:
    """The filter's decision on one text.

    ``unsafe`` is true when the any-unsafe score or any category score reaches its threshold;
    ``categories`` are the categories at or over their thresholds, highest score first (it can be
    empty while ``unsafe`` is true, when only the any-unsafe score crossed; ``top_category`` then
    says which category is likeliest). ``max_score`` is the highest of all scores, ``any``'s included.
    """

    unsafe: bool
    categories: tuple[str, ...]
    max_score: float
    any_score: float
    top_category: str


@runtime_checkable
class SafetyFilter(Protocol):
    """What stages rely on. :class:`BaseFilter` implements it; any object with these methods works."""

    name: str
    thresholds: np.ndarray

    def score(self, texts: list[str], prompts: list[str] | None = None) -> np.ndarray: ...

    def score_any(self, texts: list[str], prompts: list[str] | None = None) -> np.ndarray: ...

    def score_all(self, texts: list[str], prompts: list[str] | None = None) -> np.ndarray: ...

    def flag(self, texts: list[str], thresholds: Mapping[str, float] | None = None,
             prompts: list[str] | None = None) -> list[Verdict]: ...


def column_index(key: str, where: str = "thresholds") -> int:
    """The :data:`SCORE_COLUMNS` index of a category name, ``any``, or a moderation code (``S3``...).

    Codes are accepted because names such as ``sexual/minors`` are awkward in command-line overrides.
    """
    name = MODERATION_CODES.get(key, key)
    if name not in SCORE_COLUMNS:
        raise UserError(f"{where}.{key}: unknown category; expected one of {list(SCORE_COLUMNS)} "
                        f"or a code of {sorted(MODERATION_CODES)}")
    return SCORE_COLUMNS.index(name)


def apply_thresholds(base: np.ndarray, overrides: Mapping[str, float] | None, where: str) -> np.ndarray:
    """``base`` with ``overrides`` (column name or code -> threshold) applied; :class:`UserError` when bad."""
    out = np.array(base, np.float64)
    for key, value in (overrides or {}).items():
        _check_threshold(value, f"{where}.{key}")
        out[column_index(key, where)] = float(value)
    return out


def resolve_thresholds(default: float, overrides: Mapping[str, float] | None = None,
                       where: str = "safety.thresholds") -> np.ndarray:
    """Thresholds per :data:`SCORE_COLUMNS`: ``default`` everywhere, then ``overrides`` by name.

    Raises :class:`UserError` naming ``<where>.<key>`` for an unknown name or a value outside [0, 1].
    """
    _check_threshold(default, where.rsplit(".", 1)[0] + ".threshold")
    return apply_thresholds(np.full(len(SCORE_COLUMNS), float(default)), overrides, where)


def _check_threshold(value: object, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise UserError(f"{key}={value!r}: a threshold must be a number within [0, 1]")


def validate_texts(texts: object, prompts: object = None) -> tuple[list[str], list[str] | None]:
    """Check the arguments of ``score``/``flag``; return them as lists. Raises :class:`UserError`."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise UserError(f"safety filter: texts must be a list of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise UserError("safety filter: texts is empty; there is nothing to score")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise UserError(f"safety filter: texts[{i}] is {type(text).__name__}, not str")
    if prompts is None:
        return list(texts), None
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise UserError(f"safety filter: prompts must be a list of strings or None, got {type(prompts).__name__}")
    if len(prompts) != len(texts):
        raise UserError(f"safety filter: {len(prompts)} prompts for {len(texts)} texts; give one prompt per text")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise UserError(f"safety filter: prompts[{i}] is {type(prompt).__name__}, not str")
    return list(texts), list(prompts)


def verdicts(scores: np.ndarray, thresholds: np.ndarray) -> list[Verdict]:
    """Verdicts from ``score_all`` output and per-column thresholds (the threshold logic, in one place)."""
    over = scores >= thresholds[None, :]
    out = []
    for row, hit in zip(scores, over):
        cats = row[:ANY_INDEX]
        flagged = [k for k in np.argsort(-cats, kind="stable") if hit[k]]
        out.append(Verdict(
            unsafe=bool(hit.any()),
            categories=tuple(CATEGORIES[k] for k in flagged),
            max_score=float(row.max()),
            any_score=float(row[ANY_INDEX]),
            top_category=CATEGORIES[int(np.argmax(cats))],
        ))
    return out


class BaseFilter(ABC):
    """Validation, output checks and the threshold logic shared by every backend.

    A backend implements :meth:`_score_all` only: scores ``[n, len(SCORE_COLUMNS)]`` in [0, 1] for
    validated, non-empty input. Backends batch internally (their best batch shape differs).
    """

    name: str = "base"

    def __init__(self, thresholds: np.ndarray | None = None) -> None:
        self.thresholds = resolve_thresholds(0.5) if thresholds is None else np.asarray(thresholds, np.float64)
        if self.thresholds.shape != (len(SCORE_COLUMNS),):
            raise ValueError(f"thresholds must have {len(SCORE_COLUMNS)} entries, got {self.thresholds.shape}")

    @abstractmethod
    def _score_all(self, texts: list[str], prompts: list[str] | None) -> np.ndarray:
        """Scores ``[n, len(SCORE_COLUMNS)]`` for validated input."""

    def score_all(self, texts: list[str], prompts: list[str] | None = None) -> np.ndarray:
        """Per-category probabilities and the any-unsafe probability, ``[n, len(SCORE_COLUMNS)]``."""
        texts, prompts = validate_texts(texts, prompts)
        scores = np.asarray(self._score_all(texts, prompts), np.float64)
        if scores.shape != (len(texts), len(SCORE_COLUMNS)):
            raise RuntimeError(f"{self.name} backend returned scores of shape {scores.shape}, "
                               f"expected {(len(texts), len(SCORE_COLUMNS))}")
        if not np.isfinite(scores).all():
            raise RuntimeError(f"{self.name} backend returned non-finite scores")
        return np.clip(scores, 0.0, 1.0)

    def score(self, texts: list[str], prompts: list[str] | None = None) -> np.ndarray:
        """Per-category probabilities ``[n, len(CATEGORIES)]`` (columns in :data:`CATEGORIES` order)."""
        return self.score_all(texts, prompts)[:, :ANY_INDEX]

    def score_any(self, texts: list[str], prompts: list[str] | None = None) -> np.ndarray:
        """The probability ``[n]`` that each text is unsafe in any category (the PPO penalty's input)."""
        return self.score_all(texts, prompts)[:, ANY_INDEX]

    def flag(self, texts: list[str], thresholds: Mapping[str, float] | None = None,
             prompts: list[str] | None = None) -> list[Verdict]:
        """One :class:`Verdict` per text; ``thresholds`` overrides the configured ones by column name."""
        thr = apply_thresholds(self.thresholds, thresholds, "thresholds")
        return verdicts(self.score_all(texts, prompts), thr)
