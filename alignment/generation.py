"""Batched sampling from a chat policy: what SFT samples, candidates and safety evals all call."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from alignment.config import GenerationConfig
from alignment.data.preferences import conversation_text


@dataclass(frozen=True)
class Sample:
    prompt: str
    text: str
    #: Whether the policy ended its answer with EOS within ``max_new_tokens``.
    ended: bool
    n_tokens: int


def device_for(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Every id that ends an answer: the model's ``generation_config.eos_token_id`` (a list for Qwen2.5
    and Llama-3, which stop on end-of-turn as well as end-of-text) and the tokenizer's EOS."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(ids))


def sampling_config(gen: GenerationConfig, stop_ids: list[int], pad_token_id: int) -> transformers.GenerationConfig:
    """A ``transformers.GenerationConfig`` built from ``gen`` alone: every setting that shapes the
    sampled distribution is spelled out at its neutral value (no repetition penalty, min-p, n-gram
    ban, forced or suppressed tokens...), so nothing a model's ``generation_config.json`` sets can
    change what is sampled. ``temperature <= 0`` is greedy decoding.
    """
    sample = gen.temperature > 0
    neutral = transformers.GenerationConfig._get_default_generation_params()
    return transformers.GenerationConfig(**{
        **neutral,
        "max_new_tokens": gen.max_new_tokens, "do_sample": sample,
        # greedy decoding ignores the sampler's settings: the defaults keep transformers from warning
        **({"temperature": gen.temperature, "top_k": gen.top_k, "top_p": gen.top_p} if sample else {}),
        "max_length": None,  # max_new_tokens decides
        "eos_token_id": stop_ids, "pad_token_id": pad_token_id, "bos_token_id": None,
    })


@contextlib.contextmanager
def own_generation_config(model: PreTrainedModel, config: transformers.GenerationConfig) -> Iterator[None]:
    """``model.generation_config`` is ``config`` for the ``with`` block.

    ``generate(generation_config=...)`` still fills the settings left unset (``None``, such as
    ``min_p`` or ``suppress_tokens``) from the model's own ``generation_config``; with ours in its
    place for the call, nothing of the model's file reaches the sampler.
    """
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model  # peft
    saved = base.generation_config
    base.generation_config = config
    try:
        yield
    finally:
        base.generation_config = saved


def generate(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
             config: transformers.GenerationConfig) -> torch.Tensor:
    """``model.generate`` under ``config`` alone (:func:`own_generation_config`)."""
    with own_generation_config(model, config):
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)


@functools.cache
def _forward_takes_logits_to_keep(model_class: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def logits_to_keep_kwargs(model: torch.nn.Module, keep: int | torch.Tensor) -> dict[str, int | torch.Tensor]:
    """``{"logits_to_keep": keep}`` when the causal LM (under peft, its base model) takes it, else ``{}``:
    the LM head then runs over the last ``keep`` positions only, or the positions a 1-D tensor lists."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model  # peft
    return {"logits_to_keep": keep} if _forward_takes_logits_to_keep(type(base)) else {}


def sample_tokens(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  max_new_tokens: int, temperature: float, stop_ids: Sequence[int], pad_token_id: int) -> torch.Tensor:
    """``[batch, <= max_new_tokens]`` response ids drawn from ``softmax(logits / temperature)`` of a
    left-padded batch, each row padded after its first stop id; stops when every row has stopped.

    What PPO rollouts sample with, instead of ``model.generate``: the same draw (the float32 logits
    divided by the temperature, ``softmax``, one ``torch.multinomial`` per step, finished rows set to
    pad, as ``generate``'s sampling loop) without ``generate``'s per-step machinery (logits processors,
    stopping criteria, input preparation, mask concatenation), which costs as much as the forward of a
    small policy; the prompt's LM head runs at its last position only. Positions skip the left
    padding (``cumsum(mask) - 1``), as the forward that recomputes the rollout's log-probs, so the
    tokens are drawn from exactly the distribution whose log-probs PPO uses (transformers 5's
    ``generate`` numbers a padded row's positions from the first pad instead).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to sample, got {temperature}")
    batch, width = input_ids.shape
    device = input_ids.device
    # the whole attention mask once: each step's mask is a view of its first columns
    attention = torch.cat([attention_mask.long(), attention_mask.new_ones(batch, max_new_tokens, dtype=torch.long)], 1)
    positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
    next_position = positions[:, -1:] + 1
    out = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    stops = torch.tensor(list(stop_ids), device=device)
    unfinished = torch.ones(batch, dtype=torch.bool, device=device)
    cache = DynamicCache(config=model.config)
    step_ids, keep = input_ids, logits_to_keep_kwargs(model, 1)
    for t in range(max_new_tokens):
        logits = model(input_ids=step_ids, attention_mask=attention[:, :width + t], position_ids=positions,
                       cache=cache, use_cache=True, **keep).logits[:, -1]
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        token = torch.where(unfinished, torch.multinomial(probs, num_samples=1).squeeze(1), pad_token_id)
        out[:, t] = token
        unfinished &= ~torch.isin(token, stops)
        if not unfinished.any():
            return out[:, :t + 1]
        step_ids, positions = token.unsqueeze(1), next_position + t
    return out


def chat_prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: str | list[dict]) -> list[int]:
    """Token ids of a chat ending with the assistant's generation prompt: a one-turn chat for a string,
    the policy's own chat template over the messages for a conversation."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)


@torch.no_grad()
def sample_responses(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str | list[dict]],
                     gen: GenerationConfig, seed: int = 0, desc: str = "sampling") -> list[Sample]:
    """One sampled answer per prompt (repeat a prompt in ``prompts`` for several), in input order.
    A prompt is a user message's text or a conversation (chat messages ending with the user's turn).

    Prompts are left-padded so every row's answer starts at the same column; the answer is cut at
    its first EOS. Rows are batched in order of length to waste little compute on padding.
    """
    if not prompts:
        return []
    was_training = model.training
    model.eval()
    device = device_for(model)
    torch.manual_seed(seed)
    stop, pad = stop_token_ids(model, tokenizer), tokenizer.pad_token_id
    config = sampling_config(gen, stop, pad)
    encoded = [chat_prompt_ids(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[Sample | None] = [None] * len(prompts)
    for start in tqdm(range(0, len(order), gen.batch_size), desc=desc, unit="batch", leave=False):
        rows = order[start:start + gen.batch_size]
        width = max(len(encoded[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            ids = encoded[i]
            input_ids[r, width - len(ids):] = torch.tensor(ids)
            attention[r, width - len(ids):] = 1
        out = generate(model, input_ids.to(device), attention.to(device), config)[:, width:].cpu()
        for r, i in enumerate(rows):
            tokens = out[r].tolist()
            end = next((n for n, t in enumerate(tokens) if t in stop), None)
            ended = end is not None
            tokens = tokens[:end] if ended else tokens
            prompt = prompts[i] if isinstance(prompts[i], str) else conversation_text(prompts[i])
            results[i] = Sample(prompt=prompt, text=tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                                ended=ended, n_tokens=len(tokens) + int(ended))
    model.train(was_training)
    return results  # type: ignore[return-value]


def answer_summary(samples: list[Sample]) -> dict:
    """What can be said of answers without any reward: how many, how long, how often they end with EOS."""
    if not samples:
        return {"n": 0}
    return {"n": len(samples), "eos_rate": float(np.mean([s.ended for s in samples])),
            "mean_tokens": float(np.mean([s.n_tokens for s in samples]))}
