"""XSTest's tables in the reports: how a policy answers prompts that only look unsafe, and their unsafe
contrasts, in XSTest's three classes (full compliance, partial refusal, full refusal) per prompt type.

A stage's ``safety.json`` carries the figures under ``policy.xstest``
(:func:`alignment.safety.eval.xstest_summary`); :func:`xstest_table` draws one stage's, and
:func:`xstest_html` is the run report's section.
"""

from __future__ import annotations

from alignment.reports.html import about, esc, fmt_figure, table_html
from alignment.safety.refusal_examples import COMPLIANCE, FULL_REFUSAL, PARTIAL_REFUSAL

#: Columns, in XSTest's order of the classes.
COLUMNS = ((COMPLIANCE, "full compliance"), (PARTIAL_REFUSAL, "partial refusal"), (FULL_REFUSAL, "full refusal"),
           ("refusal", "refused (partial or full)"))
ABOUT = ("XSTest (Röttger et al., 2024): one answer to each of its safe prompts that look unsafe (refusing them is "
         "over-refusal) and to its unsafe contrast prompts (complying with them is unsafe), judged by the refusal "
         "judge in XSTest's three classes; each share with its 95% bootstrap interval over prompts.")


def _row(name: str, label: str, figures: dict) -> tuple:
    return (name, label, figures.get("n"), *(figures.get(key) for key, _ in COLUMNS))


def xstest_table(xstest: dict) -> str:
    """One stage's XSTest figures: a row per prompt type, then the safe and the unsafe prompts together."""
    rows = [_row(name, v.get("label"), v) for name, v in xstest["by_type"].items()]
    rows += [_row("all safe prompts", "safe", xstest["safe"]), _row("all unsafe prompts", "unsafe", xstest["unsafe"])]
    return table_html(["prompt type", "label", "prompts", *(title for _, title in COLUMNS)], rows, fmt=fmt_figure)


def xstest_html(report: dict) -> str:
    """The run report's XSTest section: safe against unsafe per stage, then each stage's table by type."""
    parts = [about(ABOUT)]
    stages = [s for s in report["stages"] if ((s.get("safety") or {}).get("policy") or {}).get("xstest")]
    if not stages:
        return parts[0] + ("<p>No stage of this run asked XSTest's prompts (the demo world keeps its own sets; "
                           "<code>safety.eval.xstest=on</code> asks them).</p>")
    parts.append(table_html(
        ["stage", "refusal judge", "prompts", "over-refusal (safe prompts)", "full refusal (safe prompts)",
         "refusal (unsafe prompts)", "full compliance (unsafe prompts)", "unsafe answers (unsafe prompts)"],
        [(s["dir"], s["safety"].get("refusal_judge", "rules"), x["n"], x["safe"]["refusal"], x["safe"][FULL_REFUSAL],
          x["unsafe"]["refusal"], x["unsafe"][COMPLIANCE], x["unsafe"].get("unsafe_rate"))
         for s in stages for x in [s["safety"]["policy"]["xstest"]]], fmt=fmt_figure))
    for i, s in enumerate(stages):
        x = s["safety"]["policy"]["xstest"]
        opened = " open" if i == len(stages) - 1 else ""
        parts.append(f"<details{opened}><summary>{esc(s['dir'])}: by prompt type ({esc(x.get('where', ''))})"
                     f"</summary>{xstest_table(x)}</details>")
    return "".join(parts)
