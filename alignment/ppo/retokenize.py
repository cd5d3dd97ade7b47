"""Scoring a rollout with a reward model that has its own tokenizer: decode, then re-encode.

The policy samples token ids in *its* vocabulary; a reward model such as the MiniLM encoder reads
another one. The only common ground is text, so for each rollout row we

1. decode the prompt and the response with the policy tokenizer. The response loses its special
   tokens (EOS, padding). The prompt was built with the policy's chat template; when it is the
   template applied to one user message (how the stages build prompts) we recover that message
   exactly, by matching the text the template puts around a sentinel message. Any other prompt
   (several turns, a custom system message) falls back to its text between special tokens, one
   piece per line (role names a template writes as plain text, like Qwen's ``user``, stay);
2. re-encode ``(prompt, response)`` the way the reward model was trained to read them:
   ``"concat"`` (``prompt + separator + response`` as one text, TRL's RewardTrainer on plain-text
   data), ``"pair"`` (a text pair, ``[CLS] prompt [SEP] response [SEP]`` for BERT-style
   cross-encoders) or ``"chat"`` (the reward tokenizer's own chat template, user then assistant).
   This choice must match how the reward stage formatted its training pairs;
3. fit ``max_length`` by cutting the **prompt from the left** (the end of the question and the whole
   answer are what the score is about), and only if the prompt is gone, the response from the
   right. Cuts are made in the text at reward-tokenizer token boundaries (character offsets), so
   the kept text is byte-for-byte the original;
4. pad to the longest row on the side the reward model expects (its tokenizer's ``padding_side``
   unless told otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from transformers import BatchEncoding, PreTrainedTokenizerBase

RewardInputFormat = Literal["concat", "pair", "chat"]
REWARD_INPUT_FORMATS: tuple[str, ...] = ("concat", "pair", "chat")

#: A user message no real prompt contains, rendered through the chat template to find its affixes.
_SENTINEL = "\u2063PPO-PROMPT-SENTINEL\u2063"
#: Tokenizers report this (or more) as ``model_max_length`` when they have no limit.
_NO_LIMIT = 1_000_000


# --------------------------------------------------------------------------------------------------
# 1. Policy ids -> text
# --------------------------------------------------------------------------------------------------

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


def _decode(tokenizer: PreTrainedTokenizerBase, ids: list[int], skip_special_tokens: bool) -> str:
    return tokenizer.decode(ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)


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
        responses.append(_decode(tokenizer, [i for i, keep in zip(r_ids, r_mask, strict=True) if keep], True))
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
        text = _decode(tokenizer, ids, skip_special_tokens=False)
        if len(text) >= len(prefix) + len(suffix) and text.startswith(prefix) and text.endswith(suffix):
            middle = text[len(prefix): len(text) - len(suffix)]
            # several turns also start and end like one message: the middle then holds role markers
            if not any(special in middle for special in specials.values()):
                return middle
    pieces, run = [], []
    for token_id in [*ids, None]:
        if token_id is None or token_id in specials:
            piece = _decode(tokenizer, run, skip_special_tokens=True).strip() if run else ""
            if piece:
                pieces.append(piece)
            run = []
        else:
            run.append(token_id)
    return "\n".join(pieces)


# --------------------------------------------------------------------------------------------------
# 2-4. Text -> reward-model inputs
# --------------------------------------------------------------------------------------------------

def _renderer(tokenizer: PreTrainedTokenizerBase, fmt: RewardInputFormat,
              separator: str) -> Callable[[str, str], dict[str, list[int]]]:
    if fmt == "concat":
        return lambda prompt, response: dict(tokenizer(prompt + separator + response))
    if fmt == "pair":
        return lambda prompt, response: dict(tokenizer(prompt, response))
    if fmt == "chat":
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("format='chat' needs a reward tokenizer with a chat template")

        def render_chat(prompt: str, response: str) -> dict[str, list[int]]:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
                tokenize=False)
            return dict(tokenizer(text, add_special_tokens=False))  # the template wrote them

        return render_chat
    raise ValueError(f"unknown reward input format {fmt!r}; expected one of {REWARD_INPUT_FORMATS}")


def _token_starts_ends(tokenizer: PreTrainedTokenizerBase, text: str) -> list[tuple[int, int]]:
    """Character span of each token of ``text`` (no special tokens)."""
    if getattr(tokenizer, "is_fast", False):
        return [tuple(span) for span in
                tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    # slow tokenizers have no offsets: rebuild them by decoding growing prefixes
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    spans, start = [], 0
    for n in range(1, len(ids) + 1):
        end = len(_decode(tokenizer, ids[:n], skip_special_tokens=False))
        spans.append((start, end))
        start = end
    return spans


def _drop_left(tokenizer: PreTrainedTokenizerBase, text: str, n_tokens: int) -> str:
    """``text`` without its first ``n_tokens`` tokens (cut at a token boundary; always shorter)."""
    spans = _token_starts_ends(tokenizer, text)
    if n_tokens >= len(spans):
        return ""
    return text[max(spans[n_tokens][0], 1):]


def _drop_right(tokenizer: PreTrainedTokenizerBase, text: str, n_tokens: int) -> str:
    """``text`` without its last ``n_tokens`` tokens (cut at a token boundary; always shorter)."""
    spans = _token_starts_ends(tokenizer, text)
    if n_tokens >= len(spans):
        return ""
    return text[:min(spans[len(spans) - n_tokens - 1][1], len(text) - 1)]


def _fit(render: Callable[[str, str], dict[str, list[int]]], tokenizer: PreTrainedTokenizerBase,
         prompt: str, response: str, max_length: int) -> dict[str, list[int]]:
    encoded = render(prompt, response)
    while len(encoded["input_ids"]) > max_length:
        excess = len(encoded["input_ids"]) - max_length
        if prompt:
            prompt = _drop_left(tokenizer, prompt, excess)
        elif response:
            response = _drop_right(tokenizer, response, excess)
        else:
            raise ValueError(f"max_length={max_length} is shorter than the reward model's input "
                             f"format alone ({len(encoded['input_ids'])} tokens for an empty pair)")
        encoded = render(prompt, response)
    return encoded


def pad_rows(rows: list[dict[str, list[int]]], pad_token_id: int, side: str) -> BatchEncoding:
    """Unpadded encodings (``input_ids`` and optionally ``token_type_ids``) -> one padded batch of long
    tensors with its ``attention_mask``."""
    width = max(len(row["input_ids"]) for row in rows)
    keys = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in rows[0] else [])
    batch: dict[str, list[list[int]]] = {key: [] for key in keys}
    for row in rows:
        fill = width - len(row["input_ids"])
        values = {"input_ids": row["input_ids"], "attention_mask": [1] * len(row["input_ids"]),
                  "token_type_ids": row.get("token_type_ids")}
        fillers = {"input_ids": pad_token_id, "attention_mask": 0, "token_type_ids": 0}
        for key in keys:
            padding = [fillers[key]] * fill
            batch[key].append(padding + values[key] if side == "left" else values[key] + padding)
    return BatchEncoding({key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()})


def encode_reward_row(prompt: str, response: str, tokenizer: PreTrainedTokenizerBase, max_length: int,
                      format: RewardInputFormat = "concat", separator: str = "\n") -> tuple[dict[str, list[int]], bool]:
    """One unpadded reward-model input and whether the prompt (or response) had to be cut to fit.

    The reward stage trains on exactly these rows, so training and PPO scoring read pairs alike.
    """
    render = _renderer(tokenizer, format, separator)
    full = render(prompt, response)
    if len(full["input_ids"]) <= max_length:
        return full, False
    return _fit(render, tokenizer, prompt, response, max_length), True


def encode_for_reward_model(prompts: list[str], responses: list[str], tokenizer: PreTrainedTokenizerBase,
                            max_length: int | None = None, format: RewardInputFormat = "concat",
                            separator: str = "\n",
                            padding_side: Literal["left", "right"] | None = None) -> BatchEncoding:
    """``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the tokenizer makes them) for
    the reward model, as padded ``[batch, width]`` long tensors with ``width <= max_length``.

    ``max_length`` defaults to the tokenizer's ``model_max_length`` (an error when it has none).
    ``separator`` only applies to ``format="concat"``.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if not prompts:
        raise ValueError("nothing to encode: the batch is empty")
    if max_length is None:
        max_length = int(tokenizer.model_max_length)
        if max_length >= _NO_LIMIT:
            raise ValueError("the reward tokenizer has no model_max_length: pass max_length")
    side = padding_side or tokenizer.padding_side
    if side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
    if tokenizer.pad_token_id is None:
        raise ValueError("the reward tokenizer has no pad token")
    render = _renderer(tokenizer, format, separator)
    rows = [_fit(render, tokenizer, p, r, max_length) for p, r in zip(prompts, responses, strict=True)]
    return pad_rows(rows, tokenizer.pad_token_id, side)


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
