"""Train the refusal judge, and validate it the way it will be used: on models it never saw.

    python -m alignment.safety.refusal_train --data ../shared/data/xstest/completions.dev.jsonl \\
        --out alignment/safety/assets/refusal_judge.safetensors

rebuilds the judge shipped with the project (deterministic: the same data and code give the same
weights). ``--data`` is a JSONL file of labelled answers in the layout of XSTest's
``completions.dev.jsonl``: ``completion`` (the answer), ``label`` (``1_full_compliance``,
``2_full_refusal``, ``3_partial_refusal``, or the class names of
:data:`~alignment.safety.refusal_examples.CLASSES`), and optionally ``model``, ``prompt`` and ``type``
(XSTest's prompt type; ``contrast_*`` types are unsafe prompts). The
project's own answers (:func:`~alignment.safety.refusal_examples.project_answers`) join every
training set with the weights of :data:`SOURCE_WEIGHTS`.

:func:`held_out_proba` is the validation: leave-one-model-out (train on every other model's
answers, score the held-out model's), optionally also holding out the scored answers' prompts.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from alignment.data.loading import read_jsonl_numbered
from alignment.errors import UserError
from alignment.safety.refusal_examples import CLASSES, COMPLIANCE, FULL_REFUSAL, PARTIAL_REFUSAL
from alignment.safety.refusal_judge import REBUILD_COMMAND, JudgeWeights, features_fingerprint, judge_features

log = logging.getLogger(__name__)
#: XSTest's label names -> the judge's classes.
XSTEST_LABELS = {"1_full_compliance": COMPLIANCE, "2_full_refusal": FULL_REFUSAL, "3_partial_refusal": PARTIAL_REFUSAL}
#: Training weight of a project answer next to a real model's labelled answer: the hand-written
#: answers count as much (each stands for a style), the templated refusals and the demo world's
#: answers less (hundreds of near-copies that would drown the real answers at full weight).
SOURCE_WEIGHTS = {"written": 1.0, "templated": 1 / 3, "demo": 0.05}
#: The encoder settings the packaged judge is trained with (docs/experiments.md).
ENCODER = {"layers": (4, 5, 6), "max_length": 64, "quantize": True}
C = 1.0


@dataclass
class LabelledAnswers:
    """Answers with their class index into :data:`CLASSES`; ``models``, ``prompts`` and prompt ``types``
    where known (``"unknown"``, ``""`` and ``""`` where not)."""

    texts: list[str]
    labels: np.ndarray
    models: list[str]
    prompts: list[str]
    types: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def _label(value: object, where: str) -> int:
    name = XSTEST_LABELS.get(value, value) if isinstance(value, str) else value
    if name not in CLASSES:
        raise UserError(f"{where}: label {value!r} is not one of {sorted(XSTEST_LABELS)} or {list(CLASSES)}")
    return CLASSES.index(name)


def load_answers(path: str | Path, limit: int | None = None) -> LabelledAnswers:
    """Read labelled answers (module docstring); a bad row is a :class:`UserError` naming ``file:line``."""
    if limit is not None and limit <= 0:
        raise UserError(f"--limit must be positive, got {limit}")
    texts, labels, models, prompts, types = [], [], [], [], []
    for lineno, row in read_jsonl_numbered(path)[:limit]:
        where = f"{path}:{lineno}"
        for key in ("completion", "label"):
            if key not in row:
                raise UserError(f"{where}: no {key!r} key (expected 'completion' and 'label')")
        for key in ("completion", "model", "prompt", "type"):
            if key in row and not isinstance(row[key], str):
                raise UserError(f"{where}: {key!r} must be a string, got {type(row[key]).__name__}")
        labels.append(_label(row["label"], where))
        texts.append(row["completion"])
        models.append(row.get("model", "unknown"))
        prompts.append(row.get("prompt", ""))
        types.append(row.get("type", ""))
    return LabelledAnswers(texts, np.array(labels, np.int64), models, prompts, types)


def project_set(seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The project's answers: texts, class indices and training weights (:data:`SOURCE_WEIGHTS`)."""
    from alignment.safety.refusal_examples import demo_answers, written_answers
    from alignment.safety.refusal_texts import training_refusals

    rows = [(t, c, "written") for t, c in written_answers(seed=seed)]
    rows += [(t, FULL_REFUSAL, "templated") for t in training_refusals(seed=seed)]
    rows += [(t, c, "demo") for t, c in demo_answers(seed=seed)]
    seen: dict[str, tuple[str, str]] = {}
    for text, label, source in rows:
        seen.setdefault(text, (label, source))
    texts = list(seen)
    return (texts, np.array([CLASSES.index(seen[t][0]) for t in texts]),
            np.array([SOURCE_WEIGHTS[seen[t][1]] for t in texts], np.float64))


def make_encoder(num_threads: int | None = None, cache_size: int = 0):
    """The sentence encoder with the judge's settings (:data:`ENCODER`)."""
    from alignment.safety.encoder import SentenceEncoder

    return SentenceEncoder(None, ENCODER["layers"], ENCODER["max_length"], 64, ENCODER["quantize"], num_threads,
                           cache_size)


def fit(x: np.ndarray, y: np.ndarray, weights: np.ndarray, c: float = C) -> JudgeWeights:
    """Multinomial logistic regression over :data:`CLASSES` (every class must have a row)."""
    missing = [CLASSES[k] for k in range(len(CLASSES)) if not (y == k).any()]
    if missing:
        raise UserError(f"no training answer of class {missing}: the judge needs all of {list(CLASSES)}")
    model = LogisticRegression(C=c, max_iter=5000)
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y, sample_weight=weights)
    return JudgeWeights(model.coef_.astype(np.float32), model.intercept_.astype(np.float32))


def held_out_proba(x: np.ndarray, data: LabelledAnswers, extra: tuple[np.ndarray, np.ndarray, np.ndarray],
                   prompt_folds: int = 0, seed: int = 0) -> np.ndarray:
    """Class probabilities of every answer from a judge that never saw its model (leave-one-model-out);
    with ``prompt_folds`` the judge saw none of its prompts either (their answers by any model left out).

    ``x`` are the answers' features, ``extra`` the project answers' ``(features, labels, weights)``,
    which join every training set.
    """
    models = np.array(data.models)
    if len(set(data.models)) < 2:
        raise UserError(f"leave-one-model-out needs answers of two models or more, found {sorted(set(data.models))}")
    prompts = np.array(data.prompts)
    groups = np.zeros(len(data), np.int64)
    if prompt_folds:
        distinct = sorted(set(data.prompts))
        order = np.random.default_rng(seed).permutation(len(distinct))
        fold_of = {distinct[i]: k % prompt_folds for k, i in enumerate(order)}
        groups = np.array([fold_of[p] for p in prompts])
    out = np.zeros((len(data), len(CLASSES)), np.float32)
    ex, ey, ew = extra
    for model in sorted(set(data.models)):
        for group in range(max(prompt_folds, 1)):
            scored = (models == model) & (groups == group)
            train = (models != model) & ((groups != group) if prompt_folds else True)
            weights = fit(np.concatenate([x[train], ex]), np.concatenate([data.labels[train], ey]),
                          np.concatenate([np.ones(int(train.sum())), ew]))
            out[scored] = weights.proba(x[scored])
        log.info("held out %s: %d answers scored", model, int((models == model).sum()))
    return out


def train_judge(data: LabelledAnswers, source: str, encoder=None) -> JudgeWeights:
    """The judge trained on ``data`` and the project's answers, with its provenance in ``meta``."""
    encoder = encoder or make_encoder()
    texts, labels, weights = project_set()
    x = judge_features(data.texts, encoder)
    ex = judge_features(texts, encoder)
    judge = fit(np.concatenate([x, ex]), np.concatenate([data.labels, labels]),
                np.concatenate([np.ones(len(data)), weights]))
    judge.meta = {"encoder": encoder.settings(), "c": C,
                  "source_weights": SOURCE_WEIGHTS, "fingerprint": features_fingerprint(), "rebuild": REBUILD_COMMAND,
                  "training": {"data": source, "rows": len(data), "models": sorted(set(data.models)),
                               "project_answers": len(texts)}}
    return judge


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    from alignment.safety.refusal_judge import save_weights

    parser = argparse.ArgumentParser(prog="python -m alignment.safety.refusal_train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="labelled answers (completions.dev.jsonl layout)")
    parser.add_argument("--out", type=Path, required=True, help="the judge file to write (safetensors)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        data = load_answers(args.data)
        log.info("%s: %d answers of %d models", args.data, len(data), len(set(data.models)))
        judge = train_judge(data, f"{args.data.name} (sha256 {file_sha256(args.data)[:16]})")
        save_weights(judge, args.out)
    except UserError as err:
        log.error("%s", err)
        return 2
    log.info("wrote %s (%d bytes)", args.out, args.out.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
