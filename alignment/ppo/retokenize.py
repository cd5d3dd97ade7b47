"""Scoring a rollout with a reward model that has its own tokenizer: decode, then re-encode.

The policy samples token ids in *its* vocabulary; a reward model such as the MiniLM encoder reads
another one. The only common ground is text, so for each rollout row we

1. decode the prompt and the response with the policy tokenizer. The response loses its special
   tokens (EOS, padding). The prompt was built with the policy's chat template; when it is the
   template applied to one user message (how the stages build prompts) we recover that message
   exactly, by matching the text the template puts around a sentinel message. Any other prompt
   (several turns, a custom system message) falls back to its text between special tokens, one
   piece per line (role names a template writes as plain text, like Qwen's ``user``, stay);
2. re-encode ``(prompt, response)`` the way the reward model was trained to read them, with
   :func:`alignment.reward.encoding.encode_for_reward_model` (input format, the prompt cut from the
   left to fit ``max_length``, padding): the reward package owns that encoding, PPO uses it.
"""

from __future__ import annotations

from typing import Literal

import torch
from transformers import BatchEncoding, PreTrainedTokenizerBase

from alignment.config import RewardInputFormat
from alignment.reward.encoding import decode, encode_for_reward_model

#: A user message no real prompt contains, rendered through the chat template to find its affixes.
_SENTINEL = "\u2063PPO-PROMPT-SENTINEL\u2063"


def chat_template_affixes(tokenizer: PreTrainedTokenizerBase) -> tuple[str, str] | None:
    """The text the tokenizer's chat template writes before and after a single user message
    (generation prompt included), or None when it has no template or the template will not render."""
    if getattr(tokenizer, "chat_template", None) is None:
        return None
    try:
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}],
                                                 tokenize=False, add_generation_prompt=True)
    except Exception:  # any template error just means "cannot strip"
        return None
    if not isinstance(rendered, str) or rendered.count(_SENTINEL) != 1:
        return None
    prefix, suffix = rendered.split(_SENTINEL)
    return prefix, suffix


def decode_rollout(prompt_ids: torch.Tensor, response_ids: torch.Tensor, tokenizer: PreTrainedTokenizerBase,
                   prompt_mask: torch.Tensor | None = None,
                   response_mask: torch.Tensor | None = None) -> tuple[list[str], list[str]]:
    """The prompts (chat template stripped where possible) and responses of a rollout, as text.

    ``prompt_mask`` defaults to ``prompt_ids != pad`` (prompts are padded, never contain a pad);
    pass the response mask from :func:`alignment.ppo.rollout_math.truncate_after_eos` so nothing
    after the first EOS is decoded (by default: ``response_ids != pad``).
    """
    if prompt_ids.size(0) != response_ids.size(0):
        raise ValueError(f"{prompt_ids.size(0)} prompts but {response_ids.size(0)} responses")
    pad = tokenizer.pad_token_id
    if (prompt_mask is None or response_mask is None) and pad is None:
        raise ValueError("the policy tokenizer has no pad token: pass prompt_mask and response_mask")
    prompt_mask = (prompt_ids != pad) if prompt_mask is None else prompt_mask.bool()
    response_mask = (response_ids != pad) if response_mask is None else response_mask.bool()
    affixes = chat_template_affixes(tokenizer)
    prompts, responses = [], []
    for p_ids, p_mask, r_ids, r_mask in zip(prompt_ids.tolist(), prompt_mask.tolist(),
                                            response_ids.tolist(), response_mask.tolist(), strict=True):
        kept = [i for i, keep in zip(p_ids, p_mask, strict=True) if keep]
        prompts.append(_prompt_text(tokenizer, kept, affixes))
        responses.append(decode(tokenizer, [i for i, keep in zip(r_ids, r_mask, strict=True) if keep], True))
    return prompts, responses


def _special_tokens(tokenizer: PreTrainedTokenizerBase) -> dict[int, str]:
    """Every special token by id: the named ones (BOS, EOS, pad...) and added tokens marked special
    (chat markers such as Llama 3's ``<|start_header_id|>`` are often only the latter)."""
    specials = dict(zip(tokenizer.all_special_ids, tokenizer.all_special_tokens, strict=True))
    for token_id, token in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(token, "special", False):
            specials[token_id] = str(token)
    return specials


def _prompt_text(tokenizer: PreTrainedTokenizerBase, ids: list[int], affixes: tuple[str, str] | None) -> str:
    """The user message of a one-message chat prompt; otherwise the text between special tokens,
    one piece per line (``"Hi?\nYes.\nBread?"`` for a three-turn prompt)."""
    specials = _special_tokens(tokenizer)
    if affixes is not None:
        prefix, suffix = affixes
        text = decode(tokenizer, ids, skip_special_tokens=False)
        if len(text) >= len(prefix) + len(suffix) and text.startswith(prefix) and text.endswith(suffix):
            middle = text[len(prefix): len(text) - len(suffix)]
            # several turns also start and end like one message: the middle then holds role markers
            if not any(special in middle for special in specials.values()):
                return middle
    pieces, run = [], []
    for token_id in [*ids, None]:
        if token_id is None or token_id in specials:
            piece = decode(tokenizer, run, skip_special_tokens=True).strip() if run else ""
            if piece:
                pieces.append(piece)
            run = []
        else:
            run.append(token_id)
    return "\n".join(pieces)


def retokenize_for_reward_model(prompt_ids: torch.Tensor, response_ids: torch.Tensor,
                                policy_tokenizer: PreTrainedTokenizerBase,
                                reward_tokenizer: PreTrainedTokenizerBase, max_length: int | None = None, *,
                                prompt_mask: torch.Tensor | None = None,
                                response_mask: torch.Tensor | None = None,
                                format: RewardInputFormat = "concat", separator: str = "\n",
                                padding_side: Literal["left", "right"] | None = None) -> BatchEncoding:
    """Policy token ids of a rollout -> reward-model inputs: :func:`decode_rollout`, then
    :func:`encode_for_reward_model`. Tensors come back on the CPU; move them to the RM's device."""
    prompts, responses = decode_rollout(prompt_ids, response_ids, policy_tokenizer, prompt_mask, response_mask)
    return encode_for_reward_model(prompts, responses, reward_tokenizer, max_length, format, separator,
                                   padding_side)
