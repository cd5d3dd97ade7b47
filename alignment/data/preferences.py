"""Preference pairs for the reward stage, from any of the formats users bring, as plain text triples.

Every source ends up as rows ``{"prompt": str, "chosen": str, "rejected": str, "margin": float}`` (with the
prompt's chat turns as ``prompt_messages`` where the source gave them):

* the labeling app's export and any dataset in TRL's preference format: explicit
  (``prompt``/``chosen``/``rejected``) or implicit (``chosen``/``rejected`` sharing a prompt),
  standard (strings) or conversational (lists of ``{"role", "content"}`` messages);
* Anthropic HH-RLHF transcripts (``\\n\\nHuman: ...\\n\\nAssistant: ...``), split at the last
  Assistant turn: what comes before is the prompt, the two last answers are chosen and rejected;
* the demo world: world-written answers in two styles, labeled by the simulated annotator.

Text triples (rather than chat messages) let one dataset train reward models with different
tokenizers; how a pair is rendered for a given model is decided in the reward stage.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from alignment.data.world import STYLES_BY_KIND, DemoWorld, SimulatedAnnotator
from alignment.errors import UserError

HH_ASSISTANT = "\n\nAssistant:"
HH_HUMAN = "\n\nHuman:"


def split_hh_transcript(transcript: str) -> tuple[str, str]:
    """``(prompt, last answer)``: the prompt keeps every turn up to and including the last
    ``Assistant:`` marker (so the reward model sees whose turn it is); the answer is stripped."""
    cut = transcript.rfind(HH_ASSISTANT)
    if cut < 0:
        raise ValueError("no '\\n\\nAssistant:' turn in the transcript")
    prompt = transcript[:cut + len(HH_ASSISTANT)]
    return prompt.lstrip(), transcript[cut + len(HH_ASSISTANT):].strip()


def hh_pair(chosen: str, rejected: str) -> dict:
    """One HH-RLHF row as a prompt/chosen/rejected triple; the two transcripts must share their prompt."""
    prompt_c, answer_c = split_hh_transcript(_normalise_newlines(chosen))
    prompt_r, answer_r = split_hh_transcript(_normalise_newlines(rejected))
    if " ".join(prompt_c.split()) != " ".join(prompt_r.split()):
        raise ValueError("the chosen and rejected transcripts differ before their last Assistant turn")
    return {"prompt": prompt_c, "chosen": answer_c, "rejected": answer_r}


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n")


def looks_like_hh(row: dict) -> bool:
    chosen = row.get("chosen")
    return "prompt" not in row and isinstance(chosen, str) and HH_HUMAN.strip() in chosen and HH_ASSISTANT.strip() in chosen


def conversation_text(messages: Sequence[dict]) -> str:
    """Chat messages as plain text: one message is its content; several are ``Role: content``
    paragraphs (HH's own convention), so a reward model sees whose turn each part was."""
    if len(messages) == 1:
        return str(messages[0]["content"])
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def _as_text(value: object, where: str, column: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in value):
        return conversation_text(value)
    raise UserError(f"{where}: column {column!r} must be a string or a list of chat messages")


def _implicit_prompt(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """Split two conversations that share every message but their answers into (prompt, chosen, rejected)."""
    n = 0
    while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
        n += 1
    return chosen[:n], chosen[n:], rejected[n:]


def _turns(messages: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def normalise_row(row: dict, where: str) -> dict:
    """One row of any supported format as ``{"prompt", "chosen", "rejected", "margin"}`` text, plus
    ``prompt_messages`` (the prompt's chat turns) when the prompt came as messages: what a policy
    optimizer renders with the policy's chat template (the text is what a reward model reads)."""
    for column in ("chosen", "rejected"):
        if column not in row or row[column] is None:
            raise UserError(f"{where}: missing column {column!r} (preference data needs 'chosen' and "
                            "'rejected', plus 'prompt' unless they are HH transcripts or full conversations)")
    try:
        if looks_like_hh(row):
            out = hh_pair(row["chosen"], row["rejected"])
        elif "prompt" in row and row["prompt"] is not None:
            out = {"prompt": _as_text(row["prompt"], where, "prompt"),
                   "chosen": _as_text(row["chosen"], where, "chosen"),
                   "rejected": _as_text(row["rejected"], where, "rejected")}
            if isinstance(row["prompt"], list):
                out["prompt_messages"] = _turns(row["prompt"])
        elif isinstance(row["chosen"], list) and isinstance(row["rejected"], list):
            prompt, chosen, rejected = _implicit_prompt(row["chosen"], row["rejected"])
            if not prompt:
                raise UserError(f"{where}: implicit-prompt conversations share no prompt messages")
            out = {"prompt": _as_text(prompt, where, "prompt"), "chosen": _as_text(chosen, where, "chosen"),
                   "rejected": _as_text(rejected, where, "rejected"), "prompt_messages": _turns(prompt)}
        else:
            raise UserError(f"{where}: no 'prompt' column, and 'chosen'/'rejected' are neither HH transcripts "
                            "nor conversations sharing a prompt")
    except ValueError as err:
        raise UserError(f"{where}: {err}") from err
    if not out["chosen"].strip() or not out["rejected"].strip():
        raise UserError(f"{where}: an empty chosen or rejected response")
    if out["chosen"].strip() == out["rejected"].strip():
        raise UserError(f"{where}: the chosen response equals the rejected one")
    margin = row.get("margin")
    out["margin"] = float(margin) if margin is not None else 0.0
    return out


def demo_preferences(world: DemoWorld, split: str, pairs_per_prompt: int, noise: float,
                     position_bias: float, seed: int) -> list[dict]:
    """World-written answer pairs in two different styles, labeled by a simulated annotator.

    Ties (equal gold reward) are dropped; ``margin`` carries the annotator's strength (1..4) and
    ``gold_chosen_better`` whether the label agrees with the hidden gold preference.
    """
    rng = random.Random(f"prefs/{split}/{seed}")
    annotator = SimulatedAnnotator(world, noise=noise, position_bias=position_bias, seed=seed)
    rows = []
    for prompt in world.prompts(split):
        for _ in range(pairs_per_prompt):
            style_a, style_b = rng.sample(STYLES_BY_KIND[prompt.kind], 2)
            a, b = world.respond(prompt, style_a, rng), world.respond(prompt, style_b, rng)
            label = annotator.label(prompt, a, b)
            if label.choice == "tie":
                continue
            chosen, rejected = (a, b) if label.choice == "A" else (b, a)
            rows.append({"prompt": prompt.text, "chosen": chosen, "rejected": rejected,
                         "strength": label.strength, "prompt_id": prompt.id,
                         "gold_chosen_better": world.gold_reward(prompt, chosen) > world.gold_reward(prompt, rejected)})
    return rows
