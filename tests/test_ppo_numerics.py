"""PPO numerics at a real model's shape: log-probs and entropy in float32 chunks, the k3 clamp, advantage
whitening over all processes, and the config's refusal of samplers the log-probs cannot follow."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from alignment.config import PPOStageConfig
from alignment.errors import UserError
from alignment.ppo.kl import K3_CLAMP, kl_k3, per_token_kl
from alignment.ppo.losses import entropy_from_logits
from alignment.ppo.rollout_math import logprobs_and_entropy, logprobs_from_logits, masked_whiten


def full_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """The reference computation: the whole float32 log-softmax, gathered."""
    return torch.log_softmax(logits.float() / temperature, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("chunk", [1, 3, 5, 1024])
def test_chunked_logprobs_equal_the_full_computation(chunk):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 97, generator=gen) * 4
    tokens = torch.randint(0, 97, (3, 5), generator=gen)
    for temperature in (1.0, 0.7):
        out = logprobs_from_logits(logits, tokens, temperature, chunk=chunk)
        torch.testing.assert_close(out, full_logprobs(logits, tokens, temperature), rtol=0, atol=1e-5)
    # a model's response logits are a non-contiguous slice: same values, and gradients flow through
    sliced = torch.randn(3, 7, 97, generator=gen).requires_grad_(True)
    out = logprobs_from_logits(sliced[:, 1:-1], tokens, 0.7, chunk=chunk)
    torch.testing.assert_close(out, full_logprobs(sliced[:, 1:-1], tokens, 0.7), rtol=0, atol=1e-5)
    out.sum().backward()
    assert sliced.grad is not None and torch.isfinite(sliced.grad).all()


@pytest.mark.parametrize("chunk", [1, 4, 10, 1024])
def test_chunked_logprobs_have_the_gradient_of_the_full_computation(chunk):
    # chunks of whole rows (4, 10, 1024 positions over rows of 5) and of pieces of one row (1)
    gen = torch.Generator().manual_seed(3)
    base = (torch.randn(3, 7, 97, generator=gen) * 4).requires_grad_(True)
    tokens = torch.randint(0, 97, (3, 5), generator=gen)
    weights = torch.randn(3, 5, generator=gen)  # a loss that weighs each position differently
    for temperature in (1.0, 0.7):
        (logprobs_from_logits(base[:, 1:-1], tokens, temperature, chunk=chunk) * weights).sum().backward()
        ours, base.grad = base.grad, None
        (full_logprobs(base[:, 1:-1], tokens, temperature) * weights).sum().backward()
        torch.testing.assert_close(ours, base.grad, rtol=0, atol=1e-6)
        base.grad = None
    half = base.detach().to(torch.bfloat16).requires_grad_(True)
    logprobs_from_logits(half[:, 1:-1], tokens, 0.7, chunk=chunk).sum().backward()
    assert half.grad.dtype == torch.bfloat16 and half.grad[:, [0, -1]].eq(0).all()


def test_bf16_logits_are_divided_by_the_temperature_in_float32():
    # bf16 logits of a wide range: dividing them in bf16 rounds each to 8 bits of mantissa
    gen = torch.Generator().manual_seed(1)
    logits = (torch.randn(2, 6, 1000, generator=gen) * 8).to(torch.bfloat16)
    tokens = torch.randint(0, 1000, (2, 6), generator=gen)
    out = logprobs_from_logits(logits, tokens, temperature=0.7, chunk=4)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, full_logprobs(logits, tokens, 0.7), rtol=0, atol=1e-5)


def test_chunked_entropy_equals_the_full_computation():
    gen = torch.Generator().manual_seed(2)
    logits = (torch.randn(2, 9, 50, generator=gen) * 3).to(torch.bfloat16)
    scaled = logits.float() / 0.7
    full = -(torch.softmax(scaled, -1) * torch.log_softmax(scaled, -1)).sum(-1)
    torch.testing.assert_close(entropy_from_logits(logits, 0.7, chunk=4), full, rtol=0, atol=1e-5)
    assert entropy_from_logits(torch.zeros(4)).item() == pytest.approx(math.log(4))


@pytest.mark.parametrize("chunk", [4, 1000])
def test_the_log_probs_pass_gives_the_entropy_and_the_same_log_probs_and_gradient(chunk):
    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(2, 9, 50, generator=gen) * 3).to(torch.bfloat16).float().requires_grad_()
    tokens = torch.randint(0, 50, (2, 9), generator=gen)
    weights = torch.randn(2, 9, generator=gen)
    logprobs, entropy = logprobs_and_entropy(logits, tokens, 0.7, chunk=chunk)
    (logprobs * weights).sum().backward()
    fused_grad, logits.grad = logits.grad, None
    (logprobs_from_logits(logits, tokens, 0.7, chunk=chunk) * weights).sum().backward()
    torch.testing.assert_close(logprobs, full_logprobs(logits.detach(), tokens, 0.7), rtol=0, atol=1e-5)
    torch.testing.assert_close(fused_grad, logits.grad, rtol=0, atol=1e-7)
    scaled = logits.detach() / 0.7
    full = -(torch.softmax(scaled, -1) * torch.log_softmax(scaled, -1)).sum(-1)
    torch.testing.assert_close(entropy, full, rtol=0, atol=1e-5)
    assert not entropy.requires_grad
    assert logprobs_and_entropy(logits, tokens, 0.7, chunk=chunk, entropy=False)[1] is None


def test_k3_is_clamped_per_token():
    logp = torch.log(torch.tensor([[0.5, 1e-12, 0.9, 0.5]]))
    ref = torch.log(torch.tensor([[0.25, 0.9, 1e-30, 0.5]]))
    kl = kl_k3(logp, ref)
    # in range: exactly the estimator (r = 0.5: ln2 - 0.5); r = 9e11 would cost ~9e11 nats: clamped
    assert kl[0, 0].item() == pytest.approx(math.log(2) - 0.5, abs=1e-6)
    assert kl[0, 1].item() == K3_CLAMP == 10.0
    # r -> 0 (log r = -62, clamped to -20): large but finite, and within the clamp
    assert 0 < kl[0, 2].item() <= K3_CLAMP and kl[0, 3].item() == 0.0
    mask = torch.tensor([[True, True, True, False]])
    assert per_token_kl(logp, ref, "k3", mask).max().item() <= K3_CLAMP


def test_whitening_through_an_identity_reduction_is_the_per_process_whitening():
    x = torch.tensor([[1.0, 3.0, 2.5], [5.0, 42.0, -1.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    for shift in (True, False):
        torch.testing.assert_close(masked_whiten(x, mask, shift, reduce_sum=lambda t: t), masked_whiten(x, mask, shift))


def _whiten_on_two_processes(rank: int, init_file: str, halves: list, result: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        values, mask = halves[rank]

        def reduce_sum(t: torch.Tensor) -> torch.Tensor:
            t = t.clone()
            dist.all_reduce(t)
            return t

        result[rank] = masked_whiten(values, mask, reduce_sum=reduce_sum)
    finally:
        dist.destroy_process_group()


def test_advantages_are_whitened_over_all_processes(tmp_path):
    gen = torch.Generator().manual_seed(3)
    values = torch.randn(6, 5, generator=gen) * 3 + 1
    values[3:] += 4  # the second process's rows differ in mean: per-process whitening would not match
    mask = torch.arange(5) < torch.tensor([[5], [2], [4], [1], [5], [3]])
    halves = [(values[:3], mask[:3]), (values[3:], mask[3:])]
    with mp.Manager() as manager:
        result = manager.dict()
        mp.spawn(_whiten_on_two_processes, args=(str(tmp_path / "rendezvous"), halves, result), nprocs=2)
        together = torch.cat([result[0], result[1]])
    torch.testing.assert_close(together, masked_whiten(values, mask), rtol=0, atol=1e-6)


def test_ppo_refuses_truncated_samplers_and_checks_the_micro_batch():
    cfg = PPOStageConfig()
    cfg.generation.top_k = 50
    with pytest.raises(UserError, match="ppo.generation.top_k=50"):
        cfg.__post_init__()
    cfg.generation.top_k, cfg.generation.top_p = 0, 0.9
    with pytest.raises(UserError, match="ppo.generation.top_p=0.9"):
        cfg.__post_init__()
    with pytest.raises(UserError, match="ppo.micro_batch_size=3"):
        PPOStageConfig(mini_batch_size=16, micro_batch_size=3)
    assert PPOStageConfig(mini_batch_size=16, micro_batch_size=4).micro_batch == 4
    assert PPOStageConfig(mini_batch_size=16).micro_batch == 16
    with pytest.raises(UserError, match="ppo.value_init"):
        PPOStageConfig(value_model="head", value_init="reward")


def test_scale_full_sets_ppo_for_a_real_chat_model():
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from alignment.config import register_configs

    register_configs()
    conf = Path(__file__).resolve().parent.parent / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        ppo = OmegaConf.to_object(compose(config_name="ppo", overrides=["scale=full"])).ppo
    assert ppo.mixed_precision == "bf16" and ppo.gradient_checkpointing
    assert ppo.micro_batch < ppo.mini_batch_size <= ppo.batch_size and ppo.lr <= 1e-5
    assert ppo.generation.max_new_tokens >= 128 and ppo.generation.temperature < 1.0


def test_the_policy_and_value_module_names_its_decoder_layers_for_fsdp():
    from accelerate.utils.dataclasses import get_module_class_from_name
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel

    from alignment.ppo.modules import PolicyAndValue

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    module = PolicyAndValue(LlamaForCausalLM(config), LlamaModel(config))
    assert module._no_split_modules == ["LlamaDecoderLayer"]
    assert get_module_class_from_name(module, "LlamaDecoderLayer") is not None
