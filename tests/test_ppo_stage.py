"""The PPO loop: it learns a simple known reward, keeps KL in check, resumes exactly, and fails clearly."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from accelerate import Accelerator

from alignment.config import PolicyConfig, PPOStageConfig
from alignment.data.world import DemoWorld
from alignment.modeling import load_policy
from alignment.ppo.trainer import PPOTrainer
from alignment.stages.common import seed_everything
from conftest import ROOT, run_cli


def short_answer_reward(prompts, texts):
    """A known reward: shorter answers are better (the policy must learn to emit EOS early)."""
    return np.array([-len(t) / 40.0 for t in texts])


def test_ppo_learns_a_known_reward_within_the_kl_target(smoke_sft):
    seed_everything(0)
    cfg = PPOStageConfig(batch_size=16, mini_batch_size=8, ppo_epochs=4, lr=1e-3, value_model="head",
                         missing_eos_penalty=None)
    cfg.kl.target = 6.0
    cfg.generation.max_new_tokens = 24
    policy_path = str(smoke_sft / "sft" / "model")
    model, tok = load_policy(PolicyConfig(), path=policy_path)
    trainer = PPOTrainer(cfg, Accelerator(cpu=True), model, policy_path, tok, short_answer_reward, 0.0, 1.0,
                         [p.text for p in DemoWorld(0).prompts("train")], seed=0, num_updates=10)
    stats = [trainer.step() for _ in range(10)]
    first = np.mean([s["reward/raw"] for s in stats[:3]])
    last = np.mean([s["reward/raw"] for s in stats[-3:]])
    assert last > first + 0.1, f"mean reward did not rise: {first:.3f} -> {last:.3f}"
    assert all(s["objective/kl"] < cfg.kl.target for s in stats)
    assert all(np.isfinite(s["loss/total"]) for s in stats)


@pytest.fixture(scope="module")
def smoke_rm(smoke_sft):
    if not (smoke_sft / "reward" / "model").is_dir():
        result = run_cli("alignment.stages.reward", "scale=smoke", f"run.dir={smoke_sft}")
        assert result.returncode == 0, result.stderr[-2000:]
    return smoke_sft


def _final(run_dir):
    metrics = json.loads((run_dir / "ppo" / "metrics.json").read_text())
    return metrics["history"], metrics


def test_smoke_ppo_stage_and_exact_resume_after_sigkill(tmp_path, smoke_rm):
    common = ["scale=smoke", f"ppo.policy_path={smoke_rm / 'sft' / 'model'}",
              f"ppo.reward_path={smoke_rm / 'reward' / 'model'}", "ppo.total_episodes=64", "ppo.save_every=2"]
    straight = tmp_path / "straight"
    result = run_cli("alignment.stages.ppo", *common, f"run.dir={straight}")
    assert result.returncode == 0, result.stderr[-3000:]
    history, metrics = _final(straight)
    assert metrics["updates"] == 8 and len(history) == 8
    for key in ("gold_win_rate", "unsafe_rate_sft", "unsafe_rate_ppo", "final_kl", "gold_reward_ppo"):
        assert key in metrics
    assert (straight / "ppo" / "model" / "config.json").is_file()
    assert "Gold vs proxy reward" in (straight / "ppo" / "report.html").read_text()
    assert json.loads((straight / "ppo" / "safety.json").read_text())["gates"]["passed"]

    killed = tmp_path / "killed"
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "alignment.stages.ppo", *common, f"run.dir={killed}"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    ckpts = killed / "ppo" / "checkpoints"
    while time.time() < deadline and not list(ckpts.glob("update-000004")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(ckpts.glob("update-*")), "the run was killed before its first checkpoint"
    assert not (killed / "ppo" / "metrics.json").exists()
    resumed = run_cli("alignment.stages.ppo", *common, f"run.dir={killed}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history_resumed, metrics_resumed = _final(killed)
    assert len(history_resumed) == len(history)
    for a, b in zip(history, history_resumed):
        for key in ("reward/raw", "objective/kl", "loss/total", "objective/beta"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), (a["update"], key)
    assert metrics_resumed["gold_reward_ppo"] == pytest.approx(metrics["gold_reward_ppo"])


def test_missing_inputs_are_clear_errors(tmp_path):
    result = run_cli("alignment.stages.ppo", "scale=smoke", f"run.dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode == 2 and "ppo.policy_path" in result.stderr and "align-sft" in result.stderr
    assert not (tmp_path / "run").exists()


def test_prompts_longer_than_the_context_are_rejected(tmp_path, smoke_rm):
    result = run_cli("alignment.stages.ppo", "scale=smoke", f"run.dir={tmp_path / 'run'}",
                     f"ppo.policy_path={smoke_rm / 'sft' / 'model'}", f"ppo.reward_path={smoke_rm / 'reward' / 'model'}",
                     "ppo.generation.max_new_tokens=500", timeout=120)
    assert result.returncode == 2 and "exceed the policy's context" in result.stderr
    assert not (tmp_path / "run").exists()
