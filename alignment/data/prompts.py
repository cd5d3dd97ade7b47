"""Prompt sets as data: what candidates, PPO and the safety evaluations ask a policy, from any source.

Every source ends up as a list of :class:`PromptRecord` (chat messages ending with a user turn, and
the ``file:row`` they came from), so a multi-turn prompt reaches the policy through its own chat
template rather than as flattened text. Accepted, per row:

* TRL's prompt-only format: ``{"prompt": "text"}`` (standard) or ``{"prompt": [{"role": "user",
  "content": ...}, ...]}`` (conversational; ``system`` and earlier ``assistant`` turns allowed, the
  last message must be the user's);
* Anthropic HH-RLHF transcripts (``\\n\\nHuman: ...\\n\\nAssistant: ...``), as a ``prompt`` string or
  as the ``chosen`` column of a preference pair: everything before the last Assistant turn, as
  alternating user/assistant messages (:func:`hh_messages`).

Sources: a JSONL file (read here, so a bad row is named by its 1-based line), a ``save_to_disk``
folder or a hub name (through :func:`alignment.data.loading.load_source`; rows named by index).
Every problem is a :class:`~alignment.errors.UserError` with one line naming the file and the row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from alignment.data.loading import load_source, read_jsonl_numbered, row_location
from alignment.data.preferences import (
    HH_ASSISTANT,
    HH_HUMAN,
    conversation_text,
    looks_like_hh,
    split_hh_transcript,
)
from alignment.errors import UserError

ROLES = ("system", "user", "assistant")
#: One HH turn marker; the transcript is split on these (role word captured).
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}


class PromptLike(Protocol):
    """What a stage needs of a prompt: a :class:`PromptRecord` or a demo world
    :class:`~alignment.data.world.Prompt`."""

    kind: str

    @property
    def messages(self) -> list[dict]: ...

    @property
    def text(self) -> str: ...

    @property
    def source(self) -> str: ...


@dataclass(frozen=True)
class PromptRecord:
    """One prompt: chat ``messages`` ending with the user's turn, and its ``source`` (``file:line``
    for JSONL, ``source row N`` otherwise) for error messages and records of what a stage asked.

    ``kind`` is ``harmful`` for a red-team prompt and ``benign`` otherwise (what the safety figures
    split on); ``category`` a safety category when the set names one. The demo world's
    :class:`~alignment.data.world.Prompt` has the same attributes, so stages treat both alike.
    """

    messages: list[dict]
    source: str
    kind: str = "benign"
    category: str | None = None

    @property
    def id(self) -> str:
        return self.source

    @property
    def text(self) -> str:
        """The conversation as text, as preference data renders a prompt (:func:`conversation_text`):
        what the reward model reads, annotators see and reports show."""
        return conversation_text(self.messages)

    def to_trl(self) -> dict:
        """The record in TRL's conversational prompt-only format."""
        return {"prompt": [dict(m) for m in self.messages]}


def as_prompt(prompt: PromptLike | str, source: str) -> PromptLike:
    """A prompt given as plain text becomes a one-turn :class:`PromptRecord` named ``source``."""
    return PromptRecord([{"role": "user", "content": prompt}], source) if isinstance(prompt, str) else prompt


def is_hh_transcript(text: str) -> bool:
    """Whether a string is an HH-RLHF transcript (starts, after whitespace, with ``Human:``)."""
    return text.replace("\r\n", "\n").lstrip().startswith(HH_HUMAN.strip())


def hh_messages(transcript: str) -> list[dict]:
    """The prompt of an HH-RLHF transcript as chat messages: every turn before the last Assistant turn
    (the whole transcript when it ends with a Human turn). Raises ``ValueError`` on malformed text."""
    text = "\n\n" + transcript.replace("\r\n", "\n").lstrip()
    last_human, last_assistant = text.rfind(HH_HUMAN), text.rfind(HH_ASSISTANT)
    if last_human < 0:
        raise ValueError("no '\\n\\nHuman:' turn in the transcript")
    if last_assistant > last_human:
        text = "\n\n" + split_hh_transcript(text)[0]
        text = text[: -len(HH_ASSISTANT)]
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        raise ValueError("text before the first '\\n\\nHuman:' turn")
    messages = [{"role": _HH_ROLE[role], "content": content.strip()} for role, content in zip(parts[1::2], parts[2::2])]
    if not messages[-1]["content"]:
        raise ValueError("the last Human turn is empty")
    return messages


def _checked_messages(value: list, where: str) -> list[dict]:
    if not value:
        raise UserError(f"{where}: 'prompt' is an empty list of messages")
    for k, message in enumerate(value):
        if not isinstance(message, dict) or not {"role", "content"} <= set(message):
            raise UserError(f"{where}: prompt message {k} must be an object with 'role' and 'content'")
        if message["role"] not in ROLES:
            raise UserError(f"{where}: prompt message {k} has role {message['role']!r}; expected one of {ROLES}")
        if not isinstance(message["content"], str):
            raise UserError(f"{where}: prompt message {k} has non-text content "
                            f"({type(message['content']).__name__})")
    if value[-1]["role"] != "user" or not value[-1]["content"].strip():
        raise UserError(f"{where}: the prompt must end with a non-empty user message "
                        f"(the last message is {value[-1]['role']!r})")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def prompt_messages(row: dict, where: str) -> list[dict]:
    """The prompt of one row of any accepted format (module docstring) as chat messages."""
    try:
        if row.get("prompt") is not None:
            prompt = row["prompt"]
            if isinstance(prompt, str):
                if is_hh_transcript(prompt):
                    return hh_messages(prompt)
                if not prompt.strip():
                    raise UserError(f"{where}: 'prompt' is empty")
                return [{"role": "user", "content": prompt}]
            if isinstance(prompt, list):
                return _checked_messages(prompt, where)
            raise UserError(f"{where}: 'prompt' must be a string or a list of chat messages, "
                            f"got {type(prompt).__name__}")
        if looks_like_hh(row):
            return hh_messages(row["chosen"])
    except ValueError as err:
        raise UserError(f"{where}: not a usable HH-RLHF transcript ({err})") from None
    raise UserError(f"{where}: no 'prompt' column (expected TRL prompt-only rows, {{\"prompt\": text or "
                    f"messages}}, or HH-RLHF 'chosen'/'rejected' transcripts); keys: {sorted(set(row) - {'_line'})}")


def _rows(source: str | Path, split: str) -> tuple[str, Iterator[tuple[str, dict]]]:
    path = Path(source).expanduser()
    if path.is_file() or path.suffix in {".jsonl", ".json"}:
        return str(path), ((f"{path}:{lineno}", row) for lineno, row in read_jsonl_numbered(path))
    data, _, where = load_source(str(source), split)
    if len(data) == 0:
        raise UserError(f"{where}: the prompt set is empty")
    columns = set(data.column_names)
    if "prompt" not in columns and "chosen" not in columns:
        raise UserError(f"{where}: no 'prompt' column (nor HH-RLHF 'chosen' transcripts); "
                        f"columns: {sorted(columns)}")
    return where, ((row_location(where, row, i), row) for i, row in enumerate(data))


def load_prompts(source: str | Path, split: str = "train", limit: int | None = None) -> list[PromptRecord]:
    """The prompts of a JSONL file, a ``save_to_disk`` folder or a hub dataset (its ``split``), in order.

    ``limit`` keeps the first N. Empty sets and bad rows raise :class:`UserError` (file and row).
    """
    if limit is not None and limit <= 0:
        raise UserError(f"{source}: a prompt limit must be positive, got {limit}")
    where, rows = _rows(source, split)
    records = []
    for location, row in rows:
        if limit is not None and len(records) >= limit:
            break
        records.append(PromptRecord(prompt_messages(row, location), location))
    if not records:
        raise UserError(f"{where}: the prompt set is empty")
    return records


def prompt_token_ids(tokenizer, messages: list[dict]) -> list[int]:
    """A prompt's token ids as a policy sees them: its chat template with the generation prompt."""
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)


def check_prompt_lengths(records: Iterable[PromptRecord], tokenizer, context: int, reserve: int = 0,
                         max_tokens: int | None = None) -> list[int]:
    """Each prompt's length in tokens under the chat template; a prompt that leaves fewer than
    ``reserve`` tokens (the answer's budget) of the ``context``, or is longer than ``max_tokens``
    (``prompts.max_tokens``), is a :class:`UserError` naming its row.

    Checked up front so a long prompt fails before a stage writes anything, instead of being silently
    truncated (losing the question) or overflowing the position embeddings mid-run.
    """
    limit = context - reserve
    if limit <= 0:
        raise UserError(f"a context of {context} tokens leaves no room for prompts after {reserve} answer tokens")
    rule = f"the {limit} the context allows ({context} tokens, {reserve} kept for the answer)"
    if max_tokens is not None and max_tokens < limit:
        limit, rule = max_tokens, f"prompts.max_tokens={max_tokens}"
    lengths = []
    for record in records:
        try:
            n = len(prompt_token_ids(tokenizer, record.messages))
        except Exception as err:  # noqa: BLE001 - templates raise anything (jinja, ValueError) on odd roles
            raise UserError(f"{record.source}: the policy's chat template rejects this prompt "
                            f"({type(err).__name__}: {err})") from None
        if n > limit:
            raise UserError(f"{record.source}: the prompt is {n} tokens with the chat template, more than {rule}")
        lengths.append(n)
    return lengths
