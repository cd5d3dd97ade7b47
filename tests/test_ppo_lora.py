"""LoRA PPO: only the adapters train, the reference is the base policy itself (no second copy), the
saved policy is a plain merged model, and a checkpoint resumes exactly."""

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM

from alignment.config import PolicyConfig, PPOStageConfig, RewardTermsConfig
from alignment.data.world import DemoWorld
from alignment.modeling import load_policy
from alignment.ppo.modules import full_inputs, response_logits
from alignment.ppo.rollout_math import logprobs_from_logits
from alignment.ppo.trainer import PPOTrainer
from alignment.stages.common import seed_everything


def short_answer_reward(prompts, texts):
    return np.array([-len(t) / 40.0 for t in texts])


def lora_trainer(policy_path: str) -> PPOTrainer:
    seed_everything(0)
    cfg = PPOStageConfig(batch_size=8, mini_batch_size=4, ppo_epochs=2, lr=5e-3, value_model="separate")
    cfg.lora.enabled, cfg.lora.r = True, 4
    cfg.generation.max_new_tokens = 12
    model, tok = load_policy(PolicyConfig(), path=policy_path)
    return PPOTrainer(cfg, Accelerator(cpu=True), model, policy_path, tok, short_answer_reward, 0.0, 1.0,
                      [p.text for p in DemoWorld(0).prompts("train")], seed=0, num_updates=4,
                      terms=RewardTermsConfig(missing_eos_penalty=None))


@pytest.mark.slow
def test_lora_trains_adapters_only_against_the_base_policy_and_exports_a_merged_model(smoke_sft, tmp_path):
    path = str(smoke_sft / "sft" / "model")
    trainer = lora_trainer(path)
    # no second copy of the policy: no reference module, the trained module is the only one held
    assert trainer.reference is None
    assert [k for k, v in vars(trainer).items() if isinstance(v, torch.nn.Module)] == ["model"]
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or n.startswith("value_head.") for n in trainable), trainable
    assert any(n.startswith("policy.") for n in trainable) and any(n.startswith("value_backbone.") for n in trainable)
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    assert len(trainer.optimizer.param_groups[0]["params"]) == len(trainable)

    for _ in range(2):
        trainer.step()
    for n, p in trainer.model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, frozen[n]), f"base weight {n} changed"

    # the rollout's reference log-probs are the untouched base model's; the policy's have moved
    base = AutoModelForCausalLM.from_pretrained(path)
    r = trainer.rollout(trainer.batch_prompts(2))
    ids, attention, positions = full_inputs(r.prompt_ids, r.prompt_mask, r.tokens, r.mask)
    temperature = trainer.cfg.generation.temperature
    with torch.no_grad():
        base_logits, _ = response_logits(base, ids, attention, positions, r.tokens.size(1))
        live_logits, _ = response_logits(trainer.policy(), ids, attention, positions, r.tokens.size(1))
    torch.testing.assert_close(r.ref_logprobs[r.mask], logprobs_from_logits(base_logits, r.tokens, temperature)[r.mask],
                               atol=1e-5, rtol=0)
    assert (r.logprobs - r.ref_logprobs)[r.mask].abs().max() > 1e-3, "the adapters did not change the policy"

    # the saved policy is a plain transformers model with the adapters merged in
    trainer.export_policy(trainer.gather_policy()).save_pretrained(tmp_path / "model")
    assert not (tmp_path / "model" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    with torch.no_grad():
        merged_logits, _ = response_logits(merged, ids, attention, positions, r.tokens.size(1))
    torch.testing.assert_close(merged_logits, live_logits, atol=1e-4, rtol=0)
    assert any("lora_" in n for n, _ in trainer.policy().named_parameters()), "export merged the live policy"
    trainer.save_adapter(trainer.gather_policy(), tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_lora_checkpoint_resumes_exactly(smoke_sft, tmp_path):
    path = str(smoke_sft / "sft" / "model")
    first = lora_trainer(path)
    for _ in range(2):
        first.step()
    first.save_checkpoint(tmp_path)
    expected = [first.step(), first.step()]

    resumed = lora_trainer(path)
    resumed.load_checkpoint(tmp_path / "update-000002")
    got = [resumed.step(), resumed.step()]
    for a, b in zip(expected, got):
        for key in ("reward/raw", "objective/kl", "loss/total", "policy/approxkl", "value/mean"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (a["update"], key)
