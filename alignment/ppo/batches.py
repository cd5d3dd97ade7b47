"""What one PPO update hands from step to step (:class:`Rollout`, :class:`Rewards`) and where the run is
(:class:`Progress`, saved with every checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Progress:
    """Where the run is, and what it has spent, counted as it is spent: policy samples and their tokens
    (summed over every process) when drawn, optimizer steps when taken. Registered for checkpointing, so
    resume continues from the same place and the same counts."""

    update: int = 0
    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    policy_samples: int = 0
    policy_tokens: int = 0
    optimizer_steps: int = 0

    def drew(self, samples: int, tokens: int) -> None:
        """Count an update's rollout: ``samples`` answers of ``tokens`` tokens in all, over every process."""
        self.policy_samples += int(samples)
        self.policy_tokens += int(tokens)

    def state_dict(self) -> dict[str, Any]:
        return {"update": self.update, "history": self.history, "evals": self.evals,
                "policy_samples": self.policy_samples, "policy_tokens": self.policy_tokens,
                "optimizer_steps": self.optimizer_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.update, self.history, self.evals = state["update"], state["history"], state["evals"]
        self.policy_samples, self.policy_tokens, self.optimizer_steps = (
            state.get(k, 0) for k in ("policy_samples", "policy_tokens", "optimizer_steps"))


@dataclass
class Rollout:
    prompt_ids: torch.Tensor     # [B, P] left-padded prompt ids
    prompt_mask: torch.Tensor    # [B, P]
    tokens: torch.Tensor         # [B, R] response ids, pad after the first EOS
    mask: torch.Tensor           # [B, R] real response tokens
    has_eos: torch.Tensor        # [B]
    logprobs: torch.Tensor       # [B, R]
    ref_logprobs: torch.Tensor   # [B, R]
    values: torch.Tensor         # [B, R]
    scores: torch.Tensor         # [B] raw reward-model scores
    texts: list[str]
    p_unsafe: torch.Tensor | None = None  # [B] safety filter's any-unsafe probability (penalty on)
    flagged: torch.Tensor | None = None   # [B] the filter's verdict at its thresholds


@dataclass
class Rewards:
    """What each response and each of its tokens earns (:meth:`PPOTrainer.rewards`)."""

    scores: torch.Tensor               # [B] normalised, clipped, minus the missing-EOS and safety penalties
    kl: torch.Tensor                   # [B, R] per-token KL to the reference
    non_score: torch.Tensor            # [B, R] the KL penalty ``-beta * kl`` at real tokens
    per_token: torch.Tensor            # [B, R] what each action earns (whitened when ``whiten_rewards``)
    safety_penalty: torch.Tensor | None = None  # [B] what the safety penalty took off each score
