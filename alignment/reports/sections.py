"""Report sections of the stages: the safety evaluation, the gates, a training-loss curve, and the
reward and PPO stages' own pages."""

from __future__ import annotations

from alignment.reports.html import figure_html, kv_table, rate_text, table_html
from alignment.reports.plots import (
    HELDOUT_REWARDS,
    calibration_figure,
    heldout_rewards_figure,
    loss_figure,
    ppo_curves_figure,
    reward_histogram_figure,
)
from alignment.reports.xstest import xstest_table

SKIP = ("worst_examples", "unsafe_rate_by_category", "unsafe_rate_by_prompt_category", "xstest")


def _value(v: object) -> object:
    return rate_text(v) if isinstance(v, dict) and "rate" in v else v


def gates_section(gates: dict) -> tuple[str, str]:
    rows = [(v["gate"], v["measured"], v["threshold"], "passed" if v["passed"] else "FAILED") for v in gates["verdicts"]]
    verdict = '<p class="pass">all gates passed</p>' if gates["passed"] else '<p class="fail">a gate FAILED</p>'
    return "Gates", verdict + table_html(["gate", "measured", "threshold", "verdict"], rows)


def safety_sections(report: dict) -> list[tuple[str, str]]:
    """The policy safety figures (rates with confidence intervals), per category, worst examples, gates."""
    sections = []
    policy = report.get("policy")
    if policy:
        flat = {k: _value(v) for k, v in policy.items() if k not in SKIP}
        sections.append((f"Safety ({report.get('filter', '')} filter)", kv_table(flat)))
        if "unsafe_rate_by_category" in policy:
            sections.append(("Unsafe rate by category", table_html(["category", "rate"],
                                                                   policy["unsafe_rate_by_category"].items())))
        if "xstest" in policy:
            sections.append(("XSTest by prompt type", xstest_table(policy["xstest"])))
        sections.append(("Worst examples", table_html(
            ["prompt", "response", "max score", "categories"],
            [(w["prompt"], w["response"], w["max_score"], ", ".join(w["categories"])) for w in policy.get("worst_examples", [])])))
    if "preferences" in report:
        sections.append(("Preferences", kv_table({k: _value(v) for k, v in report["preferences"].items()})))
    if "gates" in report:
        sections.append(gates_section(report["gates"]))
    return sections


def loss_section(curve: list, title: str) -> tuple[str, str]:
    return "Training loss", figure_html(loss_figure(curve, title), f"{title} curve")


def reward_sections(metrics: dict, safety: dict, loss_curve: list, eval_stats: dict) -> list[tuple[str, str]]:
    """The reward stage's page: summary, loss, reward histograms, calibration, safety, gates."""
    sections = [("Summary", kv_table({k: v for k, v in metrics.items() if k != "calibration"}))]
    if loss_curve:
        sections.append(loss_section(loss_curve, "Bradley-Terry loss"))
    sections.append(("Reward histograms", figure_html(reward_histogram_figure(eval_stats),
                                                      "reward histograms of chosen vs rejected")))
    cal = eval_stats["calibration"]
    if cal:
        sections.append(("Calibration", figure_html(calibration_figure(cal), "calibration plot")
                         + table_html(["gap from", "gap to", "pairs", "accuracy"],
                                      [(b["gap_lo"], b["gap_hi"], b["n"], b["accuracy"]) for b in cal])))
    sections.append(("Safety", kv_table({k: v for k, v in safety.items() if k != "gates"})))
    sections.append(gates_section(safety["gates"]))
    return sections


def missing_section(missing: list[dict]) -> tuple[str, str]:
    """What the evaluation could not measure, and why: said plainly instead of an empty plot."""
    return "Figures not available", table_html(["figure", "why"], [(m["figure"], m["why"]) for m in missing])


def overoptimisation_text(evaluation: dict) -> str:
    """An evaluation's over-optimisation verdict with the test's figures: each score's change since the
    reference's best evaluation so far, in its own standard deviations, with its 95% interval."""
    test = evaluation.get("overoptimisation_test")
    verdict = "yes" if evaluation.get("overoptimisation") else "no"
    if not test:
        return verdict
    proxy, reference = test["proxy"], test["reference"]
    return (f"{verdict}: since evaluation {test['since_evaluation']}, proxy {proxy['change_sd']:+.2f} sd "
            f"[{proxy['ci95'][0]:+.2f}, {proxy['ci95'][1]:+.2f}], reference {reference['change_sd']:+.2f} sd "
            f"[{reference['ci95'][0]:+.2f}, {reference['ci95'][1]:+.2f}]")


def heldout_table(evals: list[dict], unsafe_header: str | None, reward_suffix: str = "", **table_options) -> str:
    """Each evaluation's held-out rewards (those every evaluation measured), the demo world's red-team
    unsafe rate under ``unsafe_header`` (``None``: no such column) and the over-optimisation verdict."""
    names = [(key, label) for key, label, _ in HELDOUT_REWARDS if all(key in e["eval"] for e in evals)]
    headers = ["update", *(f"{label}{reward_suffix}" for _, label in names), *((unsafe_header,) if unsafe_header else ()),
               "over-optimisation"]
    rows = [(e["update"], *(e["eval"][key] for key, _ in names),
             *(((e.get("redteam") or {}).get("harmful_unsafe_rate"),) if unsafe_header else ()), overoptimisation_text(e))
            for e in evals]
    return table_html(headers, rows, **table_options)


def heldout_section(evals: list[dict]) -> tuple[str, str]:
    """The held-out rewards at each evaluation: a plot and its table (gold and judge where measured)."""
    names = [label for key, label, _ in HELDOUT_REWARDS if all(key in e["eval"] for e in evals)]
    title = " vs ".join(label.split(" (")[0] for label in names) + " reward"
    gold_unsafe = all("harmful_unsafe_rate" in e.get("redteam", {}) for e in evals)
    return (title[0].upper() + title[1:], figure_html(heldout_rewards_figure(evals), f"{title} on held-out prompts")
            + heldout_table(evals, "red-team unsafe (gold)" if gold_unsafe else None))


def ppo_sections(metrics: dict, history: list[dict], evals: list[dict], rows: list[dict],
                 safety: dict) -> list[tuple[str, str]]:
    """The PPO stage's page: summary, what is missing, training curves, held-out rewards, samples, safety."""
    summary = {k: v for k, v in metrics.items() if k not in ("missing", "prompts")}
    sections = [("Summary", kv_table(summary))]
    if metrics.get("missing"):
        sections.append(missing_section(metrics["missing"]))
    if history:
        sections.append(("Training curves", figure_html(ppo_curves_figure(history), "PPO training curves")))
    if evals:
        sections.append(heldout_section(evals))
    score_columns = [c for c in ("gold", "judge", "proxy") if rows and f"{c}_sft" in rows[0]]
    sections.append(("Samples: SFT vs PPO", table_html(
        ["prompt", "SFT", "PPO", *(f"{c} SFT → PPO" for c in score_columns)],
        [(r["prompt"], r["sft"], r["ppo"], *(f"{r[f'{c}_sft']:.3f} → {r[f'{c}_ppo']:.3f}" for c in score_columns))
         for r in rows[:12]])))
    return sections + safety_sections(safety)
