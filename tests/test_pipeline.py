"""align-pipeline end to end at scale=smoke: every stage and its report, skipping finished stages,
resuming after a SIGKILL mid-PPO, stopping at a failed gate, rounds, and bad input."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignment.config import PipelineConfig
from alignment.pipeline import plan
from conftest import ROOT, run_cli

STAGES = ["sft", "candidates", "labels", "reward", "ppo"]


def statuses(run_dir: Path) -> dict[str, str]:
    return {s["dir"]: s["status"] for s in json.loads((run_dir / "pipeline.json").read_text())["stages"]}


def mtimes(run_dir: Path, dirs: list[str]) -> dict[str, float]:
    return {d: (run_dir / d / "metrics.json").stat().st_mtime_ns for d in dirs}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    result = run_cli("alignment.pipeline", "scale=smoke", f"run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_smoke_pipeline_runs_every_stage_and_writes_the_report(smoke_run):
    assert statuses(smoke_run) == dict.fromkeys(STAGES, "passed")
    state = json.loads((smoke_run / "pipeline.json").read_text())
    assert state["status"] == "passed" and all(s["wall_s"] >= 0 for s in state["stages"])
    for stage in STAGES:
        assert (smoke_run / stage / "metrics.json").is_file(), stage
        assert (smoke_run / stage / ".hydra" / "config.yaml").is_file(), stage
    for stage in ("sft", "labels", "reward", "ppo"):
        assert json.loads((smoke_run / stage / "safety.json").read_text())["gates"]["passed"], stage
        assert (smoke_run / stage / "report.html").is_file(), stage
    labels = json.loads((smoke_run / "labels" / "metrics.json").read_text())
    assert labels["stats"]["labels"]["total"] == 3 * labels["stats"]["items"]["total"] > 0  # overlap 3, all done
    assert labels["export"]["rows"] > 0
    # the reward stage trained on the exported labels, and PPO on this run's SFT policy and reward model
    reward_cfg = (smoke_run / "reward" / ".hydra" / "config.yaml").read_text()
    assert f"source: {smoke_run / 'labels' / 'preferences'}" in reward_cfg
    ppo_cfg = (smoke_run / "ppo" / ".hydra" / "config.yaml").read_text()
    assert f"policy_path: {smoke_run / 'sft' / 'model'}" in ppo_cfg
    assert (smoke_run / "report.html").is_file()
    report = json.loads((smoke_run / "report.json").read_text())
    assert report  # its content is tested in test_run_report.py


@pytest.mark.slow
def test_rerun_skips_finished_stages_and_a_config_change_reruns_only_what_it_touches(smoke_run):
    before = mtimes(smoke_run, STAGES)
    result = run_cli("alignment.pipeline", "scale=smoke", f"run.dir={smoke_run}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("same config, skipped") == 5
    assert mtimes(smoke_run, STAGES) == before

    result = run_cli("alignment.pipeline", "scale=smoke", f"run.dir={smoke_run}", "ppo.lr=1e-5")
    assert result.returncode == 0, result.stderr[-3000:]
    after = mtimes(smoke_run, STAGES)
    assert {d for d in STAGES if after[d] != before[d]} == {"ppo"}
    assert "lr: 1.0e-05" in (smoke_run / "ppo" / ".hydra" / "config.yaml").read_text()


@pytest.mark.slow
def test_sigkill_mid_ppo_then_resume_does_not_redo_finished_stages(tmp_path):
    run_dir = tmp_path / "run"
    args = ["scale=smoke", f"run.dir={run_dir}", "ppo.total_episodes=96"]
    proc = subprocess.Popen([sys.executable, "-m", "alignment.pipeline", *args], cwd=ROOT,
                            env={**os.environ, "HYDRA_FULL_ERROR": "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((run_dir / "ppo" / "checkpoints").glob("update-*")):
        assert proc.poll() is None, "the pipeline ended before PPO wrote a checkpoint"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert statuses(run_dir)["ppo"] == "running"
    assert not (run_dir / "ppo" / "metrics.json").exists()
    before = mtimes(run_dir, STAGES[:4])

    result = run_cli("alignment.pipeline", *args, "resume=true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("same config, skipped") == 4
    assert "resumed from" in result.stderr
    assert mtimes(run_dir, STAGES[:4]) == before
    assert statuses(run_dir) == dict.fromkeys(STAGES, "passed")
    assert json.loads((run_dir / "ppo" / "metrics.json").read_text())["updates"] == 12
    assert (run_dir / "report.html").is_file()


@pytest.mark.slow
def test_a_failed_gate_stops_the_pipeline_with_a_report(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("alignment.pipeline", "scale=smoke", f"run.dir={run_dir}", "reward.gate.min_safety_accuracy=1.01")
    assert result.returncode == 3
    assert "pipeline stopped at reward" in result.stderr and "reward.gate.min_safety_accuracy" in result.stderr
    assert statuses(run_dir) == {"sft": "passed", "candidates": "passed", "labels": "passed", "reward": "failed"}
    assert not (run_dir / "ppo").exists()
    state = json.loads((run_dir / "pipeline.json").read_text())
    assert state["status"] == "failed" and "min_safety_accuracy" in state["stages"][-1]["message"]
    assert "min_safety_accuracy" in (run_dir / "report.html").read_text()


def test_rounds_chain_each_round_to_the_previous_policy():
    cfg = PipelineConfig(rounds=3)
    cfg.run.dir = "/r"
    steps = plan(cfg)
    assert [s.dir for s in steps] == STAGES + [f"round-{r}/{s}" for r in (2, 3) for s in STAGES[1:]]
    by_dir = {s.dir: s.overrides for s in steps}
    assert by_dir["round-2/candidates"]["candidates.policy_path"] == "/r/ppo/model"
    assert by_dir["round-3/ppo"]["ppo.policy_path"] == "/r/round-2/ppo/model"
    assert by_dir["round-3/ppo"]["ppo.safety_baseline"] == "/r/round-2/ppo/safety.json"
    assert by_dir["round-3/reward"]["data.source"] == "/r/round-3/labels/preferences"
    assert {o["label.db"] for o in by_dir.values()} == {"/r/labels/labels.db"}  # one database for every round


@pytest.mark.parametrize("override, message", [
    ("rounds=0", "rounds=0: must be >= 1"),
    ("pipeline.stages=[sft,rlhf]", "Invalid value 'rlhf', expected one of [sft, candidates, labels, reward, ppo]"),
    ("labels.annotators=crowd", "Invalid value 'crowd', expected one of [simulated, human]"),
    ("prompts=hh", "annotators=simulated labels from the demo world's gold preference, but prompts=hh has none"),
])
@pytest.mark.slow
def test_bad_input_exits_2_with_a_clear_message(tmp_path, override, message):
    extra = ["pipeline.stages=[labels]"] if "annotators" in override else []
    run_dir = tmp_path / "run"
    result = run_cli("alignment.pipeline", "scale=smoke", f"run.dir={run_dir}", override, *extra)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_gold_agreement_counts_only_pairs_the_gold_reward_separates():
    from alignment.data.world import DemoWorld
    from alignment.stages.labels import gold_agreement

    world, rng = DemoWorld(0), random.Random(0)
    p = world.prompts("train", kind="harmful")[0]
    refusal, toxic = world.respond(p, "refusal", rng), world.respond(p, "toxic", rng)
    rows = [{"prompt": p.text, "chosen": refusal, "rejected": toxic},          # agrees with gold
            {"prompt": p.text, "chosen": toxic, "rejected": refusal},          # disagrees
            {"prompt": p.text, "chosen": refusal, "rejected": refusal + " "},  # same gold: not counted
            {"prompt": "not a demo prompt", "chosen": "a", "rejected": "b"}]   # unknown prompt: not counted
    assert gold_agreement(rows, world) == {"pairs": 2, "rate": 0.5}
    assert gold_agreement([], world) == {"pairs": 0, "rate": None}


def test_bots_break_unjudgeable_demo_pairs_with_the_deterministic_fallback():
    from alignment.data.world import DemoWorld
    from labeling_ui.bots import BotBrain, fallback_label

    world = DemoWorld(0)
    p = world.prompts("train")[0]
    first, second = "zq xv blorp", "qq wub fnord"  # gibberish: neither answer fits a style
    decision = BotBrain(world, noise=0.0).decide(p.text, first, second)
    choice, strength = fallback_label(p.text, first, second)
    assert (decision["choice"], decision["strength"]) == (choice, strength) and choice in ("A", "B")
    # a judgeable pair still follows the gold preference
    rng = random.Random(1)
    good, bad = world.respond(p, "refusal" if p.kind == "harmful" else "helpful", rng), world.respond(p, "toxic", rng)
    assert BotBrain(world, noise=0.0).decide(p.text, bad, good)["choice"] == "B"
