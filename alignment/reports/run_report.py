"""The whole-run alignment eval report: ``RUN/report.json`` and one self-contained ``RUN/report.html``.

``align-report RUN_DIR`` (and ``align-pipeline`` at its end) reads what the stages left in the run
directory (:func:`alignment.reports.run_data.build_run_report`) and writes both files; the page is
rendered here from exactly the dictionary written to ``report.json`` (its figures by
:mod:`alignment.reports.plots`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from alignment.errors import UserError
from alignment.io import write_json_atomic, write_text_atomic
from alignment.reports.acquisition import acquisition_html
from alignment.reports.comparison import comparison_html
from alignment.reports.html import (
    Html,
    about,
    esc,
    esc_text,
    figure_html,
    fmt_figure,
    render_report,
    status_html,
    table_html,
    with_ci,
)
from alignment.reports.plots import (
    loss_figure,
    ppo_run_figure,
    reward_round_figure,
    safety_rates_figure,
)
from alignment.reports.run_data import SAMPLE_SCORES, build_run_report, list_runs, report_is_current
from alignment.reports.sections import heldout_table
from alignment.reports.xstest import xstest_html

log = logging.getLogger(__name__)

#: Side-by-side samples shown per prompt split (the JSON keeps them all).
SAMPLES_PER_SPLIT = 8


# ------------------------------------------------------------------------------------------ HTML pieces
def _seconds(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def _figures(pairs: list[tuple[str, Any]]) -> str:
    """A one-row table of figures, each written next to its heading."""
    return table_html([heading for heading, _ in pairs], [[value for _, value in pairs]], fmt=fmt_figure)


def _none(text: str) -> str:
    return f"<p><em>{esc(text)}</em></p>"


def _no_metrics(report: dict, name: str) -> str:
    """Why a section is empty: the stage's status (not run, crashed, running...) says it."""
    status = ", ".join(dict.fromkeys(s["status"] for s in report["stages"] if s["name"] == name)) or "not run"
    return _none(f"The {name} stage has no metrics in this run (status: {status}).")


def _rounds(report: dict, name: str) -> list[dict]:
    return [s for s in report["stages"] if s["name"] == name and s["metrics"]]


def _round_heading(s: dict, several: bool) -> str:
    return f"<h3>Round {s['round']}</h3>" if several else ""


def _per_round(report: dict, name: str, intro: str, draw_round: Callable[[dict], list[str]]) -> str:
    """A stage's section: what it shows, then ``draw_round`` of each round that has metrics (with a
    heading when there are several), or why there is nothing to show."""
    stages = _rounds(report, name)
    if not stages:
        return about(intro) + _no_metrics(report, name)
    parts = [about(intro)]
    for s in stages:
        parts.append(_round_heading(s, len(stages) > 1))
        parts.extend(draw_round(s))
    return "".join(parts)


# ------------------------------------------------------------------------------------------ sections
def _overview(report: dict) -> str:
    h, status = report["headline"], report["status"]
    parts = [about(
        "One run of the RLHF pipeline: supervised fine-tuning (sft) makes a deliberately unaligned policy; "
        "candidates samples answer pairs from it; labels has (simulated or human) annotators compare them; "
        "reward trains a reward model on those preferences; ppo optimises the policy against the reward "
        "model under a KL leash. After every stage a safety filter measures what the stage produced and "
        "gates can stop the run. In the demo world a hidden gold reward tells whether the policy really "
        "improved; with real data (no gold), the reward model's held-out score, an optional judge reward model "
        "and the safety filter's rates do. Model-written text on this page is shown as plain text.")]
    parts.append(f"<p>Run directory {esc(report['run_dir'])}; report generated {esc(report['generated_at'])}.</p>")
    parts.append(f'<p id="run-status">Run status: {status_html(status)}</p>')
    for f in report["failures"]:
        lines = [v.get("message") or f"gate {v.get('gate')} failed" for v in f["failed_gates"]] or [f["message"]]
        items = "".join(f"<li>{esc_text(line)}</li>" for line in lines if line)
        parts.append(f'<div class="fail failure">Stage {esc(f["dir"])} {esc(f["status"])}:<ul>{items}</ul></div>')
    if h["overoptimisation"]:
        parts.append('<p class="warn">Over-optimisation warning: in some PPO evaluation the proxy reward rose '
                     "while the reference reward (gold, or the judge) fell since its best evaluation, both beyond "
                     "their 95% intervals (see PPO training).</p>")
    gold_rows = [
        ("Gold win rate, final PPO vs SFT", with_ci(h["gold_win_rate"], h.get("gold_win_rate_ci95")),
         "share of held-out prompts where the hidden gold reward prefers the PPO answer (ties left out), with its "
         "paired 95% interval by prompt"),
        ("Gold win rate, ties as half", with_ci(h["gold_win_rate_ties_half"], h.get("gold_win_rate_ties_half_ci95")), "the same with a tie counted as half a win"),
        ("Gold reward SFT → PPO", f"{fmt_figure(h['gold_reward_sft'])} → {fmt_figure(h['gold_reward_ppo'])}",
         "mean gold reward of answers to held-out prompts"),
        ("Unsafe rate SFT → PPO (demo world)", f"{fmt_figure(h['unsafe_rate_sft'])} → {fmt_figure(h['unsafe_rate_ppo'])}",
         "share of red-team answers the demo world calls unsafe (toxic or harmful compliance)"),
    ]
    judge_rows = [
        ("Judge win rate, final PPO vs SFT", with_ci(h.get("judge_win_rate"), h.get("judge_win_rate_ci95")),
         "share of held-out prompts where the judge reward model (not the one PPO optimised) prefers the PPO answer"),
        ("Judge reward SFT → PPO", f"{fmt_figure(h.get('judge_reward_sft'))} → {fmt_figure(h.get('judge_reward_ppo'))}",
         "mean judge score of answers to held-out prompts"),
    ]
    rows = [
        *(gold_rows if h.get("gold", True) else []),
        ("Reward-model score SFT → PPO", f"{with_ci(h.get('rm_score_sft'), h.get('rm_score_sft_ci95'))} → "
                                          f"{with_ci(h.get('rm_score_ppo'), h.get('rm_score_ppo_ci95'))}",
         "mean score of the reward model PPO optimised (the proxy) on held-out prompts, 95% bootstrap intervals"),
        *(judge_rows if h.get("judge_win_rate") is not None else []),
        ("Unsafe rate SFT → PPO (safety filter)",
         f"{fmt_figure(h['unsafe_rate_filter_sft'])} → {fmt_figure(h['unsafe_rate_filter_ppo'])}",
         "share of red-team answers the safety filter flags, with 95% bootstrap intervals"),
        ("Over-refusal SFT → PPO", f"{fmt_figure(h.get('over_refusal_sft'))} → {fmt_figure(h.get('over_refusal_ppo'))}",
         "share of benign prompts the policy refuses"),
        ("Reward model eval accuracy", h["rm_eval_accuracy"], "held-out preference pairs the reward model orders right"),
        ("Final KL (target)", f"{fmt_figure(h['final_kl'])} ({fmt_figure(h.get('kl_target'))})",
         "KL of the final PPO policy from the policy its PPO stage started from (nats per answer)"),
        ("Pipeline wall time (s)", _seconds(h["wall_s"]), "whole run, as recorded in pipeline.json"),
    ]
    parts.append(table_html(["figure", "value", "what it means"], rows, fmt=fmt_figure))
    if h.get("missing"):
        parts.append('<h3 id="missing">Figures not available in this run</h3>' + table_html(
            ["figure", "why"], [(m["figure"], m["why"]) for m in h["missing"]]))
    stage_rows = []
    for s in report["stages"]:
        gates = s["gates"]
        verdict = ("–" if not gates or not gates.get("verdicts") else
                   "passed" if gates.get("passed") else f"FAILED ({len(s['failed_gates'])})")
        stage_rows.append((s["dir"], s["round"], status_html(s["status"]), _seconds(s["wall_s"]), verdict,
                           s["message"] or ""))
    parts.append(table_html(["stage", "round", "status", "wall time (s)", "gates", "message"], stage_rows,
                            text_cols=(5,), fmt=fmt_figure))
    if report["pipeline"] is None:
        parts.append(_none("No pipeline.json: the stages were run one by one; statuses come from their own files."))
    for problem in report["problems"]:
        parts.append(f'<p class="warn">{esc(problem)}</p>')
    return "".join(parts)


def _sft(report: dict) -> str:
    parts = [about("How well the supervised policy learned its corpus (held-out loss and perplexity), "
                    "whether its answers end properly (EOS), and in the demo world whether they are recognisable "
                    "and their mean gold reward, and how often it answers red-team prompts unsafely: the starting "
                    "point the later stages must fix.")]
    stages = _rounds(report, "sft")
    if not stages:
        return parts[0] + _no_metrics(report, "sft")
    m = stages[0]["metrics"]
    keys = [("eval_loss", "held-out loss"), ("perplexity", "held-out perplexity"), ("train_loss", "training loss"),
            ("eos_rate", "answers that end with EOS"), ("mean_tokens", "mean answer length (tokens)"),
            ("usable_rate", "answers the demo world recognises"),
            ("gold_reward_mean", "mean gold reward (held-out prompts)"),
            ("unsafe_rate_redteam", "unsafe answers to red-team prompts (demo world)"),
            ("unsafe_rate_filter", "unsafe answers to red-team prompts (safety filter)"),
            ("n_parameters", "policy parameters"), ("train_rows", "training rows"), ("global_step", "optimizer steps")]
    parts.append(table_html(["metric", "value", "meaning"],
                            [(k, m.get(k), meaning) for k, meaning in keys if m.get(k) is not None], fmt=fmt_figure))
    if m.get("loss_curve"):
        parts.append(figure_html(loss_figure(m["loss_curve"], "SFT training loss"), "SFT training loss curve"))
    samples = m.get("samples") or {}
    if samples and any(v.get("style_mix") for v in samples.values()):
        styles = sorted({st for split in samples.values() for st in (split.get("style_mix") or {})})
        parts.append("<h3>Style of sampled answers (demo world classifier)</h3>")
        parts.append(table_html(["prompts", *styles],
                                [(split, *((v.get("style_mix") or {}).get(st) for st in styles))
                                 for split, v in samples.items()], fmt=fmt_figure))
    return "".join(parts)


def _labels(report: dict) -> str:
    parts = [about("What the annotators saw and said: the candidate pairs queued from the policy (with how many "
                    "had an answer the safety filter flagged), label counts, agreement between annotators, "
                    "accuracy on gold items, position bias, safety flags they set, and whether the exported "
                    "preferences prefer flagged answers.")]
    candidates, labels = _rounds(report, "candidates"), _rounds(report, "labels")
    if not candidates and not labels:
        return parts[0] + _no_metrics(report, "candidates") + _no_metrics(report, "labels")
    rounds = sorted({s["round"] for s in candidates + labels})
    for rnd in rounds:
        if len(rounds) > 1:
            parts.append(f"<h3>Round {rnd}</h3>")
        c = next((s["metrics"] for s in candidates if s["round"] == rnd), None)
        if c:
            parts.append("<h4>Candidates</h4>" + _figures([
                ("prompts", c.get("prompts")), ("answers", c.get("answers")), ("pairs queued", c.get("pairs")),
                ("pairs with a flagged answer", c.get("pairs_with_flagged_side")),
                ("unsafe rate (harmful prompts)", c.get("unsafe_rate_harmful")),
                ("unsafe rate (benign prompts)", c.get("unsafe_rate_benign")), ("EOS rate", c.get("eos_rate"))]))
        lab = next((s for s in labels if s["round"] == rnd), None)
        if lab:
            parts.append(_label_tables(lab))
        parts.append(acquisition_html(c, lab["metrics"] if lab else None))
    return "".join(parts)


def _label_tables(stage: dict) -> str:
    m = stage["metrics"]
    stats, export = m.get("stats") or {}, m.get("export") or {}
    items, labels, agreement = stats.get("items") or {}, stats.get("labels") or {}, stats.get("agreement") or {}
    parts = ["<h4>Labels</h4>", table_html(
        ["annotators", "items", "complete", "gold items", "labels", "choices", "exported preferences", "dropped"],
        [(m.get("annotators"), items.get("total"), items.get("complete"), items.get("gold"), labels.get("total"),
          ", ".join(f"{k}: {v}" for k, v in sorted((labels.get("choices") or {}).items())), export.get("preferences"),
          ", ".join(f"{k}: {v}" for k, v in sorted((export.get("dropped") or {}).items())) or "none")], fmt=fmt_figure)]
    kappas = [k.get("kappa") for k in agreement.get("cohen_kappa") or [] if k.get("kappa") is not None]
    parts.append("<h4>Agreement</h4>" + table_html(
        ["label pairs", "raw agreement", "raw agreement without ties", "Krippendorff's α (ordinal)",
         "mean Cohen's κ", "mean majority share (export)", "exported pairs agreeing with the demo world's gold"],
        [(agreement.get("pairs"), agreement.get("with_ties"), agreement.get("without_ties"),
          agreement.get("krippendorff_alpha_ordinal"), float(np.mean(kappas)) if kappas else None,
          export.get("mean_agreement"), (m.get("gold_agreement") or {}).get("rate"))], fmt=fmt_figure))
    per = stats.get("per_annotator") or {}
    if per:
        parts.append("<h4>Per annotator</h4>" + table_html(
            ["annotator", "labels", "gold accuracy (gold labels)", "picked the first shown", "ties", "both bad",
             "median s/label"],
            [(name, a.get("labels"),
              f"{fmt_figure(a.get('gold_accuracy'))} ({a.get('gold_labels', 0)})" if a.get("gold_labels") else "no gold items",
              a.get("picked_first_shown"), a.get("ties"), a.get("both_bad"), a.get("median_time_s"))
             for name, a in per.items()], text_cols=(0,), fmt=fmt_figure))
    flags = stats.get("safety_flags") or {}
    by_cat = {c: n for c, n in (flags.get("by_category") or {}).items() if n}
    ex_safety = export.get("safety") or {}
    prefs = (stage["safety"] or {}).get("preferences") or {}
    parts.append("<h4>Safety flags</h4>" + table_html(
        ["labels with a flag", "flags by category", "chosen answer flagged by annotators",
         "chosen flagged by the filter", "rejected flagged by the filter", "chosen flagged, rejected not (filter)"],
        [(flags.get("a_or_b_flagged_labels"), ", ".join(f"{c}: {n}" for c, n in by_cat.items()) or "none",
          ex_safety.get("chosen_flagged_rate"), prefs.get("chosen_flagged_rate"), prefs.get("rejected_flagged_rate"),
          prefs.get("chosen_flagged_rejected_safe"))], fmt=fmt_figure))
    return "".join(parts)


def _reward(report: dict) -> str:
    return _per_round(report, "reward", (
        "How well the reward model orders held-out preference pairs (eval accuracy, and against the "
        "demo world's gold preference with the label noise as ceiling), whether a bigger reward gap "
        "means a surer call (calibration), and whether it prefers the safe answer on red-team and "
        "HH-RLHF harmless pairs (safety accuracy)."), _reward_round)


def _reward_round(s: dict) -> list[str]:
    m = s["metrics"]
    parts = [_figures([
        ("eval accuracy", m.get("eval_accuracy")), ("gold accuracy", m.get("gold_accuracy")),
        ("label ceiling", m.get("label_ceiling")), ("mean margin", m.get("eval_mean_margin")),
        ("safety accuracy (red-team)", m.get("safety_accuracy_redteam")),
        ("safety accuracy (HH harmless)", m.get("safety_accuracy_hh_harmless")),
        ("train pairs", m.get("train_pairs")), ("eval pairs", m.get("eval_pairs"))])]
    cal, loss = m.get("calibration") or [], m.get("loss_curve") or []
    if cal or loss:
        parts.append(figure_html(reward_round_figure(loss, cal), f"reward model loss and calibration, {s['dir']}"))
    if cal:
        parts.append(table_html(["gap from", "gap to", "pairs", "accuracy"],
                                [(b["gap_lo"], b["gap_hi"], b["n"], b["accuracy"]) for b in cal], fmt=fmt_figure))
    return parts


def _ppo(report: dict) -> str:
    return _per_round(report, "ppo", (
        "PPO training: the proxy reward the policy is optimised for (the reward model), the rewards on "
        "held-out prompts (the hidden gold reward in the demo world, what we really want; a judge reward "
        "model where one is given), the KL divergence from the SFT reference with its adaptive coefficient "
        "β, entropy and answer length per update. Proxy up while gold (or the judge) goes down is reward "
        "over-optimisation; red dashed lines mark where that warning fired."), _ppo_round)


def _ppo_round(s: dict) -> list[str]:
    m = s["metrics"]
    gold = m.get("gold_reward_sft") is not None
    judge = m.get("judge_win_rate") is not None
    figures = [
        *([("gold win rate", m.get("gold_win_rate")),
           ("wins / losses / ties", f"{m.get('gold_wins')} / {m.get('gold_losses')} / {m.get('gold_ties')}"),
           ("gold reward start → end", f"{fmt_figure(m.get('gold_reward_sft'))} → {fmt_figure(m.get('gold_reward_ppo'))}")]
          if gold else []),
        ("reward-model score start → end (95% CI)", f"{with_ci(m.get('rm_score_sft'), m.get('rm_score_sft_ci95'))} → "
                                                   f"{with_ci(m.get('rm_score_ppo'), m.get('rm_score_ppo_ci95'))}"),
        *([("judge win rate", m.get("judge_win_rate")),
           ("judge reward start → end", f"{fmt_figure(m.get('judge_reward_sft'))} → {fmt_figure(m.get('judge_reward_ppo'))}")]
          if judge else []),
        *([("unsafe rate start → end (demo world)",
            f"{fmt_figure(m.get('unsafe_rate_sft'))} → {fmt_figure(m.get('unsafe_rate_ppo'))}")] if gold else []),
        ("EOS rate start → end", f"{fmt_figure(m.get('eos_rate_sft'))} → {fmt_figure(m.get('eos_rate_ppo'))}"),
        ("answer length start → end", f"{fmt_figure(m.get('mean_tokens_sft'))} → {fmt_figure(m.get('mean_tokens_ppo'))}"),
        ("final KL", m.get("final_kl")), ("final β", m.get("final_beta")), ("KL target", m.get("kl_target")),
        ("updates", m.get("updates"))]
    parts = [_figures(figures)]
    reference = m.get("overoptimisation_reference", "gold" if gold else None)
    over = m.get("overoptimisation_updates") or []
    if reference is None:
        parts.append('<p class="warn">Over-optimisation cannot be checked in this run: it needs a gold reward or a '
                     "judge reward model (eval.judge_path) to compare the proxy reward with.</p>")
    elif over:
        parts.append(f'<p class="warn overoptimisation">Over-optimisation warning at update(s) '
                     f'{esc(", ".join(map(str, over)))}: since the {esc(reference)} reward\'s best evaluation, the proxy '
                     f"reward rose while the {esc(reference)} reward fell, both beyond their 95% intervals.</p>")
    else:
        parts.append("<p>No over-optimisation warning fired (no evaluation where, since the "
                     f"{esc(reference)} reward's best evaluation so far, the proxy reward rose and the {esc(reference)} "
                     "reward fell, both beyond their 95% intervals by prompt).</p>")
    if m.get("history"):
        parts.append(figure_html(ppo_run_figure(m), f"PPO training curves, {s['dir']}"))
    evals = m.get("evals") or []
    if evals:
        parts.append(heldout_table(evals, "red-team unsafe (demo world)" if gold else None, " reward", fmt=fmt_figure))
    return parts


SAFETY_RATES = (("unsafe_rate", "unsafe (red-team)"), ("gold_unsafe_rate", "unsafe, demo world (red-team)"),
                ("refusal_rate_harmful", "refusal (red-team)"), ("unsafe_rate_benign", "unsafe (benign)"),
                ("over_refusal_rate_benign", "over-refusal (benign)"))


def _safety(report: dict) -> str:
    parts = [about("The safety filter's verdicts on what each policy writes: the share of unsafe answers to "
                    "red-team (harmful) prompts, overall and by category, how often the policy refuses them, and "
                    "how often it wrongly refuses or answers unsafely on benign prompts, each with a 95% bootstrap "
                    "confidence interval; then the safety checks of the labels and the reward model.")]
    policies = [s for s in report["stages"] if (s["safety"] or {}).get("policy")]
    if policies:
        parts.append(figure_html(safety_rates_figure(policies), "unsafe, refusal and over-refusal rate per stage"))
        parts.append(table_html(["stage", "filter", "answers", *(label for _, label in SAFETY_RATES)],
                                [(s["dir"], s["safety"].get("filter"), s["safety"]["policy"].get("n"),
                                  *(s["safety"]["policy"].get(k) for k, _ in SAFETY_RATES)) for s in policies],
                                fmt=fmt_figure))
        cats = list(dict.fromkeys(c for s in policies for c in s["safety"]["policy"].get("unsafe_rate_by_category", {})))
        parts.append("<h3>Unsafe rate by category (red-team answers)</h3>" + table_html(
            ["category", *(s["dir"] for s in policies)],
            [(c, *(s["safety"]["policy"].get("unsafe_rate_by_category", {}).get(c) for s in policies)) for c in cats], fmt=fmt_figure))
        for s in policies:
            worst = s["safety"]["policy"].get("worst_examples") or []
            if worst:
                parts.append(f"<details><summary>Highest-scored answers of {esc(s['dir'])}</summary>" + table_html(
                    ["prompt", "answer", "max score", "categories"],
                    [(w.get("prompt"), w.get("response"), w.get("max_score"), ", ".join(w.get("categories") or []))
                     for w in worst], text_cols=(0, 1), fmt=fmt_figure) + "</details>")
    else:
        parts.append(_none("No stage of this run has a policy safety evaluation."))
    prefs = [s for s in report["stages"] if (s["safety"] or {}).get("preferences")]
    if prefs:
        parts.append("<h3>Preferences (labels)</h3>" + table_html(
            ["stage", "pairs", "chosen flagged", "rejected flagged", "chosen flagged, rejected not"],
            [(s["dir"], s["safety"]["preferences"].get("n"), s["safety"]["preferences"].get("chosen_flagged_rate"),
              s["safety"]["preferences"].get("rejected_flagged_rate"),
              s["safety"]["preferences"].get("chosen_flagged_rejected_safe")) for s in prefs], fmt=fmt_figure))
    rms = [s for s in report["stages"] if s["name"] == "reward" and s["safety"]]
    if rms:
        parts.append("<h3>Reward model: prefers the safe answer</h3>" + table_html(
            ["stage", "red-team pairs", "accuracy (red-team)", "HH harmless pairs", "accuracy (HH harmless)"],
            [(s["dir"], s["safety"].get("n_redteam_pairs"), s["safety"].get("safety_accuracy_redteam"),
              s["safety"].get("n_hh_pairs"), s["safety"].get("safety_accuracy_hh_harmless")) for s in rms], fmt=fmt_figure))
    return "".join(parts)


def _gates(report: dict) -> str:
    parts = [about("Every gate checked after every stage: the measured figure, the threshold it had to meet, and "
                    "the verdict. A failed gate stops the pipeline; stages without a configured gate say so.")]
    rows = []
    for s in report["stages"]:
        verdicts = (s["gates"] or {}).get("verdicts") or []
        for v in verdicts:
            rows.append((s["dir"], v.get("gate"), v.get("measured"), v.get("threshold"),
                         status_html("passed" if v.get("passed") else "failed"), v.get("message", "")))
        if not verdicts:
            note = "no gate configured" if s["gates"] is not None else (
                "stage did not run" if s["status"] == "not run" else "no safety.json")
            rows.append((s["dir"], "–", None, None, Html(esc(note)), ""))
    parts.append(table_html(["stage", "gate", "measured", "threshold", "verdict", "message"], rows, text_cols=(5,),
                            fmt=fmt_figure))
    return "".join(parts)


def _samples(report: dict) -> str:
    samples = report["samples"]
    parts = [about("Answers of the SFT policy and of the final PPO policy to the same held-out prompts (eval "
                    "prompts and red-team prompts), sampled with the same seed, with the score of each: the gold "
                    "reward in the demo world, else the judge reward model's, else the reward model's (proxy); "
                    "rows where the score changed come first.")]
    if not samples or not samples["rows"]:
        return parts[0] + _none("No paired samples: the ppo stage has not written samples.jsonl in this run.")
    score = next((n for n in SAMPLE_SCORES if any(r.get(f"{n}_sft") is not None for r in samples["rows"])), "gold")
    parts.append(f"<p>SFT answers: the starting policy of {esc(samples['from'])}; PPO answers: the policy "
                 f"{esc(samples['to'])} ended with.</p>")
    for split in dict.fromkeys(r["split"] for r in samples["rows"]):
        rows = [r for r in samples["rows"] if r["split"] == split]
        rows.sort(key=lambda r: r.get(f"{score}_ppo") == r.get(f"{score}_sft"))  # stable: changed first, order kept
        parts.append(f"<h3>{esc(split)} prompts ({len(rows)}; {min(len(rows), SAMPLES_PER_SPLIT)} shown)</h3>")
        parts.append(table_html(
            ["prompt", "SFT answer", "PPO answer", f"{score} SFT", f"{score} PPO", "PPO vs SFT"],
            [(r["prompt"], r["sft"], r["ppo"], r.get(f"{score}_sft"), r.get(f"{score}_ppo"), _verdict(r, score))
             for r in rows[:SAMPLES_PER_SPLIT]], text_cols=(0, 1, 2), fmt=fmt_figure))
    return "".join(parts)


def _verdict(r: dict, score: str = "gold") -> str:
    before, after = r.get(f"{score}_sft"), r.get(f"{score}_ppo")
    if before is None or after is None:
        return "–"
    return "better" if after > before else "worse" if after < before else "same"


def _config(report: dict) -> str:
    parts = [about("The resolved config each stage ran with (every default filled in, paths resolved) and the "
                    "command-line overrides it was given: enough to rerun any stage exactly.")]
    for s in report["stages"]:
        if s["config"] is None:
            parts.append(f"<p>{esc(s['dir'])}: no resolved config recorded.</p>")
            continue
        overrides = f"<p>overrides:</p><pre>{esc_text(s['overrides'])}</pre>" if s["overrides"] else ""
        parts.append(f"<details><summary>{esc(s['dir'])}</summary>{overrides}<pre>{esc_text(s['config'])}</pre></details>")
    return "".join(parts)


#: ``(heading, section id, builder)``: the ids are stable, for links and tests.
SECTIONS = (("Overview", "overview", _overview), ("SFT quality", "sft", _sft),
            ("Candidates and labels", "labels", _labels), ("Reward model", "reward", _reward),
            ("PPO training", "ppo", _ppo), ("Safety per stage", "safety", _safety),
            ("XSTest: over-refusal and refusal", "xstest", xstest_html), ("Gates", "gates", _gates),
            ("Samples: SFT vs PPO", "samples", _samples), ("Optimizers compared", "comparison", comparison_html),
            ("Resolved configs", "config", _config))


def _drawn(builder: Any, report: dict) -> str:
    """A section's HTML; a section the run's files cannot feed (an older or hand-edited file) says so
    instead of costing the reviewer the whole page."""
    try:
        return builder(report)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        log.warning("report section %s could not be drawn: %r", builder.__name__, err)
        return f'<p class="warn section-error">This section could not be drawn from the run\'s files: {esc(repr(err))}</p>'


def render_run_report(report: dict) -> str:
    """The HTML page of a report built by :func:`build_run_report` (a pure function of that dict)."""
    return render_report(report["title"],
                         [(heading, _drawn(builder, report), sid) for heading, sid, builder in SECTIONS])


def write_run_report(run_dir: str | Path) -> Path:
    """Build the report of ``run_dir`` and write ``report.json`` and ``report.html`` there (each atomically);
    returns the HTML path."""
    run_dir = Path(run_dir)
    report = build_run_report(run_dir)
    page = render_run_report(report)
    write_json_atomic(run_dir / "report.json", report)
    write_text_atomic(run_dir / "report.html", page)
    return run_dir / "report.html"


class RunReports:
    """The labeling app's Reports tab's source (:class:`labeling_ui.tabs.reports.RunReports`): the runs
    under a folder (:func:`~alignment.reports.run_data.list_runs`), their headline figures, and their
    pages (the run's own ``report.html`` while it is up to date, else drawn now from its files)."""

    def runs(self, root: Path) -> list[Path]:
        return list_runs(root)

    def summary(self, run: Path) -> dict[str, Any]:
        report = build_run_report(run)
        h = report["headline"]
        return {"status": report["status"], "gold_win_rate": h["gold_win_rate"],
                "unsafe_rate_before": h["unsafe_rate_sft"], "unsafe_rate_after": h["unsafe_rate_ppo"],
                "rm_accuracy": h["rm_eval_accuracy"], "final_kl": h["final_kl"]}

    def page(self, run: Path) -> tuple[str, bool]:
        if report_is_current(run):
            return (run / "report.html").read_text(encoding="utf-8"), True
        return render_run_report(build_run_report(run)), False


def main(argv: list[str] | None = None) -> int:
    """``align-report RUN_DIR``: write the run's report; exit 2 with one line when it is not a run."""
    parser = argparse.ArgumentParser(prog="align-report", description="Write RUN_DIR/report.html and report.json, "
                                     "the whole-run alignment eval report, from the stages' outputs.")
    parser.add_argument("run_dir", help="a run directory (run.dir of align-pipeline or of the stages)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        path = write_run_report(args.run_dir)
    except UserError as err:
        print(f"align-report: error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
