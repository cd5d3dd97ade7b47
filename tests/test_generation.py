"""The sampler every stage uses (:func:`alignment.generation.sample_tokens`) against ``model.generate`` and
against the distribution whose log-probs PPO computes."""

import pytest
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from alignment.generation import sample_tokens

PAD, STOPS, TEMPERATURE = 0, [1, 2], 0.7


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    """A random Llama with input-dependent logits (a wide initialisation: attending to a pad moves them by
    several nats) whose temperature-0.7 answers reach a stop id within a few steps."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=PAD, eos_token_id=STOPS, bos_token_id=None, initializer_range=0.3)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight[STOPS] += 1.0  # every row stops after a few tokens, not at once
    return model


def left_padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids, mask = torch.full((len(rows), width), PAD), torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):], mask[i, width - len(row):] = torch.tensor(row), 1
    return ids, mask


def prompts(n: int, lengths: list[int]) -> list[list[int]]:
    gen = torch.Generator().manual_seed(n)
    return [torch.randint(3, 40, (lengths[i % len(lengths)],), generator=gen).tolist() for i in range(n)]


@torch.no_grad()
def reference_sampler(model, ids, mask, max_new_tokens: int) -> torch.Tensor:
    """Sampling without a cache: the whole prompt + response through the model at every step, with the
    positions PPO's log-prob forward uses (``cumsum(mask) - 1``), then ``multinomial(softmax(logits / T))``."""
    out, unfinished = [], torch.ones(len(ids), dtype=torch.bool)
    for _ in range(max_new_tokens):
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
        token = torch.multinomial(torch.softmax(logits.float() / TEMPERATURE, -1), 1).squeeze(1)
        token = torch.where(unfinished, token, PAD)
        out.append(token)
        unfinished &= ~torch.isin(token, torch.tensor(STOPS))
        ids, mask = torch.cat([ids, token[:, None]], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        if not unfinished.any():
            break
    return torch.stack(out, 1)


def generate(model, ids, mask, max_new_tokens: int, **sampling) -> torch.Tensor:
    """``model.generate``'s answer ids, every other setting at its neutral default."""
    config = transformers.GenerationConfig(**{
        **transformers.GenerationConfig._get_default_generation_params(), "max_new_tokens": max_new_tokens,
        "max_length": None, "eos_token_id": STOPS, "pad_token_id": PAD, "bos_token_id": None, **sampling})
    return model.generate(input_ids=ids, attention_mask=mask, generation_config=config)[:, ids.size(1):]


@pytest.mark.parametrize("sampling", [
    {"temperature": TEMPERATURE},
    {"temperature": TEMPERATURE, "top_k": 5},
    {"temperature": 1.3, "top_p": 0.6},
    {"temperature": TEMPERATURE, "top_k": 8, "top_p": 0.8},
    {"temperature": 0.0},  # greedy
], ids=["temperature", "top_k", "top_p", "top_k_and_top_p", "greedy"])
def test_samples_what_generate_samples_for_the_same_seed(model, sampling):
    ids, mask = left_padded(prompts(12, [7]))
    greedy = sampling["temperature"] <= 0
    expected_settings = {"do_sample": not greedy, **({} if greedy else {"top_k": 0, **sampling})}
    torch.manual_seed(3)
    expected = generate(model, ids, mask, 10, **expected_settings)
    torch.manual_seed(3)
    got = sample_tokens(model, ids, mask, 10, sampling["temperature"], STOPS, PAD, sampling.get("top_k", 0),
                        sampling.get("top_p", 1.0))
    assert torch.equal(got, expected)
    if not greedy:  # the draw is random: another seed gives other answers
        torch.manual_seed(4)
        assert not torch.equal(sample_tokens(model, ids, mask, 10, sampling["temperature"], STOPS, PAD,
                                             sampling.get("top_k", 0), sampling.get("top_p", 1.0)), expected)


def test_left_padded_rows_sample_the_distribution_of_ppos_log_probs(model):
    # rows of different lengths: the cached steps see the same logits as a full forward with PPO's positions
    ids, mask = left_padded(prompts(12, [3, 9, 5, 12]))
    torch.manual_seed(4)
    got = sample_tokens(model, ids, mask, 10, TEMPERATURE, STOPS, PAD)
    torch.manual_seed(4)
    assert torch.equal(got, reference_sampler(model, ids, mask, 10))


def test_rows_stop_at_any_stop_id_and_pad_after_it(model):
    ids, mask = left_padded(prompts(16, [4, 6]))
    torch.manual_seed(5)
    got = sample_tokens(model, ids, mask, 24, TEMPERATURE, STOPS, PAD)
    ended = {}
    for row in got.tolist():
        stop = next((i for i, t in enumerate(row) if t in STOPS), None)
        if stop is not None:
            ended[row[stop]] = True
            assert all(t == PAD for t in row[stop + 1:]), row
    assert set(ended) == set(STOPS)  # both stop ids end answers
    # every row stopped, so the loop ended at the step of the last row's stop, before the length limit
    assert len(ended) and got.size(1) < 24 and all(any(t in STOPS for t in row) for row in got.tolist())
    assert any(t in STOPS for t in got[:, -1].tolist())
