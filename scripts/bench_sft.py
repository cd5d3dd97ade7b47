#!/usr/bin/env python
"""Benchmark: ``align-sft`` at the default ``scale=demo``, wall time and the SFT policy's quality.

    python scripts/bench_sft.py [--run-dir DIR] [overrides...]

Runs the real stage in a fresh run directory (a temporary one unless ``--run-dir``, which keeps the
policy, e.g. for ``scripts/bench_eval.py --policy DIR/sft/model``; the tiny model cache is reused as usual) and ends
with one JSON line: ``wall_s``, ``train_s``, ``eos_rate``, ``usable_rate`` (answers that end with EOS
and are classified into a demo style), ``unsafe_rate_redteam`` and the corpus mix it should track,
``unsafe_gap`` (their difference), ``eval_loss``. Targets: wall <= 300 s on 2 cores, usable >= 0.9,
|unsafe_gap| <= 0.10.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchlib import arg_parser, emit, read_json, run_module, setup


def main() -> None:
    setup("bench_sft")
    args = arg_parser(__doc__, "align-sft", run_dir=True).parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sft-") as tmp:
        run_dir = (args.run_dir or Path(tmp)).resolve()
        _, wall_s = run_module("alignment.stages.sft", f"run.dir={run_dir}", *args.overrides)
        m = read_json(run_dir / "sft" / "metrics.json")
    corpus = m["corpus"].get("unsafe_share_harmful_corpus")
    emit({
        "wall_s": round(wall_s, 1), "train_s": round(m["train_s"], 1), "eval_loss": round(m["eval_loss"], 4),
        "eos_rate": m["eos_rate"], "usable_rate": m["usable_rate"], "unsafe_rate_redteam": m["unsafe_rate_redteam"],
        "unsafe_share_corpus": corpus, "unsafe_gap": None if corpus is None else round(m["unsafe_rate_redteam"] - corpus, 4),
        "unsafe_rate_filter": m.get("unsafe_rate_filter"), "gold_reward_mean": m["gold_reward_mean"],
        "n_parameters": m["n_parameters"],
    })


if __name__ == "__main__":
    main()
