"""Safety evaluation of what a stage produced, and the safety gates: the same code after every stage.

* :func:`evaluate_policy_safety`: sample answers to red-team (harmful) and benign eval prompts, score
  them with the safety filter and the refusal judge (``safety.refusal``), and report unsafe rates
  (overall and per category), refusal rate on harmful prompts, over-refusal rate on benign prompts,
  mean scores, bootstrap confidence intervals and the worst examples; on the demo world also the gold
  classifier's unsafe rate. Where the run asks XSTest's prompts (``safety.eval.xstest``), one answer
  to each, judged in XSTest's three classes per prompt type (:func:`xstest_summary`).
* :func:`evaluate_preferences_safety`: for a preferences dataset, how often the chosen response is
  flagged compared with the rejected one.
* :func:`safety_gates`: ``safety.gate.max_unsafe_rate`` and ``safety.gate.max_regression`` (against
  the previous stage's ``safety.json`` in the same run).
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np

from alignment.config import Config, GateConfig, GenerationConfig
from alignment.data.prompt_sets import XSTEST, PromptSets
from alignment.data.prompts import PromptLike
from alignment.data.world import UNSAFE_STYLES, DemoWorld
from alignment.gates import GateVerdict, check_max, exit_status, summarise
from alignment.generation import sample_responses
from alignment.io import write_json_atomic
from alignment.safety.categories import CATEGORIES
from alignment.safety.filter import ANY_INDEX, SCORE_COLUMNS, Verdict, verdicts
from alignment.safety.rates import previous_policy_rates
from alignment.safety.refusal_examples import CLASSES, COMPLIANCE
from alignment.stats import mean_ci

log = logging.getLogger(__name__)
N_WORST = 5


def rate(values: np.ndarray, seed: int = 0, groups: np.ndarray | None = None) -> dict:
    """A rate with its 95% interval by prompt: the answers with one ``groups`` label (one prompt's
    ``safety.eval.samples_per_prompt`` answers) are resampled together; ``None``: one answer each."""
    return {"rate": float(values.mean()) if len(values) else float("nan"), "ci95": mean_ci(values, seed, groups)}


def judge(safety_filter, texts: list[str], prompts: list[str]) -> tuple[np.ndarray, list[Verdict]]:
    """The filter's ``score_all`` (categories then any) and its verdicts, from one scoring pass."""
    scores = np.asarray(safety_filter.score_all(texts, prompts=prompts), dtype=float)
    if scores.shape != (len(texts), len(SCORE_COLUMNS)):
        raise ValueError(f"the safety filter returned shape {scores.shape}, expected {(len(texts), len(SCORE_COLUMNS))}")
    return scores, verdicts(scores, safety_filter.thresholds)


def summarise_answers(prompts: list[PromptLike], texts: list[str], scores: np.ndarray, judged: list[Verdict],
                      world: DemoWorld | None, seed: int, refusals: np.ndarray) -> dict:
    """The safety figures of answers to harmful (red-team) and benign prompts.

    ``scores`` are ``[n, categories + any]`` (``score_all``), ``judged`` the matching verdicts,
    ``refusals`` whether each answer refuses (the refusal judge's verdicts).
    """
    unsafe = np.array([v.unsafe for v in judged])
    flags = np.array([[c in v.categories for c in CATEGORIES] for v in judged])
    harmful = np.array([p.kind == "harmful" for p in prompts])
    refusals = np.asarray(refusals, bool)
    by_prompt = np.array([p.text for p in prompts])  # intervals resample prompts, not their answers
    out: dict = {"n": len(texts)}
    if harmful.any():
        out["unsafe_rate"] = rate(unsafe[harmful], seed, by_prompt[harmful])
        out["unsafe_rate_by_category"] = {c: float(flags[harmful, i].mean()) for i, c in enumerate(CATEGORIES)}
        out["unsafe_rate_by_prompt_category"] = {
            c: float(unsafe[[i for i, p in enumerate(prompts) if p.kind == "harmful" and p.category == c]].mean())
            for c in sorted({p.category for p in prompts if p.kind == "harmful" and p.category})}
        out["refusal_rate_harmful"] = rate(refusals[harmful], seed, by_prompt[harmful])
        out["mean_any_score_harmful"] = float(scores[harmful, ANY_INDEX].mean())
    if (~harmful).any():
        out["unsafe_rate_benign"] = rate(unsafe[~harmful], seed, by_prompt[~harmful])
        out["over_refusal_rate_benign"] = rate(refusals[~harmful], seed, by_prompt[~harmful])
        out["mean_any_score_benign"] = float(scores[~harmful, ANY_INDEX].mean())
    if world is not None and harmful.any():
        gold_unsafe = np.array([world.classify(p, t) in UNSAFE_STYLES for p, t in zip(prompts, texts)])
        out["gold_unsafe_rate"] = rate(gold_unsafe[harmful], seed, by_prompt[harmful])
    worst = np.argsort(-scores.max(axis=1), kind="stable")[:N_WORST]
    out["worst_examples"] = [{"prompt": prompts[i].text, "response": texts[i], "max_score": judged[i].max_score,
                              "categories": list(judged[i].categories)} for i in worst]
    return out


def eval_prompts(prompt_sets: PromptSets, n_prompts: int, seed: int) -> list[PromptLike]:
    """``n_prompts`` red-team prompts and ``n_prompts`` benign prompts (fixed for a seed)."""
    rng = random.Random(f"safety-eval/{seed}")
    redteam, benign = prompt_sets["redteam"], prompt_sets["benign"]
    rng.shuffle(redteam)
    rng.shuffle(benign)
    return redteam[:n_prompts] + benign[:n_prompts]


def xstest_summary(prompts: list[PromptLike], classes: list[str], unsafe: np.ndarray, seed: int) -> dict:
    """XSTest's figures from one judged answer per prompt: per prompt type and for the safe and the
    unsafe prompts together, the share of each class of :data:`CLASSES` and of refusals (partial or
    full), each with its bootstrap interval (one answer per prompt: resampling answers is resampling
    prompts); for the unsafe prompts also the safety filter's unsafe rate."""
    classes_ = np.array(classes)
    harmful = np.array([p.kind == "harmful" for p in prompts])
    types = np.array([p.category for p in prompts])

    def shares(rows: np.ndarray) -> dict:
        out: dict = {"n": int(rows.sum())}
        out.update({c: rate((classes_[rows] == c).astype(float), seed) for c in CLASSES})
        out["refusal"] = rate((classes_[rows] != COMPLIANCE).astype(float), seed)
        return out

    summary = {"n": len(prompts), "safe": shares(~harmful), "unsafe": shares(harmful),
               "by_type": {t: {"label": "unsafe" if harmful[types == t][0] else "safe", **shares(types == t)}
                           for t in dict.fromkeys(types)}}
    if harmful.any():
        summary["unsafe"]["unsafe_rate"] = rate(unsafe[harmful].astype(float), seed)
    return summary


def evaluate_policy_safety(model, tokenizer, safety_filter, refusal_judge, prompt_sets: PromptSets,
                           gen: GenerationConfig, n_prompts: int, samples_per_prompt: int, seed: int = 0) -> dict:
    """Sample from a policy and report its safety (the ``policy`` section of a stage's ``safety.json``);
    the gold unsafe rate too where the prompts come from the demo world, and XSTest's figures where the
    prompt sets have its prompts (one answer each, sampled apart so that the red-team and benign answers
    are the same with XSTest or without; ``wall_s`` is what XSTest added)."""
    prompts = [p for p in eval_prompts(prompt_sets, n_prompts, seed) for _ in range(samples_per_prompt)]
    samples = sample_responses(model, tokenizer, [p.messages for p in prompts], gen, seed=seed, desc="safety eval")
    texts = [s.text for s in samples]
    scores, judged = judge(safety_filter, texts, [p.text for p in prompts])
    out = summarise_answers(prompts, texts, scores, judged, prompt_sets.gold, seed, refusal_judge.refusals(texts))
    if XSTEST in prompt_sets.sets:
        started = time.perf_counter()
        xstest = prompt_sets[XSTEST]
        answers = [s.text for s in sample_responses(model, tokenizer, [p.messages for p in xstest], gen, seed=seed,
                                                    desc="XSTest")]
        unsafe = np.array([v.unsafe for v in judge(safety_filter, answers, [p.text for p in xstest])[1]])
        out["xstest"] = {"where": prompt_sets.where[XSTEST],
                         **xstest_summary(xstest, refusal_judge.classify(answers), unsafe, seed),
                         "wall_s": round(time.perf_counter() - started, 1)}
    return out


def evaluate_preferences_safety(rows: list[dict], safety_filter) -> dict:
    """How often the chosen and the rejected responses of preference pairs are flagged."""
    prompts = [r["prompt"] for r in rows]
    chosen = np.array([v.unsafe for v in judge(safety_filter, [r["chosen"] for r in rows], prompts)[1]])
    rejected = np.array([v.unsafe for v in judge(safety_filter, [r["rejected"] for r in rows], prompts)[1]])
    return {"n": len(rows), "chosen_flagged_rate": rate(chosen), "rejected_flagged_rate": rate(rejected),
            "chosen_flagged_rejected_safe": float((chosen & ~rejected).mean()) if len(rows) else float("nan")}


def stage_safety(cfg: Config, stage: str, model, tokenizer, gen: GenerationConfig, out_dir: Path,
                 prompt_sets: PromptSets, baseline: Path | None = None) -> tuple[dict, int]:
    """The shared end of a stage that produced a policy: evaluate it on the run's red-team and benign
    prompts, gate it, write ``safety.json``.

    Returns the report and the exit status (0, or :data:`~alignment.gates.EXIT_GATE_FAILED`).
    """
    from alignment.safety import build_filter
    from alignment.safety.refusal_judge import build_refusal_judge

    safety_filter = build_filter(cfg.safety)
    refusal_judge = build_refusal_judge(cfg.safety.refusal, cfg.safety.refusal_path, cfg.safety.num_threads)
    policy = evaluate_policy_safety(model, tokenizer, safety_filter, refusal_judge, prompt_sets, gen,
                                    cfg.safety.eval.n_prompts, cfg.safety.eval.samples_per_prompt, cfg.seed)
    previous = previous_policy_rates(baseline)
    previous_unsafe = (previous or {}).get("unsafe_rate")
    gates = summarise(safety_gates(cfg.safety.gate, policy["unsafe_rate"]["rate"], previous_unsafe))
    report = {"stage": stage, "filter": cfg.safety.backend, "refusal_judge": str(cfg.safety.refusal),
              "prompts": prompt_sets.source,
              "prompt_sets": {k: prompt_sets.where[k] for k in ("redteam", "benign", XSTEST) if k in prompt_sets.where}, "policy": policy,
              "baseline": str(baseline) if baseline else None, "previous_unsafe_rate": previous_unsafe,
              "previous": previous, "gates": gates}
    write_json_atomic(out_dir / "safety.json", report)
    log.info("%s safety: unsafe rate on red-team prompts %.3f (CI %.3f-%.3f), refusal %.3f, over-refusal %.3f",
             stage, policy["unsafe_rate"]["rate"], *policy["unsafe_rate"]["ci95"], policy["refusal_rate_harmful"]["rate"],
             policy["over_refusal_rate_benign"]["rate"])
    if "xstest" in policy:
        log.info("%s XSTest: refuses %.3f of the unsafe prompts, %.3f of the safe ones (safety.refusal=%s)", stage,
                 policy["xstest"]["unsafe"]["refusal"]["rate"], policy["xstest"]["safe"]["refusal"]["rate"],
                 cfg.safety.refusal)
    return report, exit_status(gates)


def safety_gates(gate: GateConfig, unsafe_rate: float, previous: float | None) -> list[GateVerdict | None]:
    verdicts = [check_max("safety.gate.max_unsafe_rate", unsafe_rate, gate.max_unsafe_rate)]
    if previous is not None:
        verdicts.append(check_max("safety.gate.max_regression", unsafe_rate - previous, gate.max_regression))
    elif gate.max_regression is not None:
        log.info("safety.gate.max_regression: no earlier stage's safety.json in this run to compare with")
    return verdicts
