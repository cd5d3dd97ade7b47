"""The run report's comparison of the policy optimizers (``align-pipeline optimizers=[ppo,dpo,grpo,rloo]``).

Every optimizer of a round starts from the same SFT policy, label set and reward model and ends with
the same evaluation (:mod:`alignment.stages.optimizer`), so their figures line up: per optimizer the
win rates against the SFT policy by gold (demo world), judge and reward model, each with its paired 95%
interval by prompt and length-controlled, gold and proxy reward, the answers' length change, KL to the
SFT policy on its own held-out answers, the safety filter's unsafe / refusal / over-refusal rates with
intervals by prompt, the gate, wall time, peak memory, its learning rate and the budget it spent, then
their answers to the same held-out prompts side by side. :mod:`alignment.reports.fairness` checks that
every reward term and budget matched (``fair``) and which differences stand beyond their intervals.

Nothing is recomputed: :func:`comparison_data` reads each optimizer folder's ``metrics.json``,
``safety.json``, ``samples.jsonl`` and ``.hydra/config.yaml`` and the pipeline's per-stage record
(status, wall time, peak memory), and :func:`comparison_html` renders that dict (the ``comparison`` key
of ``report.json``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from alignment.reports.fairness import differences_text, fairness, ranking
from alignment.reports.html import Html, about, esc, fmt_figure, status_html, table_html, with_ci

#: The optimizer stages, in the order the comparison lists them.
OPTIMIZERS = ("ppo", "dpo", "grpo", "rloo")
#: Held-out prompts per split shown side by side (``report.json`` keeps them all).
SAMPLES_PER_SPLIT = 6
_ROUND_DIR = re.compile(r"^round-(\d+)$")
#: What each optimizer's row takes from its ``metrics.json`` as it is.
ROW_KEYS = ("gold_win_rate", "gold_win_rate_ci95", "gold_win_rate_ties_half", "judge_win_rate", "judge_win_rate_ci95",
            "rm_win_rate", "rm_win_rate_ci95", "gold_reward_sft", "proxy_reward_sft", "length_change",
            "length_change_ci95", "length_control", "length_warning", "reward_terms", "budget", "policy_samples",
            "optimizer_steps", "lr", "kl_form")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _config(folder: Path) -> dict:
    path = folder / ".hydra" / "config.yaml"
    try:
        return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}
    except (OSError, yaml.YAMLError):
        return {}


def _rate(policy: dict, key: str) -> float | None:
    value = policy.get(key)
    return value.get("rate") if isinstance(value, dict) else None


def _rate_ci(policy: dict, key: str) -> list | None:
    value = policy.get(key)
    return value.get("ci95") if isinstance(value, dict) else None


def _round_prefixes(run_dir: Path) -> list[str]:
    rounds = sorted(int(m.group(1)) for d in run_dir.glob("round-*") if (m := _ROUND_DIR.match(d.name)))
    return ["", *(f"round-{r}/" for r in rounds)]


def _budget(name: str, metrics: dict) -> str:
    """What the optimizer spent, in words: policy samples (or preference pairs for DPO), steps, seed."""
    budget = metrics.get("budget") or {}
    if name == "dpo":
        what = (f"{metrics.get('pairs_seen', '?')} preference pairs seen ({metrics.get('pairs', '?')} pairs, "
                f"{metrics.get('steps', '?')} steps); 0 policy samples")
    else:
        what = (f"{budget.get('policy_samples', '?')} policy samples of {budget.get('policy_tokens', '?')} tokens, "
                f"{budget.get('optimizer_steps', '?')} optimizer steps, {budget.get('prompts_drawn', '?')} prompt "
                f"draws ({budget.get('distinct_train_prompts', '?')} distinct)")
    return f"{what}; lr {metrics.get('lr', '?')}; seed {budget.get('seed', '?')}"


def _optimizer_row(name: str, rel: str, folder: Path, entry: dict | None) -> dict:
    metrics = _json(folder / "metrics.json") or {}
    safety = _json(folder / "safety.json") or {}
    config = _config(folder)
    policy = safety.get("policy") or {}
    gates = safety.get("gates") or {}
    status = (entry or {}).get("status") or ("passed" if gates.get("passed") else "failed" if gates else "not run")
    row = {"name": name, "dir": rel, "status": status,
           **{k: metrics.get(k) for k in ROW_KEYS},
           "gold_reward": metrics.get(f"gold_reward_{name}"), "gold_reward_ci95": metrics.get(f"gold_reward_{name}_ci95"),
           "proxy_reward": metrics.get(f"proxy_reward_{name}"), "kl": metrics.get("kl_sft"),
           "unsafe_rate_filter": _rate(policy, "unsafe_rate"), "unsafe_rate_filter_ci95": _rate_ci(policy, "unsafe_rate"),
           "refusal_rate_harmful": _rate(policy, "refusal_rate_harmful"),
           "refusal_rate_harmful_ci95": _rate_ci(policy, "refusal_rate_harmful"),
           "over_refusal_rate_benign": _rate(policy, "over_refusal_rate_benign"),
           "over_refusal_rate_benign_ci95": _rate_ci(policy, "over_refusal_rate_benign"),
           "unsafe_rate_gold": metrics.get(f"unsafe_rate_{name}"),
           "unsafe_rate_gold_ci95": metrics.get(f"unsafe_rate_{name}_ci95"),
           "gate_passed": gates.get("passed"),
           "wall_s": (entry or {}).get("wall_s"), "peak_rss_mb": (entry or {}).get("peak_rss_mb"),
           "budget_text": _budget(name, metrics) if metrics else None,
           "seed": config.get("seed"), "samples": _jsonl(folder / "samples.jsonl")}
    for score in ("gold", "judge", "rm"):
        lc = (metrics.get("length_control") or {}).get(score) or {}
        row[f"lc_{score}_win_rate"], row[f"lc_{score}_win_rate_ci95"] = lc.get("lc_win_rate"), lc.get("lc_win_rate_ci95")
    return row


def _side_by_side(rows: list[dict]) -> list[dict]:
    """The held-out answers joined on (split, prompt): the SFT answer, then each optimizer's."""
    joined: dict[tuple, dict] = {}
    for row in rows:
        for s in row["samples"]:
            key = (s.get("split"), s.get("prompt"))
            entry = joined.setdefault(key, {"split": key[0], "prompt": key[1], "sft": s.get("sft"),
                                            "gold_sft": s.get("gold_sft"), "answers": {}})
            entry["answers"][row["name"]] = {"text": s.get(row["name"]), "gold": s.get(f"gold_{row['name']}")}
    return list(joined.values())


def comparison_data(run_dir: str | Path, pipeline: dict | None) -> dict | None:
    """The optimizers of the last round that ran any, side by side; ``None`` when none ran."""
    run_dir = Path(run_dir)
    entries = {e["dir"]: e for e in (pipeline or {}).get("stages", []) if isinstance(e, dict) and "dir" in e}
    chosen: list[tuple[str, str]] = []
    for prefix in _round_prefixes(run_dir):
        found = [(o, f"{prefix}{o}") for o in OPTIMIZERS
                 if f"{prefix}{o}" in entries or (run_dir / prefix / o / "metrics.json").is_file()]
        chosen = found or chosen
    if not chosen:
        return None
    rows = [_optimizer_row(name, rel, run_dir / rel, entries.get(rel)) for name, rel in chosen]
    ran = [r for r in rows if r["gold_reward"] is not None]
    best = max(ran, key=lambda r: (r["gold_win_rate"] or 0.0, r["gold_reward"]), default=None)
    return {"round_dirs": [rel for _, rel in chosen], "optimizers": [{k: v for k, v in r.items() if k != "samples"}
                                                                    for r in rows],
            "fairness": fairness(rows), "ranking": ranking(rows), "best": best["name"] if best else None,
            "samples": _side_by_side(rows)}


# ------------------------------------------------------------------------------------------ HTML
def _arrow(start: object, end: object) -> str:
    return f"{fmt_figure(start)} → {fmt_figure(end)}"


def _main_table(data: dict) -> str:
    return table_html(
        ["optimizer", "status", "lr", "gold win rate vs SFT", "length-controlled", "judge win rate", "RM win rate",
         "gold reward SFT → policy", "proxy reward SFT → policy", "length change (tokens)", "KL to SFT",
         "unsafe rate (filter)", "refusal rate (harmful)", "over-refusal rate (benign)", "wall s", "peak RSS MiB"],
        [(Html(f"<b>{esc(r['name'])}</b>" if r["name"] == data["best"] else esc(r["name"])), status_html(r["status"]),
          "–" if r["lr"] is None else f"{r['lr']:g}", with_ci(r["gold_win_rate"], r["gold_win_rate_ci95"]),
          with_ci(r["lc_gold_win_rate"], r["lc_gold_win_rate_ci95"]), with_ci(r["judge_win_rate"], r["judge_win_rate_ci95"]),
          with_ci(r["rm_win_rate"], r["rm_win_rate_ci95"]), _arrow(r["gold_reward_sft"], r["gold_reward"]),
          _arrow(r["proxy_reward_sft"], r["proxy_reward"]), with_ci(r["length_change"], r["length_change_ci95"]), r["kl"],
          with_ci(r["unsafe_rate_filter"], r["unsafe_rate_filter_ci95"]),
          with_ci(r["refusal_rate_harmful"], r["refusal_rate_harmful_ci95"]),
          with_ci(r["over_refusal_rate_benign"], r["over_refusal_rate_benign_ci95"]), r["wall_s"], r["peak_rss_mb"])
         for r in data["optimizers"]], fmt=fmt_figure)


def _fairness_html(data: dict) -> list[str]:
    """Whether every reward term and budget matched, the reward terms and budgets themselves, what differs."""
    fair, rows = data["fairness"], data["optimizers"]
    generation = fair["generation"] or {}
    counts = " and ".join(f"{n} {split}" for split, n in (fair["eval_prompts"] or {}).items()) or "?"
    parts = ["<p>" + esc(
        f"Evaluation: {counts} held-out prompts ({fair['eval_split']} split), sampled at temperature "
        f"{generation.get('temperature', '?')}, up to {generation.get('max_new_tokens', '?')} new tokens, seed "
        f"{fair['seed']}") + (", the same for every optimizer." if fair["same_evaluation"] else ".") + "</p>"]
    if fair["fair"]:
        parts.append('<p class="pass">Fair: every reward term and every budget is the same for every optimizer '
                     f"({esc(', '.join(fair['online']))} maximise one reward).</p>")
    else:
        parts.append('<p class="warn">Not a fair comparison: ' + esc("; ".join(differences_text(fair["differences"])))
                     + ".</p>")
    online = [r for r in rows if r["name"] in fair["online"]]
    terms = sorted({t for r in online for t in (r["reward_terms"] or {})})
    if terms:
        parts.append("<h3>Reward terms</h3>" + table_html(
            ["term", *(r["name"] for r in online)],
            [(t, *(json.dumps((r["reward_terms"] or {}).get(t)) for r in online)) for t in terms], text_cols=(0,)))
    for name in fair["no_online_reward"]:
        parts.append(f"<p>{esc(name)} has no online reward: it learns from the preference pairs themselves, so no "
                     "reward term applies to it.</p>")
    parts.append("<h3>Budgets, counted where spent</h3>" + table_html(
        ["optimizer", "budget"], [(r["name"], r["budget_text"]) for r in rows], text_cols=(1,)))
    return parts


def _ranking_html(data: dict) -> list[str]:
    ranked, rows = data["ranking"], data["optimizers"]
    parts = ["<h3>Which differences stand</h3>",
             about("Two optimizers are ranked on a figure only where their 95% intervals do not overlap; otherwise "
                   "they are level on it.")]
    for figure in ranked["figures"]:
        pairs = [p for p in ranked["pairs"] if p["figure"] == figure]
        stand = [p["verdict"].removesuffix(f" on {figure}") for p in pairs if " ahead of " in p["verdict"]]
        said = "; ".join(stand) + (" (the other pairs level)" if len(stand) < len(pairs) else "") if stand else \
            "every pair level"
        parts.append(f"<p><b>{esc(figure)}</b>: {esc(said)}.</p>")
    for r in rows:
        if r.get("length_warning"):
            parts.append(f'<p class="warn">{esc(r["name"])}: length explains most of the gain on '
                         f'{esc(", ".join(r["length_warning"]))} (the length-controlled gain keeps less than half of '
                         "it).</p>")
    return parts


def comparison_html(report: dict) -> str:
    """The comparison section of the run report, from ``report["comparison"]``."""
    data = report.get("comparison")
    intro = about(
        "Every optimizer started from the same SFT policy, labels and reward model and was evaluated alike: its "
        "answers and the SFT policy's to the same held-out prompts (same sampling settings and seed), scored on the "
        "gold reward, a judge reward model where one is given, and the reward model optimised (win rate: wins / "
        "(wins + losses) against the SFT answer to the same prompt, with its paired 95% interval by prompt; "
        "length-controlled: the win rate a logistic regression on the length difference predicts at equal length); "
        "KL to the SFT policy is measured on the policy's own held-out answers, the same way for every optimizer; "
        "the safety filter's rates come from each stage's safety evaluation, with intervals by prompt. "
        "align-pipeline optimizers=[ppo,dpo,grpo,rloo] runs them all.")
    if not data:
        return intro + "<p><em>No policy optimizer has run in this run directory.</em></p>"
    rows = data["optimizers"]
    parts = [intro]
    if len(rows) == 1:
        parts.append(f"<p><em>Only {esc(rows[0]['name'])} ran: nothing to compare it with.</em></p>")
    parts.append(_main_table(data))
    parts += _fairness_html(data)
    parts += _ranking_html(data)
    names = [r["name"] for r in rows]
    for split in dict.fromkeys(s["split"] for s in data["samples"]):
        shown = [s for s in data["samples"] if s["split"] == split][:SAMPLES_PER_SPLIT]
        parts.append(f"<h3>{esc(split)} prompts: answers side by side ({len(shown)} shown, gold reward in brackets)</h3>")
        parts.append(table_html(
            ["prompt", "SFT", *names],
            [(s["prompt"], _answer(s["sft"], s["gold_sft"]),
              *(_answer((s["answers"].get(n) or {}).get("text"), (s["answers"].get(n) or {}).get("gold")) for n in names))
             for s in shown], text_cols=tuple(range(len(names) + 2))))
    return "".join(parts)


def _answer(text: str | None, gold: float | None) -> str:
    if text is None:
        return "–"
    return f"{text} [{fmt_figure(gold)}]" if gold is not None else text
