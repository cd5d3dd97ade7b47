"""The run report's comparison of the policy optimizers (``align-pipeline optimizers=[ppo,dpo,grpo,rloo]``).

Every optimizer of a round starts from the same SFT policy, label set and reward model and ends with
the same evaluation (:mod:`alignment.stages.optimizer`), so their figures line up: per optimizer the
gold win rate against the SFT policy (demo world; without a gold reward, the proxy reward's rise is
what is left), gold and proxy reward, KL to the SFT policy on its own held-out answers, the safety
filter's unsafe / refusal / over-refusal rates, the gate, wall time, peak memory and the budget it was
given, then their answers to the same held-out prompts side by side.

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

from alignment.reports.html import Html, about, esc, fmt_figure, status_html, table_html

#: The optimizer stages, in the order the comparison lists them.
OPTIMIZERS = ("ppo", "dpo", "grpo", "rloo")
#: Held-out prompts per split shown side by side (``report.json`` keeps them all).
SAMPLES_PER_SPLIT = 6
_ROUND_DIR = re.compile(r"^round-(\d+)$")


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


def _round_prefixes(run_dir: Path) -> list[str]:
    rounds = sorted(int(m.group(1)) for d in run_dir.glob("round-*") if (m := _ROUND_DIR.match(d.name)))
    return ["", *(f"round-{r}/" for r in rounds)]


def _budget(name: str, metrics: dict, config: dict) -> str:
    """What the optimizer was given, in words: policy samples (or preference pairs for DPO), steps, seed."""
    section = config.get(name) or {}
    if name == "dpo":
        what = (f"{metrics.get('pairs_seen', '?')} preference pairs seen ({metrics.get('pairs', '?')} pairs, "
                f"{metrics.get('steps', '?')} steps); 0 policy samples")
    elif name == "ppo":
        what = f"{metrics.get('episodes', '?')} policy samples ({metrics.get('updates', '?')} updates)"
    else:
        what = (f"{metrics.get('policy_samples', '?')} policy samples ({metrics.get('steps', '?')} steps, "
                f"{section.get('num_generations', '?')} per prompt)")
    return f"{what}; seed {config.get('seed', '?')}"


def _optimizer_row(name: str, rel: str, folder: Path, entry: dict | None) -> dict:
    metrics = _json(folder / "metrics.json") or {}
    safety = _json(folder / "safety.json") or {}
    config = _config(folder)
    policy = safety.get("policy") or {}
    gates = safety.get("gates") or {}
    section = config.get(name) or {}
    status = (entry or {}).get("status") or ("passed" if gates.get("passed") else "failed" if gates else "not run")
    return {
        "name": name, "dir": rel, "status": status,
        "gold_win_rate": metrics.get("gold_win_rate"), "gold_win_rate_ties_half": metrics.get("gold_win_rate_ties_half"),
        "gold_reward_sft": metrics.get("gold_reward_sft"), "gold_reward": metrics.get(f"gold_reward_{name}"),
        "proxy_reward_sft": metrics.get("proxy_reward_sft"), "proxy_reward": metrics.get(f"proxy_reward_{name}"),
        "kl": metrics.get("kl_sft"),
        "unsafe_rate_filter": _rate(policy, "unsafe_rate"),
        "refusal_rate_harmful": _rate(policy, "refusal_rate_harmful"),
        "over_refusal_rate_benign": _rate(policy, "over_refusal_rate_benign"),
        "unsafe_rate_gold": metrics.get(f"unsafe_rate_{name}"),
        "gate_passed": gates.get("passed"),
        "wall_s": (entry or {}).get("wall_s"), "peak_rss_mb": (entry or {}).get("peak_rss_mb"),
        "policy_samples": metrics.get("episodes") if name == "ppo" else metrics.get("policy_samples"),
        "budget": _budget(name, metrics, config) if metrics else None,
        "seed": config.get("seed"),
        "generation": section.get("generation"), "eval_prompts": section.get("eval_prompts"),
        "samples": _jsonl(folder / "samples.jsonl"),
    }


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
    settings = {json.dumps([r["generation"], r["eval_prompts"], r["seed"]], sort_keys=True) for r in ran}
    samples = {r["policy_samples"] for r in ran if r["name"] != "dpo"}
    fairness = {
        "same_evaluation": len(settings) <= 1,
        "same_policy_samples": len(samples) <= 1,
        "generation": ran[0]["generation"] if ran else None,
        "eval_prompts": ran[0]["eval_prompts"] if ran else None,
    }
    best = max(ran, key=lambda r: (r["gold_win_rate"] or 0.0, r["gold_reward"]), default=None)
    return {"round_dirs": [rel for _, rel in chosen], "optimizers": [{k: v for k, v in r.items() if k != "samples"}
                                                                    for r in rows],
            "fairness": fairness, "best": best["name"] if best else None, "samples": _side_by_side(rows)}


# ------------------------------------------------------------------------------------------ HTML
def _arrow(start: object, end: object) -> str:
    return f"{fmt_figure(start)} → {fmt_figure(end)}"


def comparison_html(report: dict) -> str:
    """The comparison section of the run report, from ``report["comparison"]``."""
    data = report.get("comparison")
    intro = about(
        "Every optimizer started from the same SFT policy, labels and reward model and was evaluated alike: its "
        "answers and the SFT policy's to the same held-out prompts (same sampling settings and seed), scored on the "
        "gold reward (win rate: wins / (wins + losses) against the SFT answer to the same prompt) and the proxy "
        "(the reward model); KL to the SFT policy is measured on the policy's own held-out answers, the same way "
        "for every optimizer; the safety filter's rates come from each stage's safety evaluation. "
        "align-pipeline optimizers=[ppo,dpo,grpo,rloo] runs them all.")
    if not data:
        return intro + "<p><em>No policy optimizer has run in this run directory.</em></p>"
    rows = data["optimizers"]
    parts = [intro]
    if len(rows) == 1:
        parts.append(f"<p><em>Only {esc(rows[0]['name'])} ran: nothing to compare it with.</em></p>")
    parts.append(table_html(
        ["optimizer", "status", "gold win rate vs SFT", "gold reward SFT → policy", "proxy reward SFT → policy",
         "KL to SFT", "unsafe rate (filter)", "refusal rate (harmful)", "over-refusal rate (benign)", "wall s",
         "peak RSS MiB", "budget"],
        [(Html(f"<b>{esc(r['name'])}</b>" if r["name"] == data["best"] else esc(r["name"])), status_html(r["status"]),
          r["gold_win_rate"], _arrow(r["gold_reward_sft"], r["gold_reward"]),
          _arrow(r["proxy_reward_sft"], r["proxy_reward"]), r["kl"], r["unsafe_rate_filter"],
          r["refusal_rate_harmful"], r["over_refusal_rate_benign"], r["wall_s"], r["peak_rss_mb"], r["budget"])
         for r in rows], text_cols=(11,), fmt=fmt_figure))
    fair = data["fairness"]
    generation = fair["generation"] or {}
    parts.append("<p>" + esc(
        f"Evaluation: {fair['eval_prompts']} held-out prompts per split, sampled at temperature "
        f"{generation.get('temperature', '?')}, up to {generation.get('max_new_tokens', '?')} new tokens") + (
        ", the same for every optimizer." if fair["same_evaluation"] else "") + "</p>")
    if not fair["same_evaluation"]:
        parts.append('<p class="warn">The optimizers were not evaluated with the same prompts, sampling settings '
                     'and seed: their figures do not compare directly.</p>')
    if not fair["same_policy_samples"]:
        parts.append('<p class="warn">The sampling optimizers drew different numbers of policy samples: see each '
                     'one\'s budget.</p>')
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
