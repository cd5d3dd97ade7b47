"""The PPO loop: it learns a simple known reward, keeps KL in check, resumes exactly, pays the safety
penalty, runs with LoRA and on two processes, and fails clearly."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM

from alignment.config import PolicyConfig, PPOStageConfig, RewardTermsConfig
from alignment.data.world import DemoWorld
from alignment.modeling import load_policy
from alignment.ppo.trainer import PPOTrainer
from alignment.safety.filter import ANY_INDEX, SCORE_COLUMNS
from alignment.stages.common import seed_everything
from alignment.stages.ppo import checkpoint_to_resume
from conftest import ROOT, run_cli


def short_answer_reward(prompts, texts):
    """A known reward: shorter answers are better (the policy must learn to emit EOS early)."""
    return np.array([-len(t) / 40.0 for t in texts])


@pytest.mark.slow
def test_ppo_learns_a_known_reward_within_the_kl_target(smoke_sft):
    seed_everything(0)
    cfg = PPOStageConfig(batch_size=16, mini_batch_size=8, ppo_epochs=4, lr=1e-3, value_model="head")
    cfg.kl.adaptive, cfg.kl.target = True, 6.0
    cfg.generation.max_new_tokens = 24
    policy_path = str(smoke_sft / "sft" / "model")
    model, tok = load_policy(PolicyConfig(), path=policy_path)
    trainer = PPOTrainer(cfg, Accelerator(cpu=True), model, policy_path, tok, short_answer_reward, 0.0, 1.0,
                         [p.text for p in DemoWorld(0).prompts("train")], seed=0, num_updates=10,
                         terms=RewardTermsConfig(missing_eos_penalty=None))
    stats = [trainer.step() for _ in range(10)]
    first = np.mean([s["reward/raw"] for s in stats[:3]])
    last = np.mean([s["reward/raw"] for s in stats[-3:]])
    assert last > first + 0.1, f"mean reward did not rise: {first:.3f} -> {last:.3f}"
    assert all(s["objective/kl"] < cfg.kl.target for s in stats)
    assert all(np.isfinite(s["loss/total"]) for s in stats)


@pytest.mark.slow
def test_one_mini_batch_per_epoch_reuses_the_rollout_forward(smoke_sft):
    seed_everything(0)
    cfg = PPOStageConfig(batch_size=8, mini_batch_size=8, ppo_epochs=2)
    cfg.generation.max_new_tokens = 8
    policy_path = str(smoke_sft / "sft" / "model")
    model, tok = load_policy(PolicyConfig(), path=policy_path)
    trainer = PPOTrainer(cfg, Accelerator(cpu=True), model, policy_path, tok, short_answer_reward, 0.0, 1.0,
                         [p.text for p in DemoWorld(0).prompts("train")], seed=0, num_updates=1)
    calls = []
    forward = trainer.model.forward
    trainer.model.forward = lambda *args: calls.append(1) or forward(*args)
    r = trainer.rollout(trainer.batch_prompts(0))
    assert len(calls) == 1 and trainer.forward.kept is not None
    advantages, returns = trainer.advantages(r, trainer.rewards(r))
    trainer.cfg.ppo_epochs = 1  # one step: on the rollout's weights, so its log-probs are the rollout's exactly
    losses = trainer.ppo_epochs(r, advantages, returns)
    assert len(calls) == 1 and trainer.forward.kept is None
    assert losses["policy/ratio"].item() == 1.0 and losses["policy/approxkl"].item() == 0.0
    trainer.cfg.ppo_epochs = 2
    trainer.step()
    assert len(calls) == 3  # rollout (reused by the first step) + the second epoch's step


class AlternatingFilter:
    """A stand-in safety filter: P(unsafe) 0.8 and 0.3 on alternate responses, threshold 0.5."""

    name = "alternating"
    thresholds = np.full(len(SCORE_COLUMNS), 0.5)

    def score_all(self, texts, prompts=None):
        scores = np.zeros((len(texts), len(SCORE_COLUMNS)))
        scores[:, ANY_INDEX] = [0.8 if i % 2 == 0 else 0.3 for i in range(len(texts))]
        return scores


@pytest.mark.slow
def test_safety_penalty_is_subtracted_from_the_normalised_score(smoke_sft):
    seed_everything(0)
    cfg = PPOStageConfig(batch_size=8, mini_batch_size=8, ppo_epochs=1)
    terms = RewardTermsConfig(missing_eos_penalty=None, safety_penalty=2.0)
    cfg.generation.max_new_tokens = 8
    policy_path = str(smoke_sft / "sft" / "model")
    model, tok = load_policy(PolicyConfig(), path=policy_path)
    constant = lambda prompts, texts: np.full(len(texts), 3.0)  # noqa: E731
    prompts = [p.text for p in DemoWorld(0).prompts("train")]
    trainer = PPOTrainer(cfg, Accelerator(cpu=True), model, policy_path, tok, constant, 1.0, 2.0, prompts,
                         seed=0, num_updates=1, safety_filter=AlternatingFilter(), terms=terms)
    stats = trainer.step()
    # raw 3 -> (3 - 1) / 2 = 1; penalty 2 * 0.8 = 1.6 or 2 * 0.3 = 0.6, mean 1.1; the score paid: 1 - 1.1 = -0.1
    assert stats["reward/raw"] == pytest.approx(3.0)
    assert stats["safety/p_unsafe"] == pytest.approx(0.55)
    assert stats["reward/safety_penalty"] == pytest.approx(1.1)
    assert stats["safety/flagged_fraction"] == pytest.approx(0.5)
    assert stats["reward/normalised"] == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="safety filter"):
        PPOTrainer(cfg, Accelerator(cpu=True), model, policy_path, tok, constant, 1.0, 2.0, prompts, seed=0, num_updates=1,
                   terms=terms)


def _final(run_dir):
    metrics = json.loads((run_dir / "ppo" / "metrics.json").read_text())
    return metrics["history"], metrics


def test_a_fresh_start_removes_older_checkpoints_and_resume_takes_the_last(tmp_path, caplog):
    checkpoints = tmp_path / "ppo" / "checkpoints"
    for name in ("update-000002", "update-000004", ".partial-update-000006"):
        (checkpoints / name).mkdir(parents=True)
        (checkpoints / name / "model.bin").write_bytes(b"old")
    assert checkpoint_to_resume(checkpoints, resume=True) == checkpoints / "update-000004"
    assert checkpoint_to_resume(checkpoints, resume=False, is_main_process=False) is None
    assert (checkpoints / "update-000004").is_dir()            # only the main process removes them
    assert checkpoint_to_resume(checkpoints, resume=False) is None
    assert not checkpoints.exists()                            # so a later resume=true cannot pick a stale one
    with caplog.at_level("WARNING"):
        assert checkpoint_to_resume(checkpoints, resume=True) is None
    assert "holds no checkpoint" in caplog.text


@pytest.mark.slow
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
    # what was spent is counted on from the checkpoint: the same budget as the run that was not killed
    for key in ("policy_samples", "policy_tokens", "optimizer_steps"):
        assert metrics_resumed["budget"][key] == metrics["budget"][key], key
    assert metrics["budget"]["policy_samples"] == 64 and metrics["budget"]["optimizer_steps"] == 8 * 2 * 2


@pytest.mark.slow
def test_smoke_ppo_with_lora_and_a_safety_penalty(tmp_path, smoke_rm):
    run = tmp_path / "lora"
    result = run_cli("alignment.stages.ppo", "scale=smoke", f"ppo.policy_path={smoke_rm / 'sft' / 'model'}",
                     f"ppo.reward_path={smoke_rm / 'reward' / 'model'}", "ppo.lora.enabled=true", "ppo.lora.r=4",
                     "ppo.lr=1e-3", "reward_terms.safety_penalty=1.0", f"run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    history, metrics = _final(run)
    assert metrics["lora"] and metrics["safety_penalty"] == 1.0 and metrics["updates"] == 4
    for h in history:
        assert h["reward/safety_penalty"] == pytest.approx(h["safety/p_unsafe"])  # coefficient 1
        assert 0.0 <= h["safety/flagged_fraction"] <= 1.0
    model_dir = run / "ppo" / "model"
    assert not (model_dir / "adapter_config.json").exists()
    assert (run / "ppo" / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(model_dir)
    sft = AutoModelForCausalLM.from_pretrained(smoke_rm / "sft" / "model")
    changed = [n for n, p in merged.state_dict().items() if not torch.equal(p, sft.state_dict()[n])]
    assert changed and all(".self_attn." in n or ".mlp." in n for n in changed), changed  # only adapted layers


@pytest.mark.slow
def test_two_cpu_processes_under_accelerate_launch(tmp_path, smoke_rm):
    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "accelerate.commands.launch",
               "--config_file", str(ROOT / "conf" / "accelerate" / "cpu_2proc.yaml"), "-m", "alignment.stages.ppo",
               "scale=smoke", f"ppo.policy_path={smoke_rm / 'sft' / 'model'}",
               f"ppo.reward_path={smoke_rm / 'reward' / 'model'}", "ppo.save_every=1", f"run.dir={run}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    history, metrics = _final(run)
    # smoke: 32 episodes, 8 prompts per process and update -> 2 updates of 16 episodes
    assert metrics["processes"] == 2 and metrics["updates"] == 2 and history[-1]["episodes"] == 32
    # 2 epochs x 2 mini-batches per update: halfway through the linear decay after update 1 (not at 0:
    # accelerate steps a prepared scheduler once per process)
    assert history[0]["lr"] == pytest.approx(PPOStageConfig().lr / 2)
    checkpoints = sorted((run / "ppo" / "checkpoints").iterdir())
    assert [c.name for c in checkpoints] == ["update-000001", "update-000002"]  # renamed, no .partial-* left
    for checkpoint in checkpoints:
        assert (checkpoint / "random_states_0.pkl").is_file() and (checkpoint / "random_states_1.pkl").is_file()
    assert (run / "ppo" / "model" / "config.json").is_file()
    assert json.loads((run / "ppo" / "safety.json").read_text())["gates"]["passed"]


@pytest.mark.slow
def test_missing_inputs_are_clear_errors(tmp_path):
    result = run_cli("alignment.stages.ppo", "scale=smoke", f"run.dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode == 2 and "ppo.policy_path" in result.stderr and "align-sft" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_prompts_longer_than_the_context_are_rejected(tmp_path, smoke_rm):
    result = run_cli("alignment.stages.ppo", "scale=smoke", f"run.dir={tmp_path / 'run'}",
                     f"ppo.policy_path={smoke_rm / 'sft' / 'model'}", f"ppo.reward_path={smoke_rm / 'reward' / 'model'}",
                     "ppo.generation.max_new_tokens=500", timeout=120)
    assert result.returncode == 2 and "exceed the policy's context" in result.stderr
    assert not (tmp_path / "run").exists()
