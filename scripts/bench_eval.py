#!/usr/bin/env python
"""Benchmark: ``align-eval`` (the safety evaluation every stage ends with) on a demo policy at ``scale=demo``.

    python scripts/bench_eval.py [--policy MODEL_DIR] [overrides...]

Without ``--policy``, the demo SFT policy is trained first (``align-sft`` at ``scale=demo`` in a
temporary run directory; not timed). Then ``align-eval eval.policy_path=...`` runs as a user runs
it, a fresh process, and is timed end to end: start-up, model and safety-filter loading, sampling
the red-team and benign eval prompts, scoring and the report. Ends with one JSON line: ``wall_s``
(target: under 120 s on 2 cores), the number of answers scored and the unsafe / refusal rates.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from benchlib import arg_parser, emit, read_json, run_module, setup

log = logging.getLogger("bench_eval")


def main() -> None:
    setup("bench_eval")
    parser = arg_parser(__doc__, "align-eval")
    parser.add_argument("--policy", type=Path, default=None, help="a policy folder (default: train the demo SFT policy)")
    args = parser.parse_args()
    if args.policy is not None and not (args.policy / "config.json").is_file():
        sys.exit(f"--policy {args.policy}: no model there (config.json missing)")

    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        policy = args.policy
        sft_wall_s = None
        if policy is None:
            log.info("training the demo SFT policy first (not timed)")
            _, sft_wall_s = run_module("alignment.stages.sft", f"run.dir={tmp}")
            policy = Path(tmp) / "sft" / "model"
        _, wall_s = run_module("alignment.stages.evaluate", f"eval.policy_path={policy.resolve()}",
                               f"run.dir={tmp}", "eval.baseline=null", *args.overrides)
        report = read_json(Path(tmp) / "eval" / "safety.json")
    p = report["policy"]
    emit({"wall_s": round(wall_s, 1), "sft_wall_s": None if sft_wall_s is None else round(sft_wall_s, 1),
          "policy": str(args.policy or "demo SFT"), "filter": report["filter"], "n_answers": p["n"],
          "unsafe_rate": p["unsafe_rate"]["rate"], "refusal_rate_harmful": p["refusal_rate_harmful"]["rate"],
          "over_refusal_rate_benign": p["over_refusal_rate_benign"]["rate"],
          "gates_passed": report["gates"]["passed"]})


if __name__ == "__main__":
    main()
