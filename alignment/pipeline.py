"""``align-pipeline``: sft -> candidates -> labels -> reward -> ppo in one run directory.

The pipeline only wires paths and gates: every stage is the same function its own command runs, given
the run's config with its inputs pointed at the previous stages' outputs. Round 1 writes
``<run.dir>/<stage>/``; with ``rounds=N`` round ``r > 1`` repeats candidates -> labels -> reward -> ppo
from round ``r - 1``'s PPO policy into ``<run.dir>/round-<r>/<stage>/`` (iterative RLHF). All rounds
label into one project of one database (``<run.dir>/labels/labels.db``), so each round's reward model
trains on every label so far.

``optimizers=[ppo,dpo,grpo,rloo]`` makes a round's ``ppo`` stage one step per optimizer, each from the
same SFT policy, labels and reward model into ``<run.dir>/<optimizer>/`` (``round-<r>/<optimizer>/``);
each chains its fingerprint on the reward step, so a change to one optimizer's config reruns only that
one, and the first optimizer's policy starts the next round. ``pipeline.json`` also records each step's
peak resident memory (:mod:`alignment.memory`).

``<run.dir>/pipeline.json`` records each stage's status, wall time and a fingerprint of the config
sections it reads (chained with its inputs' fingerprints). A stage whose outputs exist and whose
fingerprint matches is skipped, so rerunning after a crash or a config change redoes only what
changed; ``resume=true`` also lets the interrupted stage continue from its last checkpoint. The first
failed gate stops the run (exit 3) after the whole-run report is written; bad input exits 2; a
``annotators=human`` run that stopped waiting for labels exits 4.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from alignment import CONF_DIR
from alignment.config import Config, PipelineConfig, check_annotators, register_configs
from alignment.errors import UserError
from alignment.gates import EXIT_GATE_FAILED
from alignment.io import write_json_atomic
from alignment.memory import peak_rss_mb, reset_peak_rss
from alignment.stages.common import EXIT_BAD_INPUT, EXIT_WAITING, config_composed, run_hydra

log = logging.getLogger("alignment.pipeline")

#: The config sections each stage reads: a change elsewhere does not make it rerun.
SECTIONS: dict[str, tuple[str, ...]] = {
    "sft": ("seed", "policy", "data", "prompts", "safety", "sft"),
    "candidates": ("seed", "policy", "prompts", "safety", "candidates", "label"),
    "labels": ("seed", "data", "prompts", "safety", "label", "labels"),
    "reward": ("seed", "policy", "reward_model", "data", "safety", "reward"),
    "ppo": ("seed", "policy", "data", "prompts", "safety", "reward", "reward_terms", "ppo", "eval"),
    "dpo": ("seed", "policy", "data", "prompts", "safety", "reward", "dpo", "eval"),
    "grpo": ("seed", "policy", "data", "prompts", "safety", "reward", "reward_terms", "grpo", "eval"),
    "rloo": ("seed", "policy", "data", "prompts", "safety", "reward", "reward_terms", "rloo", "eval"),
}
#: The stages the ``ppo`` step of a round may be (``optimizers=[...]``): each reads the same inputs.
OPTIMIZER_STAGES = ("ppo", "dpo", "grpo", "rloo")
PIPELINE_KEYS = ("rounds", "pipeline", "optimizers")


def stage_runner(name: str) -> Callable[[Config, DictConfig], int]:
    """The stage's ``run(cfg, raw)``; imported on demand so a run that skips a stage never loads it."""
    from importlib import import_module

    return import_module(f"alignment.stages.{name}").run


@dataclass(frozen=True)
class Step:
    name: str
    round: int
    #: Where the stage writes, relative to the run directory (``sft``, ``round-2/ppo``...).
    dir: str
    overrides: dict[str, object]
    #: The step whose fingerprint this one's chains on (``""``: none): the optimizers of a round all
    #: follow its reward step, so changing one optimizer's config reruns only that one.
    after: str = ""


def plan(cfg: PipelineConfig) -> list[Step]:
    """The stages of every round, each with the paths that wire it to the previous ones; the ``ppo``
    stage is one step per optimizer of ``cfg.optimizers``."""
    stages = [s for s in SECTIONS if s in cfg.pipeline.stages]  # always in data-flow order
    if "labels" in stages:
        check_annotators(cfg)
    run_dir = Path(cfg.run.dir)
    policy, safety = run_dir / "sft" / "model", run_dir / "sft" / "safety.json"
    steps: list[Step] = []
    lead, previous = str(cfg.optimizers[0]), ""
    for r in range(1, cfg.rounds + 1):
        prefix = "" if r == 1 else f"round-{r}/"
        round_dir = run_dir / prefix.rstrip("/") if prefix else run_dir
        common = {"run.dir": str(round_dir), "label.db": str(run_dir / "labels" / "labels.db"),
                  "label.export.dir": str(round_dir / "labels" / "preferences")}
        by_stage = {
            "sft": {},
            "candidates": {"candidates.policy_path": str(policy)},
            "labels": {},
            "reward": {"reward.sft_path": str(run_dir / "sft" / "model"),
                       **({"data.source": str(round_dir / "labels" / "preferences"), "data.eval_source": None}
                          if "labels" in stages else {})},
            **{o: {f"{o}.policy_path": str(policy), f"{o}.reward_path": str(round_dir / "reward" / "model"),
                   f"{o}.safety_baseline": str(safety)} for o in OPTIMIZER_STAGES},
        }
        if "labels" in stages:  # DPO learns from the very pairs the reward model learnt from
            by_stage["dpo"].update({k: v for k, v in by_stage["reward"].items() if k.startswith("data.")})
        for name in stages:
            if name == "sft" and r > 1:
                continue
            if name != "ppo":
                steps.append(Step(name, r, f"{prefix}{name}", {**common, **by_stage[name]}, previous))
                previous = steps[-1].dir
                continue
            for o in map(str, cfg.optimizers):
                steps.append(Step(o, r, f"{prefix}{o}", {**common, **by_stage[o]}, previous))
            previous = f"{prefix}{lead}"
        if "ppo" in stages:
            policy, safety = round_dir / lead / "model", round_dir / lead / "safety.json"
    return steps


def stage_config(raw: DictConfig, step: Step) -> DictConfig:
    """The stage's own config: the run's, less the pipeline keys, with the step's paths set."""
    body = {k: v for k, v in OmegaConf.to_container(raw, resolve=False).items() if k not in PIPELINE_KEYS}
    merged = OmegaConf.merge(OmegaConf.structured(Config), body)
    for key, value in step.overrides.items():
        OmegaConf.update(merged, key, value, merge=False)
    return merged


def fingerprint(stage_raw: DictConfig, step: Step, upstream: str) -> str:
    resolved = OmegaConf.to_container(stage_raw, resolve=True)
    relevant = {k: resolved[k] for k in SECTIONS[step.name]}
    blob = json.dumps({"config": relevant, "overrides": step.overrides, "upstream": upstream}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class PipelineState:
    """``<run.dir>/pipeline.json``: what ran, how it ended, and with which config fingerprint."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "pipeline.json"
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {"stages": []}
        self.data["stages"] = [s for s in self.data.get("stages", []) if "dir" in s]

    def get(self, step: Step) -> dict | None:
        return next((s for s in self.data["stages"] if s["dir"] == step.dir), None)

    def set(self, step: Step, **fields: object) -> None:
        entry = self.get(step)
        if entry is None:
            entry = {"name": step.name, "round": step.round, "dir": step.dir}
            self.data["stages"].append(entry)
        entry.update(fields)
        self.save()

    def save(self, **fields: object) -> None:
        self.data.update(fields)
        write_json_atomic(self.path, self.data)


def run_step(step: Step, stage_raw: DictConfig) -> int:
    cfg = OmegaConf.to_object(stage_raw)
    try:
        return stage_runner(step.name)(cfg, stage_raw)
    finally:
        gc.collect()  # the stage's models go before the next stage loads its own


def run_pipeline(raw: DictConfig) -> int:
    """Run every planned stage (skipping those already done); the exit status of the run."""
    cfg: PipelineConfig = OmegaConf.to_object(raw)
    steps = plan(cfg)
    run_dir = Path(cfg.run.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = PipelineState(run_dir)
    state.save(status="running", rounds=cfg.rounds, started_at=time.time(), plan=[s.dir for s in steps])
    stamps: dict[str, str] = {}
    status, t0 = 0, time.monotonic()
    for i, step in enumerate(steps):
        stage_raw = stage_config(raw, step)
        stamp = stamps[step.dir] = fingerprint(stage_raw, step, stamps.get(step.after, ""))
        done = state.get(step)
        outputs = run_dir / step.dir / "metrics.json"
        if (not cfg.pipeline.force and done and done.get("status") == "passed" and done.get("fingerprint") == stamp
                and outputs.is_file()):
            log.info("[%d/%d] %s: done earlier with the same config, skipped", i + 1, len(steps), step.dir)
            continue
        # resume only a stage interrupted with this very config; a changed one starts over
        interrupted = bool(done) and done.get("status") in ("running", "crashed") and done.get("fingerprint") == stamp
        OmegaConf.update(stage_raw, "resume", bool(cfg.resume and interrupted))
        log.info("[%d/%d] %s: %s", i + 1, len(steps), step.dir, "resuming" if stage_raw.resume else "running")
        state.set(step, status="running", fingerprint=stamp, message="")
        start = time.monotonic()
        reset_peak_rss()
        try:
            status = run_step(step, stage_raw)
        except (UserError, MissingMandatoryValue) as err:
            state.set(step, status="failed", wall_s=round(time.monotonic() - start, 1), message=f"bad input: {err}")
            status = EXIT_BAD_INPUT
        except BaseException as err:
            state.set(step, status="crashed", wall_s=round(time.monotonic() - start, 1), message=repr(err))
            state.save(status="crashed")
            raise
        wall = round(time.monotonic() - start, 1)
        state.set(step, peak_rss_mb=peak_rss_mb())
        if status == 0:
            state.set(step, status="passed", wall_s=wall)
            log.info("[%d/%d] %s: passed in %.0f s", i + 1, len(steps), step.dir, wall)
            continue
        message = gate_message(run_dir / step.dir) if status == EXIT_GATE_FAILED else state.get(step).get("message", "")
        state.set(step, status="waiting" if status == EXIT_WAITING else "failed", wall_s=wall, message=message)
        log.error("pipeline stopped at %s (exit %d): %s", step.dir, status, message or "see the stage's log above")
        break
    state.save(status="passed" if status == 0 else "failed", wall_s=round(time.monotonic() - t0, 1))
    if cfg.pipeline.report:
        from alignment.reports.run_report import write_run_report

        log.info("alignment eval report: %s", write_run_report(run_dir))
    return status


def gate_message(stage_dir: Path) -> str:
    """The failed gates of a stage, from its ``safety.json``, in one line."""
    path = stage_dir / "safety.json"
    if not path.is_file():
        return "a gate failed"
    verdicts = json.loads(path.read_text()).get("gates", {}).get("verdicts", [])
    return "; ".join(v["message"] for v in verdicts if not v["passed"]) or "a gate failed"


def main() -> None:
    register_configs()

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="pipeline")
    def _run(raw: DictConfig) -> None:
        config_composed()
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:  # one run directory per job of a sweep
            raw.run.dir = f"{raw.run.dir}/{hc.job.override_dirname or hc.job.num}"
        try:
            status = run_pipeline(raw)
        except (UserError, MissingMandatoryValue) as err:
            log.error("%s", err)
            sys.exit(EXIT_BAD_INPUT)
        if status and hc.mode != RunMode.MULTIRUN:
            sys.exit(status)
        if status:
            log.error("sweep job %s failed with exit status %d", raw.run.dir, status)

    run_hydra(_run)


if __name__ == "__main__":
    main()
