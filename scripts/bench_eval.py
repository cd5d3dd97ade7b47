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

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("bench_eval")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, default=None, help="a policy folder (default: train the demo SFT policy)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for align-eval")
    args = parser.parse_args()
    if args.policy is not None and not (args.policy / "config.json").is_file():
        sys.exit(f"--policy {args.policy}: no model there (config.json missing)")

    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        policy = args.policy
        sft_wall_s = None
        if policy is None:
            command = [sys.executable, "-m", "alignment.stages.sft", f"run.dir={tmp}"]
            log.info("training the demo SFT policy first (not timed): %s", " ".join(command))
            started = time.time()
            subprocess.run(command, check=True, cwd=ROOT)
            sft_wall_s = round(time.time() - started, 1)
            policy = Path(tmp) / "sft" / "model"
        command = [sys.executable, "-m", "alignment.stages.evaluate", f"eval.policy_path={policy.resolve()}",
                   f"run.dir={tmp}", "eval.baseline=null", *args.overrides]
        log.info("running: %s (load average %.1f)", " ".join(command), os.getloadavg()[0])
        started = time.time()
        subprocess.run(command, check=True, cwd=ROOT)
        wall_s = time.time() - started
        report = json.loads((Path(tmp) / "eval" / "safety.json").read_text())
    p = report["policy"]
    print(json.dumps({"wall_s": round(wall_s, 1), "sft_wall_s": sft_wall_s, "policy": str(args.policy or "demo SFT"),
                      "filter": report["filter"], "n_answers": p["n"], "unsafe_rate": p["unsafe_rate"]["rate"],
                      "refusal_rate_harmful": p["refusal_rate_harmful"]["rate"],
                      "over_refusal_rate_benign": p["over_refusal_rate_benign"]["rate"],
                      "gates_passed": report["gates"]["passed"], "load_average_end": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
