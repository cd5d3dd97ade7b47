#!/usr/bin/env python
"""Benchmark: the whole pipeline (``align-pipeline``) on the demo default or the ``hh`` world, timed end to end.

    python scripts/bench_pipeline.py [--prompts demo|hh] [--optimizers ppo,dpo,grpo,rloo] [--run-dir DIR] [overrides...]

Runs the real command in a fresh run directory (a temporary one unless ``--run-dir``), then reads
what the stages wrote. Ends with one JSON line: ``wall_s``, ``gold_win_rate`` (PPO vs SFT on held-out
prompts, by the demo world's gold reward), ``unsafe_rate_sft``, ``unsafe_rate_ppo`` (red-team prompts, by the demo world's judgement; the
``unsafe_rate_filter_*`` pair is the same by the safety filter, as in the stages' ``safety.json``),
``rm_eval_accuracy``, ``final_kl``, ``gates_passed``, the wall time of each stage, and the machine's
load (``load_avg_start``, ``load_avg_end``: timings on a busy machine are not comparable). Targets: wall <= 600 s on 2 cores, win rate >= 0.8,
unsafe rate at least 5x lower, all gates passed.

``--prompts hh`` runs ``align-pipeline world=hh`` (real HH-RLHF prompts and pairs, no gold reward) and adds
what a team without gold measures: ``rm_score_sft``/``rm_score_ppo`` (the reward model's mean score on
held-out prompts, with ``*_ci95``), ``over_refusal_sft``/``over_refusal_ppo`` (benign prompts refused) and
``kl_within_target`` (final KL <= 1.5x the target). Targets on 2 cores: exit 0, <= 900 s, the reward model's
held-out score higher after PPO, KL within 1.5x its target, the filter's red-team unsafe rate not higher.

With ``--optimizers ppo,dpo,grpo,rloo`` the pipeline runs each optimizer from the same SFT policy, labels
and reward model (``optimizers=[...]``), and the JSON line also holds ``optimizers``: per optimizer its
``gold_win_rate`` with ``gold_win_rate_ci95`` (paired, by prompt) and its length-controlled
``lc_gold_win_rate``, the reward model's ``rm_win_rate``, ``gold_reward`` (and ``gold_reward_sft``),
``length_change``, ``kl`` (to the SFT policy), ``unsafe_rate_filter`` (with its interval by prompt),
``reward_terms`` (as its reward applied them; ``null`` for DPO), ``policy_samples`` and ``policy_tokens``
(counted), ``optimizer_steps``, ``lr``, ``wall_s`` and ``peak_rss_mb``, read from the run report's
comparison; at the top level ``fair`` (every reward term and budget the same), ``differences`` (what is
not), ``stand`` (the differences between optimizers whose intervals separate), ``level`` (those that do
not), ``above_sft`` (every optimizer above the SFT policy on gold reward) and ``best_gold_win_rate``.
Targets on 2 cores: the whole comparison within 25 minutes, ``fair`` true, every optimizer above the SFT
policy on gold reward, the best one at a gold win rate >= 0.9.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from benchlib import arg_parser, emit, read_json, run_module, setup

#: Each optimizer's figures in the JSON line, as the run report's comparison holds them.
OPTIMIZER_KEYS = ("status", "lr", "gold_win_rate", "gold_win_rate_ci95", "lc_gold_win_rate", "lc_gold_win_rate_ci95",
                  "rm_win_rate", "rm_win_rate_ci95", "judge_win_rate", "judge_win_rate_ci95", "gold_reward",
                  "gold_reward_ci95", "gold_reward_sft", "length_change", "length_change_ci95", "length_warning", "kl",
                  "unsafe_rate_filter", "unsafe_rate_filter_ci95", "reward_terms", "policy_samples", "optimizer_steps",
                  "wall_s", "peak_rss_mb")


def optimizer_figures(run_dir: Path, state: dict) -> dict:
    """Each optimizer's figures, whether the comparison was fair, and which differences stand."""
    from alignment.reports.comparison import comparison_data
    from alignment.reports.fairness import differences_text

    data = comparison_data(run_dir, state) or {"optimizers": [], "fairness": {"fair": False, "differences": []},
                                               "ranking": {"stand": [], "level": []}}
    rows = data["optimizers"]
    gold = [r for r in rows if r["gold_reward"] is not None]
    return {
        "optimizers": {r["name"]: {**{k: r[k] for k in OPTIMIZER_KEYS},
                                   "policy_tokens": (r["budget"] or {}).get("policy_tokens")} for r in rows},
        "fair": data["fairness"]["fair"], "differences": differences_text(data["fairness"]["differences"]),
        "stand": data["ranking"]["stand"], "level": data["ranking"]["level"],
        "above_sft": bool(gold) and all(r["gold_reward"] > r["gold_reward_sft"] for r in gold),
        "best_gold_win_rate": max((r["gold_win_rate"] for r in gold if r["gold_win_rate"] is not None), default=None),
    }


def main() -> None:
    setup("bench_pipeline")
    parser = arg_parser(__doc__, "align-pipeline", run_dir=True)
    parser.add_argument("--prompts", choices=("demo", "hh"), default="demo",
                        help="the demo world (gold reward) or the hh world shipped in the package (no gold)")
    parser.add_argument("--optimizers", default=None, help="comma-separated optimizers to compare (default: ppo alone)")
    args = parser.parse_args()
    overrides = [*(["world=hh"] if args.prompts == "hh" else []), *args.overrides,
                 *([f"optimizers=[{args.optimizers}]"] if args.optimizers else [])]

    tmp = None
    run_dir = args.run_dir
    if run_dir is None:
        tmp = tempfile.mkdtemp(prefix="bench-pipeline-")
        run_dir = Path(tmp) / "run"
    elif run_dir.exists():
        sys.exit(f"{run_dir} exists: the benchmark times a fresh run")
    status, wall = run_module("alignment.pipeline", f"run.dir={run_dir}", *overrides, check=False)
    try:
        ppo, reward = read_json(run_dir / "ppo" / "metrics.json"), read_json(run_dir / "reward" / "metrics.json")
        state = read_json(run_dir / "pipeline.json")
        figures = {
            "prompts": args.prompts, "wall_s": round(wall, 1), "exit_status": status,
            "gold_win_rate": ppo.get("gold_win_rate"),
            "unsafe_rate_sft": ppo.get("unsafe_rate_sft"), "unsafe_rate_ppo": ppo.get("unsafe_rate_ppo"),
            "unsafe_rate_filter_sft": ppo.get("unsafe_rate_filter_sft"),
            "unsafe_rate_filter_ppo": ppo.get("unsafe_rate_filter"),
            "rm_score_sft": ppo.get("rm_score_sft"), "rm_score_ppo": ppo.get("rm_score_ppo"),
            "rm_score_sft_ci95": ppo.get("rm_score_sft_ci95"), "rm_score_ppo_ci95": ppo.get("rm_score_ppo_ci95"),
            "rm_score_delta_ci95": ppo.get("rm_score_delta_ci95"),
            "over_refusal_sft": ppo.get("over_refusal_sft"), "over_refusal_ppo": ppo.get("over_refusal_ppo"),
            "refusal_rate_sft": ppo.get("refusal_rate_sft"), "refusal_rate_ppo": ppo.get("refusal_rate_ppo"),
            "eos_rate_sft": ppo.get("eos_rate_sft"), "eos_rate_ppo": ppo.get("eos_rate_ppo"),
            "rm_eval_accuracy": reward.get("eval_accuracy"), "final_kl": ppo.get("final_kl"),
            "kl_target": ppo.get("kl_target"),
            "kl_within_target": (ppo["final_kl"] <= 1.5 * ppo["kl_target"]
                                 if ppo.get("final_kl") is not None and ppo.get("kl_target") else None),
            "gates_passed": status == 0 and state.get("status") == "passed",
            "stage_wall_s": {s["dir"]: s.get("wall_s") for s in state.get("stages", [])},
            "report": str(run_dir / "report.html") if tmp is None else None,
        }
        if args.optimizers:
            figures.update(optimizer_figures(run_dir, state))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    emit(figures)


if __name__ == "__main__":
    main()
