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
``gold_win_rate``, ``gold_reward`` (and ``gold_reward_sft``), ``kl`` (to the SFT policy),
``unsafe_rate_filter``, ``wall_s`` and ``peak_rss_mb``, read from the run report's comparison. Targets on
2 cores: the whole comparison within 25 minutes, every optimizer above the SFT policy on gold reward,
the best one at a gold win rate >= 0.9.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from benchlib import arg_parser, emit, read_json, run_module, setup


def optimizer_figures(run_dir: Path, state: dict) -> dict:
    """Each optimizer's headline figures, as the run report's comparison section shows them."""
    from alignment.reports.comparison import comparison_data

    data = comparison_data(run_dir, state) or {"optimizers": []}
    keys = ("gold_win_rate", "gold_reward", "gold_reward_sft", "kl", "unsafe_rate_filter", "wall_s", "peak_rss_mb",
            "policy_samples", "status")
    return {r["name"]: {k: r[k] for k in keys} for r in data["optimizers"]}


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
            figures["optimizers"] = optimizer_figures(run_dir, state)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    emit(figures)


if __name__ == "__main__":
    main()
