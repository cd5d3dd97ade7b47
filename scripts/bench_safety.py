#!/usr/bin/env python
"""Benchmark: the safety filter on OpenAI-moderation-format data (AUPRC, AUROC, P/R, texts/s).

    python scripts/bench_safety.py [--data PATH.jsonl] [--safety fast|default|classifier|llama_guard]
                                   [--limit N] [--folds 5] [--no-demo] [--no-refusals] [--head PATH]
                                   [--xstest FILE] [--set KEY=VALUE ...]

``--data`` defaults to the dev file: ``../shared/data/openai-moderation/samples.dev.jsonl`` (relative to
the project), or the same sample shipped in the package when ``../shared`` is absent.

* ``fast`` / ``default`` train their head the way ``align-safety-train --demo --refusals`` does
  (moderation rows plus the demo world's texts and refusals; ``--no-demo`` and ``--no-refusals`` drop
  those). When ``--data`` *is* the dev file the
  figures are cross-validated only: stratified ``--folds`` folds, heads trained on the other folds,
  scores for each fold from the head that never saw it. Otherwise the head is trained on the whole
  dev file and evaluated on ``--data``. ``--head PATH`` evaluates a trained head instead (no training;
  do not point it at the dev file with a head trained on it).
* ``classifier`` / ``llama_guard`` score ``--data`` with the configured model (``--set
  classifier.path=...``).

Throughput: the filter's own featurisers (lexical, and the encoder for ``default``, cache off) are
timed over every evaluated text after an untimed warm-up on other (demo) texts, plus the heads'
scoring time. ``fast`` is timed on a second pass (steady state: allocator and word memo warm, as in
bulk screening), and ``texts_per_s_first_pass`` gives the cold first pass; ``texts_per_s`` is wall-clock,
``texts_per_cpu_s`` per CPU-second (less sensitive to a busy shared machine; ``load_avg_start``/``load_avg_end`` say how
busy it was). ``fast`` is pinned to one core (``--cores``), ``default`` uses torch's threads.

``refusal_flag_rate``: the share of held-out refusal-only answers
(:data:`alignment.safety.refusal_texts.HELDOUT_REFUSALS`, never trained on) that the filter flags
unsafe at the configured thresholds; with cross-validation, the mean over the folds' heads. A filter
that flags refusals punishes a policy for refusing (goal: at most 0.05).

``--xstest FILE`` (``../shared/data/xstest/completions.dev.jsonl``: real chat models' answers to XSTest's
prompts, labelled by people as compliance, partial or full refusal) adds the filter's flag rate on real
answers, with the same heads: ``xstest_refusal_flag_rate`` (full refusals flagged unsafe: a false alarm;
goal at most 0.05), ``xstest_partial_refusal_flag_rate`` (partial refusals, which may hold part of what
was asked), ``xstest_safe_compliance_flag_rate`` (compliant answers to the safe prompts: a false alarm;
goal at most 0.05) and ``xstest_unsafe_compliance_recall`` (compliant answers to the unsafe contrast
prompts flagged), each with its count and per model.

Progress goes to the log; the last line printed is one JSON object with at least ``auprc_any``,
``auroc_any``, ``texts_per_s`` and ``refusal_flag_rate``, plus precision/recall at the configured
thresholds and per category.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from alignment.safety.data import DEMO_WEIGHT, PACKAGED_MODERATION, REFUSAL_WEIGHT
from benchlib import ROOT, emit

SHARED_DATA = ROOT.parent / "shared" / "data" / "openai-moderation" / "samples.dev.jsonl"
#: The moderation sample: the shared copy when present, else the identical one shipped in the package.
DEFAULT_DATA = SHARED_DATA if SHARED_DATA.is_file() else PACKAGED_MODERATION
log = logging.getLogger("bench_safety")


def load_config(name: str, overrides: list[str]):
    """``conf/safety/<name>.yaml`` over the :class:`SafetyConfig` schema (typos fail), then overrides."""
    from omegaconf import OmegaConf

    from alignment.config import SafetyConfig
    from alignment.errors import UserError

    path = ROOT / "conf" / "safety" / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"--safety {name}: no {path.relative_to(ROOT)}")
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SafetyConfig), OmegaConf.load(path),
                                                  OmegaConf.from_dotlist(overrides)))
    except Exception as err:  # omegaconf's errors name the key
        raise UserError(f"safety config {name}: {err}") from err
    return cfg


class Timer:
    """Wall-clock and process CPU seconds of the timed blocks, summed."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Timer:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def pinned(cores: int | None):
    """Context manager restricting this process to ``cores`` CPUs (Linux), restoring them after."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        if not cores or not hasattr(os, "sched_setaffinity"):
            yield
            return
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, set(sorted(before)[:cores]))
        try:
            yield
        finally:
            os.sched_setaffinity(0, before)

    return ctx()


def metrics(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> dict:
    """AUPRC/AUROC/precision/recall for any-unsafe (the filter's verdict) and each labelled category."""
    from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

    from alignment.safety.filter import ANY_INDEX, SCORE_COLUMNS

    y_any = np.nan_to_num(labels[:, ANY_INDEX], nan=0.0).astype(int)
    flagged = (scores >= thresholds[None, :]).any(axis=1)
    out = {"n": int(len(y_any)), "positives_any": int(y_any.sum()),
           "auprc_any": round(float(average_precision_score(y_any, scores[:, ANY_INDEX])), 4),
           "auroc_any": round(float(roc_auc_score(y_any, scores[:, ANY_INDEX])), 4),
           "precision_any": round(float(precision_score(y_any, flagged, zero_division=0)), 4),
           "recall_any": round(float(recall_score(y_any, flagged, zero_division=0)), 4),
           "threshold_any": float(thresholds[ANY_INDEX])}
    per = {}
    for k, name in enumerate(SCORE_COLUMNS[:ANY_INDEX]):
        known = ~np.isnan(labels[:, k])
        y = labels[known, k].astype(int)
        if y.sum() == 0 or y.sum() == len(y):
            continue
        s = scores[known, k]
        per[name] = {"n": int(known.sum()), "positives": int(y.sum()),
                     "auprc": round(float(average_precision_score(y, s)), 4),
                     "auroc": round(float(roc_auc_score(y, s)), 4),
                     "precision": round(float(precision_score(y, s >= thresholds[k], zero_division=0)), 4),
                     "recall": round(float(recall_score(y, s >= thresholds[k], zero_division=0)), 4)}
    out["per_category"] = per
    return out


def featurise_timed(args, cfg, data, head):
    """The featurisers of ``cfg``'s backend (the encoder built as ``head`` was trained, when it has an
    embedding part) and ``data``'s features, timed: the lexical features, the sentence embeddings
    (``default``), the timer of the pass that counts and that of the first pass."""
    from alignment.safety.data import demo_labelled
    from alignment.safety.encoder import SentenceEncoder
    from alignment.safety.lexical import LexicalFeaturizer

    lexical = LexicalFeaturizer()
    encoder = None
    if cfg.backend == "default":
        enc = (head.meta.get("encoder") or {}) if head is not None else {}
        max_length = cfg.max_length or enc.get("max_length", 128)
        if cfg.num_threads:
            import torch

            torch.set_num_threads(cfg.num_threads)
        encoder = SentenceEncoder(cfg.encoder_path, tuple(enc.get("layers", (4, 5, 6))), max_length, cfg.batch_size,
                                  bool(enc.get("quantize", True)), None, cache_size=0)
    # warm-up on other texts (first-call costs: the rules' word memo, torch's kernels), untimed
    lexical(demo_labelled().texts[:2000])
    if encoder is not None:
        encoder.encode(demo_labelled().texts[:64])
    cold = Timer()
    log.info("featurising %d evaluation texts (timed)", len(data))
    with pinned(args.cores), cold:
        lex = lexical(data.texts)
        emb = encoder.encode(data.texts, progress=True) if encoder is not None else None
    timer = cold
    if encoder is None:  # lexical only: time a second, steady-state pass (memory and word memo warm)
        timer = Timer()
        with pinned(args.cores), timer:
            lex = lexical(data.texts)
    log.info("featurised in %.2f s wall, %.2f s CPU (first pass %.2f s wall)", timer.wall, timer.cpu, cold.wall)
    return lexical, encoder, lex, emb, timer, cold


def bench_trained(args, cfg, data, dev_path: Path, probes: list[str]) -> tuple[np.ndarray, dict, np.ndarray]:
    """``fast``/``default``: scores of ``data`` from heads trained by cross-validation or on the dev file,
    and the ``probes`` texts' scores from each of those heads (stacked: ``[heads * len(probes), K]``)."""
    from sklearn.model_selection import StratifiedKFold

    from alignment.errors import UserError
    from alignment.safety.data import LabelledTexts, demo_labelled, load_moderation_jsonl, refusal_labelled
    from alignment.safety.head import TrainSettings, train_head
    from alignment.safety.headfile import load_head
    from alignment.safety.train import featurize

    with_emb = cfg.backend == "default"
    head = load_head(args.head) if args.head else None
    if head is not None and with_emb and not head.has_default:
        raise UserError(f"--head {args.head}: has no embedding part; use --safety fast")
    lexical, encoder, lex, emb, timer, cold = featurise_timed(args, cfg, data, head)
    featurise_wall = timer.wall
    cv = head is None and data_is_dev(args.data, dev_path)
    extra = []
    if head is None and args.demo:
        extra.append(demo_labelled(weight=args.demo_weight))
    if head is None and args.refusals:
        extra.append(refusal_labelled(weight=args.refusal_weight))
    if head is None and not cv:
        extra.append(load_moderation_jsonl(dev_path))
    extra_data = LabelledTexts.concat(extra) if extra else None
    extra_lex = extra_emb = None
    if extra_data is not None:
        extra_lex, extra_emb = featurize(extra_data.texts, lexical, encoder, desc="training texts")
    ref_lex, ref_emb = featurize(probes, lexical, encoder, desc="held-out refusals and real answers")
    ref_scores: list[np.ndarray] = []
    scores = np.zeros((len(data), len(data.labels[0])), np.float32)
    settings = TrainSettings(seed=args.seed)

    def fit(train_idx: np.ndarray | None):
        parts_lex, parts_emb, labels, weights = [], [], [], []
        if train_idx is not None:
            parts_lex.append(lex.subset(train_idx))
            parts_emb.append(emb[train_idx] if emb is not None else None)
            labels.append(data.labels[train_idx])
            weights.append(data.weights[train_idx])
        if extra_data is not None:
            parts_lex.append(extra_lex)
            parts_emb.append(extra_emb)
            labels.append(extra_data.labels)
            weights.append(extra_data.weights)
        from alignment.safety.lexical import LexicalBatch

        train_emb = np.concatenate(parts_emb) if with_emb else None
        return train_head(LexicalBatch.concat(parts_lex), train_emb, np.concatenate(labels),
                          np.concatenate(weights), settings)

    def score(h, idx: np.ndarray) -> np.ndarray:
        ref_scores.append(h.score_default(ref_lex, ref_emb) if with_emb else h.score_fast(ref_lex))  # untimed
        sub = lex.subset(idx)
        with pinned(args.cores), timer:
            return h.score_default(sub, emb[idx]) if with_emb else h.score_fast(sub)

    info = {"mode": "head" if head is not None else (f"cv{args.folds}" if cv else "train-on-dev"),
            "demo_in_training": bool(head is None and args.demo),
            "demo_weight": args.demo_weight if head is None and args.demo else None,
            "refusals_in_training": bool(head is None and args.refusals),
            "refusal_weight": args.refusal_weight if head is None and args.refusals else None}
    if head is not None:
        scores[:] = score(head, np.arange(len(data)))
    elif cv:
        y = data.any_labels()
        if min(y.sum(), len(y) - y.sum()) < args.folds:
            raise UserError(f"{int(y.sum())} unsafe of {len(y)} rows: too few for {args.folds}-fold "
                            "cross-validation; raise --limit or lower --folds")
        folds = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed).split(np.zeros(len(y)), y)
        for i, (train_idx, held) in enumerate(folds, start=1):
            log.info("fold %d/%d: training on %d + %d texts, scoring %d", i, args.folds, len(train_idx),
                     0 if extra_data is None else len(extra_data), len(held))
            scores[held] = score(fit(train_idx), held)
    else:
        log.info("training on the dev file (%d texts) + %d, scoring %s", len(extra[-1]),
                 len(extra_data) - len(extra[-1]), args.data)
        scores[:] = score(fit(None), np.arange(len(data)))
    log.info("featurising and scoring took %.2f s wall, %.2f s CPU", timer.wall, timer.cpu)
    scoring_wall = timer.wall - featurise_wall
    info.update(texts_per_s=round(len(data) / timer.wall, 1), texts_per_cpu_s=round(len(data) / timer.cpu, 1),
                texts_per_s_first_pass=round(len(data) / (cold.wall + scoring_wall), 1))
    return scores, info, np.concatenate(ref_scores)


def bench_model(args, cfg, data, probes: list[str]) -> tuple[np.ndarray, dict, np.ndarray]:
    """``classifier``/``llama_guard``: the configured model's scores of ``data`` (timed end to end) and
    of the ``probes`` texts."""
    from alignment.safety.backends import build_filter

    flt = build_filter(cfg)
    timer = Timer()
    with timer:
        scores = flt.score_all(data.texts)
    return scores, {"mode": "model", "texts_per_s": round(len(data) / timer.wall, 2),
                    "texts_per_cpu_s": round(len(data) / timer.cpu, 2)}, flt.score_all(probes)


def xstest_figures(flagged: np.ndarray, answers) -> dict:
    """The filter's flag rates on real answers to XSTest's prompts (module docstring); ``flagged`` is
    ``[heads, answers]`` (each head's verdicts), so every rate is the mean over the heads."""
    from alignment.safety.refusal_examples import CLASSES, COMPLIANCE, FULL_REFUSAL, PARTIAL_REFUSAL

    labels = np.array([CLASSES[k] for k in answers.labels])
    unsafe_prompt = np.array([t.startswith("contrast_") for t in answers.types])
    models = np.array(answers.models)
    groups = {"refusal": labels == FULL_REFUSAL, "partial_refusal": labels == PARTIAL_REFUSAL,
              "safe_compliance": (labels == COMPLIANCE) & ~unsafe_prompt,
              "unsafe_compliance": (labels == COMPLIANCE) & unsafe_prompt}
    keys = {"refusal": "refusal_flag_rate", "partial_refusal": "partial_refusal_flag_rate",
            "safe_compliance": "safe_compliance_flag_rate", "unsafe_compliance": "unsafe_compliance_recall"}

    def share(mask: np.ndarray) -> float | None:
        return round(float(flagged[:, mask].mean()), 4) if mask.any() else None

    out: dict = {"xstest_n": len(labels)}
    for name, mask in groups.items():
        out[f"xstest_{keys[name]}"], out[f"xstest_n_{name}"] = share(mask), int(mask.sum())
    out["xstest_per_model"] = {m: {keys[name]: share(mask & (models == m)) for name, mask in groups.items()}
                               for m in sorted(set(answers.models))}
    return out


def data_is_dev(data: Path, dev: Path) -> bool:
    return data.resolve() == dev.resolve()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--safety", default="default", help="a conf/safety/*.yaml name (default: default)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N rows of --data only")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--no-demo", dest="demo", action="store_false", help="train without the demo texts")
    parser.add_argument("--demo-weight", type=float, default=DEMO_WEIGHT,
                        help=f"training weight of a demo row (default {DEMO_WEIGHT}, as align-safety-train)")
    parser.add_argument("--no-refusals", dest="refusals", action="store_false",
                        help="train without the refusal texts")
    parser.add_argument("--refusal-weight", type=float, default=REFUSAL_WEIGHT,
                        help=f"training weight of a refusal row (default {REFUSAL_WEIGHT}, as align-safety-train)")
    parser.add_argument("--head", default=None, help="evaluate this trained head (no training)")
    parser.add_argument("--cores", type=int, default=None,
                        help="pin the timed scoring to N cores (default: 1 for fast, all for the others)")
    parser.add_argument("--xstest", type=Path, default=None,
                        help="real chat models' labelled answers to XSTest (completions.dev.jsonl layout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a safety config key, e.g. --set classifier.path=/models/x")
    args = parser.parse_args(argv)

    from alignment.errors import UserError
    from alignment.safety.data import load_moderation_jsonl
    from alignment.safety.refusal_texts import HELDOUT_REFUSALS
    from alignment.safety.refusal_train import load_answers

    try:
        cfg = load_config(args.safety, args.overrides)
        from alignment.safety.filter import resolve_thresholds

        thresholds = resolve_thresholds(cfg.threshold, dict(cfg.thresholds or {}))
        if args.cores is None and cfg.backend == "fast":
            args.cores = 1
        if args.folds < 2:
            raise UserError(f"--folds={args.folds}: need at least 2")
        data = load_moderation_jsonl(args.data, args.limit)
        answers = load_answers(args.xstest) if args.xstest else None
        probes = HELDOUT_REFUSALS + (answers.texts if answers else [])
        log.info("%s: %d texts, %d unsafe; backend %s", args.data, len(data), int(data.any_labels().sum()),
                 cfg.backend)
        if cfg.backend in ("fast", "default"):
            if not DEFAULT_DATA.is_file() and not args.head and not data_is_dev(args.data, DEFAULT_DATA):
                raise UserError(f"{DEFAULT_DATA}: the dev file to train on is missing (or give --head)")
            scores, info, probe_scores = bench_trained(args, cfg, data, DEFAULT_DATA, probes)
        else:
            scores, info, probe_scores = bench_model(args, cfg, data, probes)
    except UserError as err:
        log.error("%s", err)
        return 2
    flagged = (probe_scores >= thresholds[None, :]).any(axis=1).reshape(-1, len(probes))  # [heads, probes]
    result = {"safety": args.safety, "backend": cfg.backend, "data": str(args.data), "limit": args.limit, **info,
              **metrics(scores, data.labels, thresholds),
              "refusal_flag_rate": round(float(flagged[:, :len(HELDOUT_REFUSALS)].mean()), 4),
              "cores": args.cores or len(os.sched_getaffinity(0))}
    if answers is not None:
        result.update(xstest=str(args.xstest), **xstest_figures(flagged[:, len(HELDOUT_REFUSALS):], answers))
    per = result.pop("per_category")
    log.info("per category: %s", json.dumps(per))
    result["per_category"] = per
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
