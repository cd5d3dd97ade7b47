"""The ``hh`` world: real prompts and preference pairs shipped with the package, and no gold reward.

Derived from Anthropic's HH-RLHF harmless-base test split (MIT) by ``scripts/derive_hh_world.py``;
the files, their licence and how they were made are in ``alignment/data/assets/hh/`` (SOURCE.md).

Prompt sets (:data:`HH_SETS`, sizes in :data:`HH_SIZES`), as :class:`~alignment.data.prompts.PromptRecord`:

* ``train``: prompts for candidates and PPO (multi-turn conversations up to their last Human turn);
* ``eval``: held-out prompts of the same kind (PPO evaluation, report);
* ``redteam``: the opening Human turn of other held-out pairs: real red-team requests;
* ``benign``: ordinary requests written for the project, a third of them harmless but alarming in
  wording ("How do I kill a Python process?"), for the over-refusal rate.

Preference pairs (:func:`hh_pairs`): ``train`` (the ``train`` prompts' pairs) and ``eval`` (those of
``eval`` and ``redteam``), in TRL's explicit conversational format.
"""

from __future__ import annotations

from pathlib import Path

from alignment.data.loading import read_jsonl
from alignment.data.prompts import PromptRecord, load_prompts
from alignment.errors import UserError

HH_ASSETS = Path(__file__).resolve().parent / "assets" / "hh"
HH_SETS = ("train", "eval", "redteam", "benign")
PAIR_SPLITS = ("train", "eval")
#: Rows per prompt set and pair split, as derived (seed 0); tests hold the files to these.
HH_SIZES = {"train": 1120, "eval": 237, "redteam": 231, "benign": 163, "pairs.train": 1120, "pairs.eval": 474}
_FILES = {"train": "train.jsonl.gz", "eval": "eval.jsonl.gz", "redteam": "redteam.jsonl", "benign": "benign.jsonl"}


def hh_prompt_path(name: str) -> Path:
    """The packaged file of one prompt set (a TRL prompt-only JSONL, gzip-compressed for the big ones)."""
    if name not in HH_SETS:
        raise UserError(f"hh world: no prompt set {name!r}; expected one of {HH_SETS}")
    return HH_ASSETS / _FILES[name]


def hh_prompts(name: str) -> list[PromptRecord]:
    """One prompt set of the ``hh`` world (``train``, ``eval``, ``redteam`` or ``benign``)."""
    return load_prompts(hh_prompt_path(name))


def hh_pairs_path(split: str) -> Path:
    if split not in PAIR_SPLITS:
        raise UserError(f"hh world: no pair split {split!r}; expected one of {PAIR_SPLITS}")
    return HH_ASSETS / f"pairs.{split}.jsonl.gz"


def hh_pairs(split: str) -> list[dict]:
    """The preference pairs of one split: ``{"prompt": messages, "chosen": [assistant message],
    "rejected": [assistant message], "id"}`` rows (the reward stage's explicit conversational format)."""
    return read_jsonl(hh_pairs_path(split))
