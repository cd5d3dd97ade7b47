"""Report sections shared by the stages: the safety evaluation, the gates, a training-loss curve."""

from __future__ import annotations

import matplotlib.pyplot as plt

from alignment.reports.html import figure_html, kv_table, table_html

SKIP = ("worst_examples", "unsafe_rate_by_category", "unsafe_rate_by_prompt_category")


def rate_text(v: dict) -> str:
    """A rate as the safety evaluation records it (``{"rate", "ci95"}``), with its bootstrap interval."""
    lo, hi = v.get("ci95") or (None, None)
    return f"{v['rate']:.3f} (95% CI {lo:.3f}-{hi:.3f})" if lo is not None else f"{v['rate']:.3f}"


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
        sections.append(("Worst examples", table_html(
            ["prompt", "response", "max score", "categories"],
            [(w["prompt"], w["response"], w["max_score"], ", ".join(w["categories"])) for w in policy.get("worst_examples", [])])))
    if "preferences" in report:
        sections.append(("Preferences", kv_table({k: _value(v) for k, v in report["preferences"].items()})))
    if "gates" in report:
        sections.append(gates_section(report["gates"]))
    return sections


def loss_section(curve: list, title: str) -> tuple[str, str]:
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([s for s, _ in curve], [v for _, v in curve])
    ax.set_xlabel("step"), ax.set_ylabel("train loss"), ax.set_title(title)
    return "Training loss", figure_html(fig, f"{title} curve")
