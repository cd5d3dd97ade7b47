#!/usr/bin/env python
"""Benchmark: reward_model=minilm trained on HH-RLHF harmless pairs, accuracy on held-out pairs.

    python scripts/bench_reward.py [--data PATH.jsonl] [--eval PATH.jsonl] [--seeds 0,1,2] [overrides...]

Without ``--eval``, a fixed 20% of ``--data`` (seeded shuffle) is held out. Runs the real stage
(``align-reward``) in a temporary run directory, once per training seed (``--seeds``; the held-out
split does not change with it), and ends with one JSON line: ``eval_accuracy`` (the mean over the
seeds), ``eval_accuracy_per_seed``, ``n_eval``, ``train_s`` (the longest run) plus the settings used.
Fine-tuning on about 1,300 pairs varies with the seed by several points (head initialisation and
data order), more than one run's sampling error on 319 pairs (about 2.7 points): judge a setting
by the mean over seeds, not by one run.
"""

from __future__ import annotations

import logging
import random
import statistics
import sys
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from benchlib import ROOT, arg_parser, emit, read_json, run_module, setup

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless" / "harmless-base-test.dev.jsonl"
log = logging.getLogger("bench_reward")


def main() -> None:
    setup("bench_reward")
    parser = arg_parser(__doc__, "align-reward")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--eval", type=Path, default=None, help="held-out pairs (default: 20%% of --data)")
    # Unset, each comes from conf/reward_model/minilm.yaml (reward.batch_size from the reward config);
    # other keys (reward_model.head_lr=...) go as overrides.
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--pooling", choices=["default", "mean"])
    parser.add_argument("--freeze-layers", type=int)
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (default: 0)")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"{args.data}: no such file")
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        sys.exit(f"--seeds {args.seeds!r}: expected comma-separated integers")
    if not seeds:
        sys.exit("--seeds: give at least one seed")

    with tempfile.TemporaryDirectory(prefix="bench-reward-") as tmp:
        tmp = Path(tmp)
        train_file, eval_file = args.data, args.eval
        if eval_file is None:
            lines = [line for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
            random.Random(0).shuffle(lines)
            n_eval = len(lines) // 5
            train_file, eval_file = tmp / "train.jsonl", tmp / "eval.jsonl"
            train_file.write_text("\n".join(lines[n_eval:]) + "\n", encoding="utf-8")
            eval_file.write_text("\n".join(lines[:n_eval]) + "\n", encoding="utf-8")
            log.info("held out %d of %d pairs (fixed seed)", n_eval, len(lines))
        chosen = {"reward_model.epochs": args.epochs, "reward_model.max_length": args.max_length,
                  "reward_model.lr": args.lr, "reward.batch_size": args.batch_size,
                  "reward_model.pooling": args.pooling, "reward_model.freeze_layers": args.freeze_layers}
        settings_overrides = [f"{key}={value}" for key, value in chosen.items() if value is not None]
        runs = []
        for seed in seeds:
            run_dir = tmp / f"run-seed{seed}"
            status, wall_s = run_module(
                "alignment.stages.reward", "reward_model=minilm", "data=custom", f"data.source={train_file}",
                f"data.eval_source={eval_file}", "data.skip_invalid=true", f"run.dir={run_dir}", f"seed={seed}",
                "reward.hh_safety_path=null", *settings_overrides, *args.overrides, check=False)
            if status not in (0, 3):  # 3: a gate failed (the RM safety gate on the demo world), still measured
                sys.exit(f"seed {seed}: align-reward exited with status {status}")
            metrics = read_json(run_dir / "reward" / "metrics.json")
            runs.append({"seed": seed, "wall_s": wall_s, **metrics})
            log.info("seed %d: eval accuracy %.4f (train %.0f s)", seed, metrics["eval_accuracy"], metrics["train_s"])
        resolved = OmegaConf.load(run_dir / "reward" / ".hydra" / "config.yaml")
    # The reward_model settings as the stage resolved them (minilm.yaml + the overrides above).
    settings = {k: v for k, v in OmegaConf.to_container(resolved.reward_model).items() if k != "name_or_path"}
    accuracies = [r["eval_accuracy"] for r in runs]
    emit({"eval_accuracy": round(statistics.mean(accuracies), 4),
                      "eval_accuracy_per_seed": {r["seed"]: round(r["eval_accuracy"], 4) for r in runs},
                      "eval_accuracy_sd": round(statistics.stdev(accuracies), 4) if len(runs) > 1 else None,
                      "n_eval": runs[0]["eval_pairs"], "train_s": round(max(r["train_s"] for r in runs), 1),
                      "wall_s": round(max(r["wall_s"] for r in runs), 1), "n_train": runs[0]["train_pairs"],
                      "truncated_train_pairs": runs[0]["truncated_train_pairs"], "batch_size": resolved.reward.batch_size,
                      **settings})

if __name__ == "__main__":
    main()
