#!/usr/bin/env python
"""Benchmark: reward_model=minilm trained on HH-RLHF harmless pairs, accuracy on held-out pairs.

    python scripts/bench_reward.py [--data PATH.jsonl] [--eval PATH.jsonl] [overrides...]

Without ``--eval``, a fixed 20% of ``--data`` (seeded shuffle) is held out. Runs the real stage
(``align-reward``) in a temporary run directory and ends with one JSON line:
``eval_accuracy``, ``n_eval``, ``train_s`` (plus the settings used).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless" / "harmless-base-test.dev.jsonl"
log = logging.getLogger("bench_reward")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--eval", type=Path, default=None, help="held-out pairs (default: 20%% of --data)")
    # Defaults match conf/reward_model/minilm.yaml; other reward_model keys (head_lr...) go as overrides.
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1.5e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--pooling", choices=["default", "mean"], default="default")
    parser.add_argument("--freeze-layers", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for align-reward")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"{args.data}: no such file")

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
        command = [sys.executable, "-m", "alignment.stages.reward", "reward_model=minilm", "data=custom",
                   f"data.source={train_file}", f"data.eval_source={eval_file}", "data.skip_invalid=true",
                   f"run.dir={tmp / 'run'}", f"reward.epochs={args.epochs}",
                   f"reward_model.max_length={args.max_length}", f"reward_model.lr={args.lr}",
                   f"reward.batch_size={args.batch_size}", f"reward_model.pooling={args.pooling}",
                   f"reward_model.freeze_layers={args.freeze_layers}", "reward.hh_safety_path=null", *args.overrides]
        log.info("running: %s", " ".join(command))
        started = time.time()
        subprocess.run(command, check=True, cwd=ROOT)
        wall_s = time.time() - started
        metrics = json.loads((tmp / "run" / "reward" / "metrics.json").read_text())
        resolved = OmegaConf.load(tmp / "run" / "reward" / ".hydra" / "config.yaml")
    # The reward_model settings as the stage resolved them (minilm.yaml + the overrides above).
    settings = {k: v for k, v in OmegaConf.to_container(resolved.reward_model).items() if k != "name_or_path"}
    print(json.dumps({"eval_accuracy": metrics["eval_accuracy"], "n_eval": metrics["eval_pairs"],
                      "train_s": round(metrics["train_s"], 1), "wall_s": round(wall_s, 1),
                      "n_train": metrics["train_pairs"], "truncated_train_pairs": metrics["truncated_train_pairs"],
                      "epochs": args.epochs, "batch_size": args.batch_size, **settings}))


if __name__ == "__main__":
    main()
