"""Batched sampling from a chat policy: what SFT samples, candidates and safety evals all call."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

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
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
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
        out = model.generate(
            input_ids=input_ids.to(device), attention_mask=attention.to(device),
            do_sample=gen.temperature > 0, temperature=gen.temperature if gen.temperature > 0 else None,
            top_k=gen.top_k or None, top_p=gen.top_p if gen.top_p < 1.0 else None,
            max_new_tokens=gen.max_new_tokens, pad_token_id=pad, eos_token_id=eos,
        )[:, width:].cpu()
        for r, i in enumerate(rows):
            tokens = out[r].tolist()
            ended = eos in tokens
            tokens = tokens[:tokens.index(eos)] if ended else tokens
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
