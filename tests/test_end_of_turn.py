"""Chat models stop at their chat template's end of turn, even when their generation config lists only
end-of-text: our sampler, PPO's rollout and TRL's sampler in GRPO/RLOO, with tokenizers laid out as
Qwen2.5's and Llama-3's (their original chat templates and special tokens, built offline:
:mod:`chat_models`). The answer's text never includes the end-of-turn token."""

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from chat_models import ANSWER, STYLES, chat_tokenizer, scripted_chat_model
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from alignment.config import GenerationConfig, PPOStageConfig
from alignment.generation import end_of_turn_ids, sample_responses, stop_token_ids
from alignment.modeling import CHAT_TEMPLATE, ensure_pad_token, train_tokenizer
from alignment.stages.group_rl import stop_at_end_of_turn

STYLE_NAMES = list(STYLES)
MULTI_TURN = [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris"},
              {"role": "user", "content": "Tell me a joke"}]


def chat_model(style: str):
    tokenizer = chat_tokenizer(style)
    ensure_pad_token(tokenizer, style)  # no pad of their own: the EOS, as for the real ones
    return scripted_chat_model(tokenizer, style), tokenizer


def end_of_turn(tokenizer, style: str) -> int:
    return tokenizer.convert_tokens_to_ids(STYLES[style]["end_of_turn"])


@pytest.mark.parametrize("style", STYLE_NAMES)
def test_the_stop_ids_include_the_chat_templates_end_of_turn(style):
    model, tokenizer = chat_model(style)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id  # the trap: end-of-text only
    assert end_of_turn_ids(tokenizer) == [end_of_turn(tokenizer, style)]
    assert set(stop_token_ids(model, tokenizer)) == {tokenizer.eos_token_id, end_of_turn(tokenizer, style)}


def test_the_tiny_policys_end_of_turn_is_its_eos_and_a_template_without_one_adds_nothing():
    tokenizer = train_tokenizer(["hello world"] * 10, 300)
    assert tokenizer.chat_template == CHAT_TEMPLATE and end_of_turn_ids(tokenizer) == [tokenizer.eos_token_id]
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n\n{% endfor %}"
    assert end_of_turn_ids(tokenizer) == []  # plain text after the answer is no stop id


@pytest.mark.parametrize("style", STYLE_NAMES)
def test_sampling_stops_at_the_end_of_turn_and_the_text_excludes_it(style):
    model, tokenizer = chat_model(style)
    gen = GenerationConfig(max_new_tokens=16, temperature=1.0, batch_size=4)
    samples = sample_responses(model, tokenizer, ["Hi", MULTI_TURN, "Tell me a joke"], gen, seed=0)
    n_answer = len(tokenizer(ANSWER, add_special_tokens=False)["input_ids"])
    for s in samples:
        assert (s.text, s.ended, s.n_tokens) == (ANSWER, True, n_answer + 1), s
        assert s.stop_id == end_of_turn(tokenizer, style)


@pytest.mark.parametrize("style", STYLE_NAMES)
def test_a_ppo_rollout_stops_at_the_end_of_turn(style, tmp_path):
    from alignment.ppo.trainer import PPOTrainer

    model, tokenizer = chat_model(style)
    cfg = PPOStageConfig(batch_size=4, mini_batch_size=4, value_model="head")
    cfg.generation.max_new_tokens = 16
    trainer = PPOTrainer(cfg, Accelerator(cpu=True), model, str(tmp_path), tokenizer, lambda p, t: np.zeros(len(t)),
                         0.0, 1.0, ["Hi", "Tell me a joke"], seed=0, num_updates=1)
    rollout = trainer.rollout(["Hi", "Tell me a joke", MULTI_TURN[-1]["content"], "Hi"])
    assert rollout.has_eos.all() and rollout.texts == [ANSWER] * 4
    lengths = rollout.mask.sum(1)
    assert torch.equal(rollout.tokens[torch.arange(4), lengths - 1], torch.full((4,), end_of_turn(tokenizer, style)))


@pytest.mark.slow
@pytest.mark.parametrize("style", STYLE_NAMES)
def test_trls_grpo_sampler_stops_at_the_end_of_turn(style, tmp_path):
    model, tokenizer = chat_model(style)
    assert end_of_turn(tokenizer, style) in stop_at_end_of_turn(model, tokenizer)
    seen = []

    def record(completions, completion_ids, **_):
        seen.extend((c[-1]["content"], ids) for c, ids in zip(completions, completion_ids))
        return [0.0] * len(completions)

    args = GRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=16, use_cpu=True, bf16=False, report_to=[], logging_steps=1,
                      save_strategy="no", temperature=1.0)
    prompts = Dataset.from_list([{"prompt": [{"role": "user", "content": "Hi"}]}] * 4)
    GRPOTrainer(model=model, reward_funcs=[record], args=args, train_dataset=prompts, processing_class=tokenizer).train()
    assert seen and all(text.strip() == ANSWER for text, _ in seen), seen
    assert all(ids[-1] == end_of_turn(tokenizer, style) for _, ids in seen), seen
