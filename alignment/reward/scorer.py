"""Scoring (prompt, response) text with a trained reward model, as it was trained to read them.

What PPO and the evaluations use: no TRL, no ``datasets``. The input format, max length and
separator come from the :data:`~alignment.reward.model.REWARD_CONFIG_FILE` the reward stage saved
next to the model, and the text is encoded by :mod:`alignment.reward.encoding`, the same code the
training pairs went through.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from alignment.errors import UserError
from alignment.reward.encoding import encode_for_reward_model
from alignment.reward.model import REWARD_CONFIG_FILE, load_reward_model


class RewardScorer:
    """Scores (prompt, response) text pairs with a trained reward model, as it was trained to read them."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, input_format: str,
                 max_length: int, separator: str = "\n", batch_size: int = 64) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.input_format, self.max_length, self.separator = input_format, max_length, separator
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str | Path, batch_size: int = 64) -> RewardScorer:
        info_file = Path(path) / REWARD_CONFIG_FILE
        if not info_file.is_file():
            raise UserError(f"{path}: no {REWARD_CONFIG_FILE}; is this a model written by align-reward?")
        info = json.loads(info_file.read_text())
        model, tokenizer = load_reward_model(str(path))
        return cls(model, tokenizer, info["input_format"], info["max_length"], info["separator"], batch_size)

    @torch.no_grad()
    def score(self, prompts: list[str], responses: list[str], desc: str | None = None) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        out = []
        starts = range(0, len(prompts), self.batch_size)
        for start in tqdm(starts, desc=desc, leave=False, disable=desc is None):
            batch = encode_for_reward_model(prompts[start:start + self.batch_size],
                                            responses[start:start + self.batch_size], self.tokenizer,
                                            self.max_length, self.input_format, self.separator, "right")
            # TRL's collator feeds only ids and mask in training: score the same inputs.
            logits = self.model(input_ids=batch["input_ids"].to(device),
                                attention_mask=batch["attention_mask"].to(device)).logits
            out.append(logits[:, 0].float().cpu())
        self.model.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros(0)
