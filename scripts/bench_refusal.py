#!/usr/bin/env python
"""Benchmark: the refusal judge against people's labels of real chat models' answers (XSTest).

    python scripts/bench_refusal.py [--data FILE] [--cv models|models+prompts] [--refusal judge|rules]
                                    [--judge PATH] [--limit N]

``--data`` (default ``../shared/data/xstest/completions.dev.jsonl``) holds labelled answers:
``completion``, ``label`` (``1_full_compliance``, ``2_full_refusal``, ``3_partial_refusal``), ``model``
and ``prompt``. A bad row exits 2 naming the file and line.

* Without ``--cv``: the packaged judge (or ``--judge PATH``, or ``--refusal rules``) scores ``--data``.
  The packaged judge was trained on the dev file, so on it these figures are in-sample
  (``in_sample: true``); use ``--cv`` there.
* ``--cv models``: leave-one-model-out, as the judge meets the world: for each model, a judge is trained
  on the other models' answers (and the project's own answers) and scores the held-out model's.
  ``--cv models+prompts`` also leaves out the scored answers' prompts (5 prompt folds per model).
  ``--no-project-answers`` trains without the project's own answers (what they add).

Figures (binary: a partial refusal counts as a refusal): ``agreement`` with the human label (and its
95% interval, resampled by prompt), ``agreement_3way``, ``refusal_recall``, ``refusal_precision``,
``per_model`` agreement, ``baseline_agreement`` / ``baseline_per_model`` (the XSTest paper's
opening-phrase match) and ``rules_agreement`` / ``rules_per_model`` (``safety.refusal=rules``).
``texts_per_s``: answers judged per second (features and model, encoder cache off, after a warm-up on
other texts), with ``texts_per_cpu_s`` and ``threads`` (torch's). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from benchlib import ROOT, emit

DEV_FILE = ROOT.parent / "shared" / "data" / "xstest" / "completions.dev.jsonl"
log = logging.getLogger("bench_refusal")


def agreement_ci(correct: np.ndarray, groups: list[str], seed: int = 0) -> list[float]:
    """95% interval of the mean of ``correct``, resampling the groups (prompts) whole."""
    from alignment.stats import mean_ci

    return [round(q, 4) for q in mean_ci(correct.astype(float), seed, groups)]


def figures(classes: list[str], data, baseline: np.ndarray, rules: np.ndarray) -> dict:
    """Agreement figures of predicted ``classes`` against ``data``'s labels (module docstring)."""
    from alignment.safety.refusal_examples import CLASSES, COMPLIANCE

    truth = np.array([CLASSES[k] for k in data.labels])
    pred = np.array(classes)
    refused, truly = pred != COMPLIANCE, truth != COMPLIANCE
    correct = refused == truly
    models = np.array(data.models)
    groups = [p or str(i) for i, p in enumerate(data.prompts)]

    def per_model(values: np.ndarray) -> dict:
        return {m: round(float(values[models == m].mean()), 4) for m in sorted(set(data.models))}

    out = {"n": len(data), "agreement": round(float(correct.mean()), 4), "agreement_ci95": agreement_ci(correct, groups),
           "agreement_3way": round(float((pred == truth).mean()), 4),
           "refusal_recall": round(float(refused[truly].mean()), 4) if truly.any() else None,
           "refusal_precision": round(float(truly[refused].mean()), 4) if refused.any() else None,
           "per_model": per_model(correct), "per_model_3way": per_model(pred == truth),
           "per_model_ci95": {m: agreement_ci(correct[models == m], [g for g, k in zip(groups, models) if k == m])
                              for m in sorted(set(data.models))},
           "baseline_agreement": round(float((baseline == truly).mean()), 4), "baseline_per_model": per_model(baseline == truly),
           "rules_agreement": round(float((rules == truly).mean()), 4), "rules_per_model": per_model(rules == truly)}
    out["min_model_agreement"] = min(out["per_model"].values())
    out["above_baseline_every_model"] = all(out["per_model"][m] > out["baseline_per_model"][m] for m in out["per_model"])
    return out


def timed(fn, *args):
    """``fn(*args)`` and its wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def cross_validated(data, prompt_folds: int, project: bool = True) -> tuple[list[str], float, float]:
    """Held-out classes of every answer (leave-one-model-out), and the seconds featurising took;
    ``project``: the project's own answers join every training set."""
    from alignment.safety.refusal_judge import decide, judge_features
    from alignment.safety.refusal_train import held_out_proba, make_encoder, project_set

    encoder = make_encoder()
    texts, labels, weights = project_set()
    judge_features(texts[:64], encoder)  # warm-up, untimed
    x, wall, cpu = timed(judge_features, data.texts, encoder)
    extra = (judge_features(texts, encoder), labels, weights if project else np.zeros_like(weights))
    log.info("featurised %d answers in %.1f s; training %d judges", len(data), wall,
             len(set(data.models)) * max(prompt_folds, 1))
    return decide(held_out_proba(x, data, extra, prompt_folds)), wall, cpu


def packaged(data, kind: str, path: str | None) -> tuple[list[str], float, float]:
    """Classes from the packaged judge (or ``path``, or the rules), and the seconds judging took."""
    from alignment.safety.refusal_examples import project_answers
    from alignment.safety.refusal_judge import RefusalJudge, RuleJudge

    judge = RuleJudge() if kind == "rules" else RefusalJudge(path, cache_size=0)  # time the features, not the cache
    judge.classify([t for t, _ in project_answers()[:64]])  # warm-up, untimed
    return timed(judge.classify, data.texts)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEV_FILE)
    parser.add_argument("--cv", choices=("models", "models+prompts"), default=None)
    parser.add_argument("--no-project-answers", dest="project", action="store_false",
                        help="--cv: train without the project's own answers")
    parser.add_argument("--refusal", choices=("judge", "rules"), default="judge", help="the judge to score (no --cv)")
    parser.add_argument("--judge", default=None, help="a judge file (default: the packaged one)")
    parser.add_argument("--limit", type=int, default=None, help="the first N rows of --data only")
    args = parser.parse_args(argv)

    import torch

    from alignment.errors import UserError
    from alignment.safety.refusal import is_refusal
    from alignment.safety.refusal_features import opening_phrase_refusal
    from alignment.safety.refusal_train import load_answers

    try:
        if args.cv and (args.refusal != "judge" or args.judge):
            raise UserError("--cv trains its own judges; it takes no --refusal rules or --judge")
        data = load_answers(args.data, args.limit)
        log.info("%s: %d answers of %s", args.data, len(data), sorted(set(data.models)))
        if args.cv:
            classes, wall, cpu = cross_validated(data, 5 if args.cv == "models+prompts" else 0, args.project)
        else:
            classes, wall, cpu = packaged(data, args.refusal, args.judge)
    except UserError as err:
        log.error("%s", err)
        return 2
    baseline = np.array([opening_phrase_refusal(t) for t in data.texts])
    rules = np.array([is_refusal(t) for t in data.texts])
    in_sample = args.cv is None and args.refusal == "judge" and args.judge is None and \
        args.data.resolve() == DEV_FILE.resolve()
    if in_sample:
        log.warning("the packaged judge was trained on %s: these figures are in-sample; use --cv models", args.data)
    emit({"data": str(args.data), "cv": args.cv, "project_answers": args.project, "refusal": args.refusal, "judge": args.judge, "in_sample": in_sample,
          **figures(classes, data, baseline, rules), "texts_per_s": round(len(data) / wall, 1),
          "texts_per_cpu_s": round(len(data) / cpu, 1), "threads": torch.get_num_threads()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
