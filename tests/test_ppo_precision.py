"""PPO with a real model's settings: a bf16 policy trains on float32 master weights, rollouts sample from
our generation settings alone and stop at any of the model's stop ids, micro-batches accumulate to the
mini-batch's update, and the value model can start from the reward model."""

import json
import shutil

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForSequenceClassification

from alignment.config import PolicyConfig, PPOStageConfig, RewardTermsConfig
from alignment.data.world import DemoWorld
from alignment.modeling import load_policy
from alignment.ppo.trainer import PPOTrainer
from alignment.stages.common import seed_everything

PROMPTS = [p.text for p in DemoWorld(0).prompts("train")]


def short_answer_reward(prompts, texts):
    """A known reward: shorter answers are better (the policy must learn to emit EOS early)."""
    return np.array([-len(t) / 40.0 for t in texts])


def make_trainer(path, cfg: PPOStageConfig, dtype: str = "float32", num_updates: int = 1,
                 terms: RewardTermsConfig | None = None) -> PPOTrainer:
    model, tok = load_policy(PolicyConfig(dtype=dtype), path=str(path))
    return PPOTrainer(cfg, Accelerator(cpu=True), model, str(path), tok, short_answer_reward, 0.0, 1.0, PROMPTS,
                      seed=0, num_updates=num_updates, terms=terms)


@pytest.mark.slow
def test_a_bf16_policy_learns_the_smoke_reward_on_fp32_masters(smoke_sft):
    seed_everything(0)
    cfg = PPOStageConfig(batch_size=16, mini_batch_size=8, ppo_epochs=4, lr=1e-3, value_model="head",
                         mixed_precision="bf16")
    cfg.generation.max_new_tokens = 24
    trainer = make_trainer(smoke_sft / "sft" / "model", cfg, dtype="bfloat16", num_updates=10,
                           terms=RewardTermsConfig(missing_eos_penalty=None))
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}  # masters, value head included
    assert trainer.reference.dtype == torch.bfloat16 and trainer.compute_dtype == torch.bfloat16
    stats = [trainer.step() for _ in range(10)]
    first = np.mean([s["reward/raw"] for s in stats[:3]])
    last = np.mean([s["reward/raw"] for s in stats[-3:]])
    assert last > first + 0.05, f"mean reward did not rise: {first:.3f} -> {last:.3f}"
    assert all(np.isfinite(s["loss/total"]) and s["objective/kl"] < cfg.kl.target for s in stats)


@pytest.mark.slow
def test_fp32_masters_move_under_a_small_lr_where_pure_bf16_adamw_does_not(smoke_sft):
    seed_everything(0)
    cfg = PPOStageConfig(batch_size=8, mini_batch_size=8, ppo_epochs=1, lr=3e-6, value_model="head",
                         mixed_precision="bf16", max_grad_norm=0.0)
    cfg.generation.max_new_tokens = 8
    trainer = make_trainer(smoke_sft / "sft" / "model", cfg, dtype="bfloat16")
    weight = trainer.policy().model.layers[0].mlp.down_proj.weight
    before = weight.detach().clone()
    trainer.step()
    moved = (weight.detach() != before).float().mean().item()
    assert weight.dtype == torch.float32 and moved > 0.9, moved

    # the same first AdamW step on the bf16 weights themselves: the update rounds away almost everywhere
    bf16 = before.to(torch.bfloat16).requires_grad_(True)
    optimizer = torch.optim.AdamW([bf16], lr=3e-6, eps=1e-5)
    bf16.grad = torch.randn_like(bf16)
    optimizer.step()
    assert (bf16.detach() != before.to(torch.bfloat16)).float().mean().item() < 0.2


@pytest.mark.slow
def test_the_models_generation_config_does_not_leak_into_rollouts(smoke_sft, tmp_path):
    source = smoke_sft / "sft" / "model"
    cfg = PPOStageConfig(batch_size=8, mini_batch_size=8, value_model="head")
    cfg.generation.max_new_tokens = 24
    plain = make_trainer(source, cfg)
    torch.manual_seed(0)
    unstopped = plain.rollout(PROMPTS[:8])
    # the two commonest sampled tokens become the model's extra stop ids
    tokens = unstopped.tokens[unstopped.mask & (unstopped.tokens != plain.tokenizer.eos_token_id)]
    a, b = torch.bincount(tokens).topk(2).indices.tolist()

    leaky = tmp_path / "model"
    shutil.copytree(source, leaky)
    gen_file = leaky / "generation_config.json"
    settings = json.loads(gen_file.read_text())
    settings.update(eos_token_id=[a, b], repetition_penalty=1.3, no_repeat_ngram_size=2, min_p=0.2, top_k=5,
                    do_sample=False)
    gen_file.write_text(json.dumps(settings))
    leaky_trainer = make_trainer(leaky, cfg)
    assert set(leaky_trainer.stop_ids) == {a, b, plain.tokenizer.eos_token_id}
    torch.manual_seed(0)
    rollout = leaky_trainer.rollout(PROMPTS[:8])

    # the same model with the same stop ids and no generation settings of its own samples the same tokens
    plain.policy().generation_config.eos_token_id = [a, b]
    plain.stop_ids = leaky_trainer.stop_ids
    torch.manual_seed(0)
    expected = plain.rollout(PROMPTS[:8])
    assert torch.equal(rollout.tokens, expected.tokens) and torch.equal(rollout.mask, expected.mask)
    # and every answer ends at the first of any stop id, both extra ids among the endings
    lengths = rollout.mask.sum(1)
    last = rollout.tokens[torch.arange(8), lengths - 1]
    ends = {t for t, stopped in zip(last.tolist(), rollout.has_eos.tolist()) if stopped}
    assert {a, b} <= ends, (a, b, ends)
    for row, n in zip(rollout.tokens.tolist(), lengths.tolist()):
        assert not set(row[:n - 1]) & set(leaky_trainer.stop_ids)


@pytest.mark.slow
def test_micro_batches_accumulate_to_the_mini_batchs_update(smoke_sft):
    path = smoke_sft / "sft" / "model"
    updated = []
    rollout = None
    for micro in (0, 2, 1):
        seed_everything(0)
        cfg = PPOStageConfig(batch_size=8, mini_batch_size=4, micro_batch_size=micro, ppo_epochs=2, lr=1e-3,
                             value_model="separate")
        cfg.generation.max_new_tokens = 12
        trainer = make_trainer(path, cfg)
        if rollout is None:
            rollout = trainer.rollout(PROMPTS[:8])
        advantages, returns = trainer.advantages(rollout, trainer.rewards(rollout))
        torch.manual_seed(1)
        losses = trainer.ppo_epochs(rollout, advantages, returns)
        updated.append((torch.cat([p.detach().flatten() for p in trainer.model.parameters()]), losses))
    (whole, whole_losses), *sliced = updated
    for params, losses in sliced:
        assert (params - whole).abs().max().item() < 1e-5
        for key in ("loss/total", "policy/clipfrac", "policy/entropy"):
            assert losses[key].item() == pytest.approx(whole_losses[key].item(), abs=1e-5)


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_update(smoke_sft):
    path = smoke_sft / "sft" / "model"
    params = []
    for checkpointing in (False, True):
        seed_everything(0)
        cfg = PPOStageConfig(batch_size=4, mini_batch_size=2, ppo_epochs=1, value_model="separate",
                             gradient_checkpointing=checkpointing)
        cfg.generation.max_new_tokens = 8
        trainer = make_trainer(path, cfg)
        assert trainer.policy().is_activation_checkpointing == checkpointing
        trainer.step()
        params.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    assert (params[0] - params[1]).abs().max().item() < 1e-5


@pytest.mark.slow
def test_the_value_model_can_start_from_the_reward_model(smoke_rm):
    reward_path = smoke_rm / "reward" / "model"
    cfg = PPOStageConfig(batch_size=4, mini_batch_size=4, value_init="reward", reward_path=str(reward_path))
    trainer = make_trainer(smoke_rm / "sft" / "model", cfg)
    reward = AutoModelForSequenceClassification.from_pretrained(reward_path, num_labels=1)
    value = trainer.accelerator.unwrap_model(trainer.model)
    assert torch.equal(value.value_head.weight, reward.score.weight)
    for name, param in reward.base_model.state_dict().items():
        assert torch.equal(value.value_backbone.state_dict()[name], param), name
