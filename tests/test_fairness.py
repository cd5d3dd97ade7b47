"""The comparison's fairness check and ranking, on optimizer folders written by hand: a run where one
optimizer got another reward term or budget is reported unfair, with a gold reward and without one."""

import json
from pathlib import Path

import pytest

from alignment.reports.comparison import comparison_data, comparison_html
from alignment.reports.fairness import fairness, ranking

TERMS = {"reward_model": "/r/reward/model", "normalisation": {"mean": 0.1, "std": 0.5, "clip": 5.0},
         "missing_eos_penalty": 1.0, "safety_penalty": 1.0, "safety_backend": "fast", "kl_coef": 0.05,
         "kl_control": "fixed"}
EVALUATION = {"eval_prompts": {"eval": 64, "redteam": 64}, "eval_split": "test", "seed": 0,
              "generation": {"max_new_tokens": 48, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "batch_size": 64}}
BUDGET = {"policy_samples": 1536, "policy_tokens": 20000, "optimizer_steps": 384, "lr": 1e-4,
          "train_prompt_set": "demo world train split (570 prompts)", **EVALUATION}


def write_optimizer(run_dir: Path, name: str, gold: bool, terms: dict | None = None, budget: dict | None = None,
                    win: tuple[float, list[float]] = (0.8, [0.7, 0.9])) -> None:
    """An optimizer folder as the stage leaves it: ``metrics.json`` and ``safety.json``."""
    folder = run_dir / name
    folder.mkdir(parents=True)
    online = name != "dpo"
    metrics = {"stage": name, "lr": 1e-4, "kl_sft": 1.0, "rm_win_rate": 0.7, "rm_win_rate_ci95": [0.6, 0.8],
               "reward_terms": {**TERMS, **(terms or {})} if online else None,
               "budget": {**BUDGET, **(budget or {})} if online else {"policy_samples": 0, "optimizer_steps": 48,
                                                                        "preference_pairs": 200, **EVALUATION},
               "policy_samples": BUDGET["policy_samples"] if online else 0, f"proxy_reward_{name}": 0.5,
               "proxy_reward_sft": 0.0}
    if gold:
        metrics.update({"gold_win_rate": win[0], "gold_win_rate_ci95": win[1], "gold_reward_sft": 0.3,
                        f"gold_reward_{name}": 0.3 + win[0] / 2, f"gold_reward_{name}_ci95": [0.5, 0.8]})
    (folder / "metrics.json").write_text(json.dumps(metrics))
    rate = {"rate": 0.01, "ci95": [0.0, 0.03]}
    (folder / "safety.json").write_text(json.dumps({"policy": {"unsafe_rate": rate, "refusal_rate_harmful": rate,
                                                               "over_refusal_rate_benign": rate},
                                                    "gates": {"passed": True}}))


def comparison(tmp_path: Path, gold: bool, **changed: dict) -> dict:
    """The comparison of four optimizers; ``changed[name]`` is ``{"terms": ..., "budget": ...}`` for one."""
    for name in ("ppo", "dpo", "grpo", "rloo"):
        write_optimizer(tmp_path, name, gold, **changed.get(name, {}))
    return comparison_data(tmp_path, None)


@pytest.mark.parametrize("gold", [True, False], ids=["with gold", "without gold"])
def test_one_reward_and_one_budget_is_fair(tmp_path, gold):
    data = comparison(tmp_path, gold)
    fair = data["fairness"]
    assert fair["fair"] and fair["differences"] == [] and fair["reward_terms"] == TERMS
    assert fair["online"] == ["ppo", "grpo", "rloo"] and fair["no_online_reward"] == ["dpo"]
    html = comparison_html({"comparison": data})
    assert "Fair: every reward term and every budget is the same" in html
    assert "dpo has no online reward" in html


@pytest.mark.parametrize("gold", [True, False], ids=["with gold", "without gold"])
@pytest.mark.parametrize("changed, what", [
    ({"grpo": {"terms": {"safety_penalty": 0.0, "safety_backend": None}}}, "reward term safety_penalty"),
    ({"ppo": {"terms": {"kl_control": "adaptive towards 6 nats (horizon 10000)"}}}, "reward term kl_control"),
    ({"rloo": {"terms": {"normalisation": {"mean": 0.1, "std": 0.5, "clip": 3.0}}}}, "reward term normalisation"),
    ({"ppo": {"budget": {"optimizer_steps": 1536}}}, "budget optimizer_steps"),
    ({"rloo": {"budget": {"policy_samples": 768}}}, "budget policy_samples"),
    ({"grpo": {"budget": {"seed": 1}}}, "evaluation seed"),
])
def test_another_reward_term_or_budget_is_unfair(tmp_path, gold, changed, what):
    data = comparison(tmp_path, gold, **changed)
    fair = data["fairness"]
    assert not fair["fair"]
    assert what in [d["what"] for d in fair["differences"]]
    name = next(iter(changed))
    difference = next(d for d in fair["differences"] if d["what"] == what)
    others = {n: v for n, v in difference["values"].items() if n != name}
    assert difference["values"][name] not in others.values() and len(set(map(json.dumps, others.values()))) == 1
    assert "Not a fair comparison" in comparison_html({"comparison": data})


def test_a_missing_record_is_not_fair(tmp_path):
    data = comparison(tmp_path, True)
    rows = [{**r, "reward_terms": None} if r["name"] == "ppo" else r for r in data["optimizers"]]
    assert not fairness(rows)["fair"]
    assert fairness(rows)["differences"][0]["what"] == "reward terms not recorded"


def test_two_optimizers_rank_only_where_their_intervals_separate(tmp_path):
    for name, win in (("ppo", (0.9, [0.85, 0.95])), ("dpo", (0.6, [0.5, 0.7])), ("grpo", (0.8, [0.72, 0.88])),
                      ("rloo", (0.85, [0.78, 0.9]))):
        write_optimizer(tmp_path, name, True, win=win)
    ranked = ranking(comparison_data(tmp_path, None)["optimizers"])
    on_gold = {p["verdict"] for p in ranked["pairs"] if p["figure"] == "gold_win_rate"}
    assert on_gold == {"ppo ahead of dpo on gold_win_rate", "ppo and grpo level on gold_win_rate",
                       "ppo and rloo level on gold_win_rate", "grpo ahead of dpo on gold_win_rate",
                       "rloo ahead of dpo on gold_win_rate", "grpo and rloo level on gold_win_rate"}
    assert "ppo ahead of dpo on gold_win_rate" in ranked["stand"]
