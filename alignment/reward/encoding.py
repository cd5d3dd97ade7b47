"""How a reward model reads a (prompt, response) text pair: one function for training and scoring.

The reward stage trains on rows encoded here and :class:`~alignment.reward.scorer.RewardScorer`
(what PPO and the evaluations score with) encodes its inputs the same way, so a trained reward
model always reads pairs as it was trained to. ``(prompt, response)`` is rendered as

* ``"concat"``: ``prompt + separator + response`` as one text (TRL's RewardTrainer on plain-text data);
* ``"pair"``: a text pair, ``[CLS] prompt [SEP] response [SEP]`` for BERT-style cross-encoders;
* ``"chat"``: the reward tokenizer's own chat template, user then assistant;

then fitted to ``max_length`` by cutting the **prompt from the left** (the end of the question and
the whole answer are what the score is about), and only if the prompt is gone, the response from
the right. Cuts are made in the text at reward-tokenizer token boundaries (character offsets), so
the kept text is byte-for-byte the original. A batch is padded to its longest row on the side the
reward model expects (its tokenizer's ``padding_side`` unless told otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from transformers import BatchEncoding, PreTrainedTokenizerBase

from alignment.config import RewardInputFormat

#: Tokenizers report this (or more) as ``model_max_length`` when they have no limit.
_NO_LIMIT = 1_000_000


def decode(tokenizer: PreTrainedTokenizerBase, ids: list[int], skip_special_tokens: bool) -> str:
    """Token ids back to text exactly (no clean-up of spaces), so that offsets and cuts stay true."""
    return tokenizer.decode(ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)


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
    raise ValueError(f"unknown reward input format {fmt!r}")


def _token_starts_ends(tokenizer: PreTrainedTokenizerBase, text: str) -> list[tuple[int, int]]:
    """Character span of each token of ``text`` (no special tokens)."""
    if getattr(tokenizer, "is_fast", False):
        return [tuple(span) for span in
                tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    # slow tokenizers have no offsets: rebuild them by decoding growing prefixes
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    spans, start = [], 0
    for n in range(1, len(ids) + 1):
        end = len(decode(tokenizer, ids[:n], skip_special_tokens=False))
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
