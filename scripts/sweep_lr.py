#!/usr/bin/env python
"""Each optimizer's learning rate, chosen by the reward model on validation prompts (never by gold).

    python scripts/sweep_lr.py --run-dir DIR [--optimizers ppo,dpo,grpo,rloo] [--lrs ppo=3e-5,1e-4,3e-4 ...]
                               [overrides...]

One shared run first: ``align-pipeline`` with ``pipeline.stages=[sft,candidates,labels,reward]`` into
``DIR/base`` (skipped when done, as the pipeline skips any finished stage). Then each optimizer at each of
its learning rates, at the run's sample budget, from that very SFT policy, label set and reward model: a
point is ``align-pipeline pipeline.stages=[ppo] optimizers=[<o>] <o>.lr=<lr> eval.split=validation`` in
``DIR/points/<o>-lr<lr>/``, whose ``sft``, ``labels`` and ``reward`` folders link to the shared run's, so
a rerun skips every point already done and resumes the one that was interrupted. ``eval.split=validation``
evaluates each point on held-out prompts disjoint from those the comparison reports (``test``).

The choice per optimizer is the learning rate with the highest **validation reward**: the run's reward
(``reward_terms``) as far as the held-out evaluation measures it, on the validation ``eval`` prompts: the
reward model's mean score normalised with the reward stage's statistics, less ``missing_eos_penalty``
times the share of unfinished answers and ``kl_coef`` times the KL to the SFT policy (on the same
answers). The reward model's score alone would reward the learning rate that strays furthest from the
SFT policy, which the KL term of the reward exists to stop; ``best_by_rm_score`` is that choice, printed
for the record. Gold figures are printed beside them, never used. Ends with one JSON line: per optimizer
and learning rate the validation reward, the reward model's score (and its interval), its win rate over
the SFT answers, KL to the SFT policy, the gold win rate and reward, wall seconds; ``best``: the chosen
learning rate of each optimizer.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from benchlib import emit, read_json, run_module, setup

#: Half-decade grids around each optimizer's earlier demo setting.
DEFAULT_LRS = {"ppo": (3e-5, 1e-4, 3e-4), "dpo": (6e-5, 2e-4, 6e-4), "grpo": (3e-5, 1e-4, 3e-4),
               "rloo": (3e-5, 1e-4, 3e-4)}
SHARED = ("sft", "labels", "reward")
log = logging.getLogger("sweep_lr")


def parse_lrs(specs: list[str], optimizers: list[str]) -> dict[str, list[float]]:
    """``--lrs ppo=1e-4,3e-4`` entries over :data:`DEFAULT_LRS`."""
    lrs = {o: list(DEFAULT_LRS[o]) for o in optimizers}
    for spec in specs:
        name, _, values = spec.partition("=")
        if name not in lrs or not values:
            raise SystemExit(f"--lrs {spec!r}: expected <optimizer>=<lr>,<lr>,... for one of {optimizers}")
        lrs[name] = [float(v) for v in values.split(",")]
    return lrs


def run_point(base: Path, points: Path, name: str, lr: float, overrides: list[str]) -> Path:
    """One optimizer at one learning rate, from the shared run's SFT policy, labels and reward model."""
    point = points / f"{name}-lr{lr:g}"
    point.mkdir(parents=True, exist_ok=True)
    for shared in SHARED:
        link = point / shared
        if not link.exists():
            os.symlink(base / shared, link)
    extra = [f"data.source={base / 'labels' / 'preferences'}", "data.eval_source=null"] if name == "dpo" else []
    if name == "ppo":
        extra.append("ppo.eval_every=100000")  # the point is judged by its final evaluation alone
    run_module("alignment.pipeline", f"run.dir={point}", "pipeline.stages=[ppo]", f"optimizers=[{name}]",
               f"{name}.lr={lr}", "eval.split=validation", "pipeline.report=false", *extra, *overrides, check=False)
    return point


def validation_reward(m: dict, name: str, terms: dict) -> float | None:
    """The run's reward on the held-out answers: the normalised reward-model score, less the missing-EOS
    penalty on unfinished answers and the KL penalty (``terms``: the run's ``reward_terms`` and the reward
    stage's normalisation)."""
    if m.get(f"rm_score_{name}") is None or m.get("kl_sft") is None:
        return None
    unfinished = 1.0 - m.get(f"eos_rate_{name}", 1.0)
    return ((m[f"rm_score_{name}"] - terms["mean"]) / terms["std"] - (terms["missing_eos_penalty"] or 0.0) * unfinished
            - terms["kl_coef"] * m["kl_sft"])


def point_figures(point: Path, name: str, terms: dict) -> dict:
    """What the choice reads (the validation reward) and what is shown beside it."""
    m = read_json(point / name / "metrics.json")
    state = {s["dir"]: s for s in read_json(point / "pipeline.json").get("stages", [])}
    return {"validation_reward": validation_reward(m, name, terms), "rm_score": m.get(f"rm_score_{name}"), "rm_score_ci95": m.get(f"rm_score_{name}_ci95"),
            "rm_score_sft": m.get("rm_score_sft"), "rm_win_rate": m.get("rm_win_rate"),
            "rm_win_rate_ci95": m.get("rm_win_rate_ci95"), "kl": m.get("kl_sft"),
            "gold_win_rate": m.get("gold_win_rate"), "gold_reward": m.get(f"gold_reward_{name}"),
            "gold_reward_sft": m.get("gold_reward_sft"), "length_change": m.get("length_change"),
            "eos_rate": m.get(f"eos_rate_{name}"),
            "policy_samples": m.get("policy_samples"), "optimizer_steps": m.get("optimizer_steps"),
            "status": state.get(name, {}).get("status"), "wall_s": state.get(name, {}).get("wall_s")}


def main() -> None:
    setup("sweep_lr")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="the shared run and every point (kept: reruns skip)")
    parser.add_argument("--optimizers", default="ppo,dpo,grpo,rloo")
    parser.add_argument("--lrs", action="append", default=[], help="<optimizer>=<lr>,<lr>,... (repeatable)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every align-pipeline run")
    args = parser.parse_args()
    optimizers = args.optimizers.split(",")
    lrs = parse_lrs(args.lrs, optimizers)
    run_dir = args.run_dir.resolve()
    base, points = run_dir / "base", run_dir / "points"
    started = time.time()
    status, _ = run_module("alignment.pipeline", f"run.dir={base}", "pipeline.stages=[sft,candidates,labels,reward]",
                           "pipeline.report=false", *args.overrides, check=False)
    if status != 0:
        raise SystemExit(f"the shared run in {base} failed (exit {status})")
    terms = run_terms(base, args.overrides)
    figures: dict[str, dict] = {}
    for name in optimizers:
        figures[name] = {}
        for lr in lrs[name]:
            figures[name][f"{lr:g}"] = point_figures(run_point(base, points, name, lr, args.overrides), name, terms)
            log.info("%s lr %g: %s", name, lr, json.dumps(figures[name][f"{lr:g}"]))
    emit({"wall_s": round(time.time() - started, 1), "reward_terms": terms,
          "chosen_by": "validation_reward: the run's reward on the validation eval prompts", "points": figures,
          "best": best_of(figures, "validation_reward"), "best_by_rm_score": best_of(figures, "rm_score")})


def best_of(figures: dict[str, dict], key: str) -> dict[str, str | None]:
    """Per optimizer, the learning rate whose ``key`` is highest."""
    return {name: max((lr for lr, f in by_lr.items() if f[key] is not None), key=lambda lr: by_lr[lr][key],
                      default=None) for name, by_lr in figures.items()}


def run_terms(base: Path, overrides: list[str]) -> dict:
    """The run's reward terms (its config, as the points use it) and the reward stage's normalisation."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from alignment import CONF_DIR
    from alignment.config import register_configs

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("pipeline", overrides=[o for o in overrides if "=" in o and not o.startswith("hydra")])
    terms = OmegaConf.to_container(cfg.reward_terms)
    stats = json.loads((base / "reward" / "model" / "reward_config.json").read_text())
    return {**terms, "mean": stats["mean"], "std": stats["std"]}


if __name__ == "__main__":
    main()
