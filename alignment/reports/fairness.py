"""Whether the optimizers of a comparison got the same reward and the same budgets, and which of their
differences stand beyond their intervals.

:func:`fairness` reads what each optimizer recorded of itself in ``metrics.json`` (its ``reward_terms``,
as its reward applied them, and its ``budget``, counted where it was spent), never its config, and never
needs a gold reward: a run on the hh world or the user's data is checked exactly as a demo run.

* **Reward terms** (``ppo``, ``grpo``, ``rloo``, the optimizers that score their own samples): the reward
  model and its normalisation, the missing-EOS penalty, the safety penalty and its filter, the KL
  coefficient and whether it was adapted. DPO has no online reward; the report says so.
* **Budgets**: the policy samples drawn and the optimizer steps taken (online optimizers; DPO draws none
  and steps over preference pairs), the training prompt set, and for every optimizer the held-out
  evaluation (prompts per split, which split, sampling settings) and the seed.

:func:`ranking` ranks two optimizers on a figure only where their 95% intervals do not overlap, and
calls them level otherwise.
"""

from __future__ import annotations

import json

from alignment.stats import separated

#: The optimizers that sample and score their own answers: one reward for all of them.
ONLINE = ("ppo", "grpo", "rloo")
#: What every online optimizer must have spent alike, and what every optimizer was evaluated on alike.
ONLINE_BUDGET = ("policy_samples", "optimizer_steps", "train_prompt_set")
EVALUATION = ("eval_prompts", "eval_split", "generation", "seed")
#: The figures :func:`ranking` ranks on, with whether higher is better.
RANKED = (("gold_win_rate", True), ("gold_reward", True), ("judge_win_rate", True), ("rm_win_rate", True),
          ("unsafe_rate_filter", False))


def _key(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _differs(what: str, values: dict[str, object]) -> dict | None:
    """A difference record when ``values`` (by optimizer) are not all the same, else ``None``."""
    if len({_key(v) for v in values.values()}) <= 1:
        return None
    return {"what": what, "values": values}


def fairness(rows: list[dict]) -> dict:
    """Every reward term and budget of every optimizer that ran, compared; ``fair`` is true only when
    they all match. ``differences`` says plainly what differs, optimizer by optimizer."""
    ran = [r for r in rows if r.get("budget") is not None]
    online = [r for r in ran if r["name"] in ONLINE]
    differences: list[dict] = []
    unrecorded = [r["name"] for r in online if not r.get("reward_terms")]
    if unrecorded:
        differences.append({"what": "reward terms not recorded", "values": {n: None for n in unrecorded}})
    recorded = [r for r in online if r.get("reward_terms")]
    for term in sorted({t for r in recorded for t in r["reward_terms"]}):
        differences.append(_differs(f"reward term {term}", {r["name"]: r["reward_terms"].get(term) for r in recorded}))
    for item in ONLINE_BUDGET:
        differences.append(_differs(f"budget {item}", {r["name"]: r["budget"].get(item) for r in online}))
    for item in EVALUATION:
        differences.append(_differs(f"evaluation {item}", {r["name"]: r["budget"].get(item) for r in ran}))
    differences = [d for d in differences if d is not None]
    evaluation = [d for d in differences if d["what"].startswith("evaluation")]
    first = ran[0]["budget"] if ran else {}
    return {
        "fair": bool(ran) and not differences,
        "differences": differences,
        "reward_terms": recorded[0]["reward_terms"] if recorded and not any(
            d["what"].startswith("reward term") for d in differences) else None,
        "online": [r["name"] for r in online],
        "no_online_reward": [r["name"] for r in ran if r["name"] not in ONLINE],
        "same_evaluation": not evaluation,
        "same_policy_samples": not any(d["what"] == "budget policy_samples" for d in differences),
        "generation": first.get("generation"), "eval_prompts": first.get("eval_prompts"),
        "eval_split": first.get("eval_split"), "seed": first.get("seed"),
    }


def differences_text(differences: list[dict]) -> list[str]:
    """Each difference in one line: what, then each optimizer's value."""
    return [f"{d['what']}: " + ", ".join(f"{name} {_key(v)}" for name, v in d["values"].items()) for d in differences]


def ranking(rows: list[dict]) -> dict:
    """For each figure of :data:`RANKED` that two or more optimizers have with an interval: every pair,
    ranked where their intervals separate (``stand``) and ``level`` where they overlap."""
    out: dict = {"stand": [], "level": [], "pairs": [], "figures": []}
    for figure, higher in RANKED:
        have = [r for r in rows if r.get(figure) is not None and r.get(f"{figure}_ci95")]
        if len(have) > 1:
            out["figures"].append(figure)
        for i, a in enumerate(have):
            for b in have[i + 1:]:
                side = separated(a[f"{figure}_ci95"], b[f"{figure}_ci95"]) * (1 if higher else -1)
                if side == 0:
                    verdict = f"{a['name']} and {b['name']} level on {figure}"
                    out["level"].append(verdict)
                else:
                    better, worse = (a, b) if side > 0 else (b, a)
                    verdict = f"{better['name']} ahead of {worse['name']} on {figure}"
                    out["stand"].append(verdict)
                out["pairs"].append({"figure": figure, "a": a["name"], "b": b["name"], "verdict": verdict})
    return out
