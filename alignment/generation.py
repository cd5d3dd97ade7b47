"""Batched sampling from a chat policy: what SFT samples, candidates and safety evals all call."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from alignment.config import GenerationConfig
from alignment.data.preferences import conversation_text


@dataclass(frozen=True)
class Sample:
    prompt: str
    text: str
    #: Whether the policy ended its answer with a stop id (:func:`stop_token_ids`) within ``max_new_tokens``.
    ended: bool
    n_tokens: int
    #: The stop id that ended it (not part of ``text``), ``None`` when it did not end.
    stop_id: int | None = None


def device_for(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Every id that ends an answer: the model's ``generation_config.eos_token_id`` (a list for Qwen2.5
    and Llama-3 instruct models), the tokenizer's EOS, and the token its chat template closes an
    assistant turn with (:func:`end_of_turn_ids`), which a checkpoint's generation config may not list."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys([*ids, *end_of_turn_ids(tokenizer)]))


#: An assistant turn's content when rendering one to find what the template writes after it.
_TURN_PROBE = "Probe"


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The special token the chat template writes right after an assistant's answer (Qwen2.5's
    ``<|im_end|>``, Llama-3's ``<|eot_id|>``, the tiny policy's ``<|end|>``), or ``[]`` when the template
    writes none (or cannot render a user and an assistant turn).

    A model trained on the template ends its answers with it, whatever its generation config says:
    base checkpoints list only their end-of-text there, and sampling would run to the length limit.
    """
    if tokenizer.chat_template is None:
        return []
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _TURN_PROBE}]
    try:
        text = tokenizer.apply_chat_template(chat, tokenize=False)
    except Exception:  # a template that raises on this conversation (jinja's raise_exception): nothing to learn
        return []
    after = text[text.rfind(_TURN_PROBE) + len(_TURN_PROBE):]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"][:1]
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    return [i for i in ids if i in special]


@functools.cache
def _forward_takes_logits_to_keep(model_class: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def logits_to_keep_kwargs(model: torch.nn.Module, keep: int | torch.Tensor) -> dict[str, int | torch.Tensor]:
    """``{"logits_to_keep": keep}`` when the causal LM (under peft, its base model) takes it, else ``{}``:
    the LM head then runs over the last ``keep`` positions only, or the positions a 1-D tensor lists."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model  # peft
    return {"logits_to_keep": keep} if _forward_takes_logits_to_keep(type(base)) else {}


def next_token(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """One token per row drawn from ``softmax(logits / temperature)`` restricted to the ``top_k`` most
    likely tokens and then to the smallest set whose probability reaches ``top_p`` (``0`` and ``1.0``
    restrict nothing), the order and ties of ``generate``'s warpers; ``temperature <= 0`` takes the argmax."""
    if temperature <= 0:
        return logits.argmax(-1)
    scores = logits.float() / temperature
    if top_k > 0:
        kth = torch.topk(scores, min(top_k, scores.size(-1)), dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, -float("inf"))
    if top_p < 1.0:
        ascending, order = torch.sort(scores, descending=False)
        drop = ascending.softmax(-1).cumsum(-1) <= 1 - top_p
        drop[..., -1:] = False  # the most likely token always stays
        scores = scores.masked_fill(drop.scatter(-1, order, drop), -float("inf"))
    return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)


@torch.no_grad()
def sample_tokens(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  max_new_tokens: int, temperature: float, stop_ids: Sequence[int], pad_token_id: int,
                  top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """``[batch, <= max_new_tokens]`` response ids of a left-padded batch (:func:`next_token` at each
    step), each row padded after its first stop id; stops when every row has stopped.

    What every stage samples with, instead of ``model.generate``: the same draw as ``generate``'s
    sampling (float32 logits over the temperature, its top-k and top-p, one ``torch.multinomial`` per
    step, finished rows set to pad) without its per-step machinery (logits processors, stopping
    criteria, input preparation, mask concatenation), which costs as much as the forward of a small
    policy; nothing of a model's ``generation_config.json`` (repetition penalty, min-p...) reaches it.
    The prompt's LM head runs at its last position only. Positions skip the left padding
    (``cumsum(mask) - 1``), as the forward that recomputes PPO's log-probs, so rollouts are drawn from
    exactly the distribution whose log-probs PPO uses (transformers 5's ``generate`` numbers a padded
    row's positions from the first pad instead).
    """
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
        token = torch.where(unfinished, next_token(logits, temperature, top_k, top_p), pad_token_id)
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
        out = sample_tokens(model, input_ids.to(device), attention.to(device), gen.max_new_tokens, gen.temperature,
                            stop, pad, gen.top_k, gen.top_p).cpu()
        for r, i in enumerate(rows):
            tokens = out[r].tolist()
            end = next((n for n, t in enumerate(tokens) if t in stop), None)
            ended = end is not None
            stop_id = tokens[end] if ended else None
            tokens = tokens[:end] if ended else tokens
            prompt = prompts[i] if isinstance(prompts[i], str) else conversation_text(prompts[i])
            results[i] = Sample(prompt=prompt, text=tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                                ended=ended, n_tokens=len(tokens) + int(ended), stop_id=stop_id)
    model.train(was_training)
    return results  # type: ignore[return-value]


def answer_summary(samples: list[Sample]) -> dict:
    """What can be said of answers without any reward: how many, how long, how often they end with EOS."""
    if not samples:
        return {"n": 0}
    return {"n": len(samples), "eos_rate": float(np.mean([s.ended for s in samples])),
            "mean_tokens": float(np.mean([s.n_tokens for s in samples]))}
