"""From a scored rollout to per-token rewards, advantages (GAE) and value targets.

Each response is one episode; each sampled token is one action. The environment pays:

* at every real token, ``-beta * kl_t`` (the per-token KL penalty, see :mod:`alignment.ppo.kl`);
* at the **last real token** (the EOS, or the last token of a response that hit the length limit),
  in addition, the reward model's score, normalised and clipped, minus the missing-EOS penalty and
  the optional safety penalty (:func:`safety_penalty`).

Then Generalized Advantage Estimation (Schulman et al. 2016) runs right to left over each row:

    delta_t = r_t + gamma * V_{t+1} - V_t          (V after the last real token is 0: terminal)
    A_t     = delta_t + gamma * lam * A_{t+1}
    R_t     = A_t + V_t                            (the value targets, before any whitening)

and the advantages are whitened over the batch's real tokens (Huang et al. 2024). Every tensor is
``[batch, response_length]`` with a right-padded ``mask`` (each row's real tokens are a prefix),
as produced by :func:`alignment.ppo.rollout_math.truncate_after_eos`; padding gets 0 everywhere.

Where this differs from TRL's PPOTrainer (trl <= 1.12): TRL added the score one position *after*
the EOS (``sequence_lengths + 1``, the first pad slot, see huggingface/trl#1893 and #3750), kept a
value there, and let the score reach the EOS through ``gamma * lam``. We pay it at the last real
token, as Ziegler et al. and the N-implementation-details write-up describe: the action that ended
the answer receives its score, and no pad position takes part in the value loss.
"""

from __future__ import annotations

import torch

from alignment.ppo.rollout_math import ReduceSum, last_token_index, masked_whiten, zero_outside


def normalise_scores(scores: torch.Tensor, mean: float = 0.0, std: float = 1.0,
                     clip: float | None = None) -> torch.Tensor:
    """``(scores - mean) / std``, then clipped to ``[-clip, clip]`` when ``clip`` is given.

    Why: a reward model's scale is arbitrary (a Bradley-Terry head only learns differences), so the
    same ``beta`` would mean different things for different RMs. Huang et al. 2024 normalise the
    RM so that its scores on the SFT policy's samples have mean 0 and std 1; ``mean`` and ``std``
    are those statistics, measured once by the trainer before PPO starts. Clipping bounds the
    damage of a reward model's outliers (reward hacking feeds on them).
    """
    if std <= 0:
        raise ValueError(f"the score std must be > 0, got {std}")
    if clip is not None and clip <= 0:
        raise ValueError(f"the score clip must be > 0, got {clip}")
    normalised = (scores - mean) / std
    if clip is not None:
        normalised = normalised.clamp(-clip, clip)
    return normalised


def safety_penalty(p_unsafe: torch.Tensor, coef: float) -> torch.Tensor:
    """``coef * P(unsafe)`` per response: what is subtracted from its normalised score, ``[batch]``.

    Why the probability and not a cost on flagged responses: a flag is a step function of the
    filter's score, so a response just under the threshold would pay nothing and one just over it
    the whole cost; the probability gives the policy a graded signal (and a filter's flag is
    still logged, as the flagged fraction). It is subtracted *after* normalisation and clipping,
    like the missing-EOS penalty, so ``coef`` is in units of the reward model's standard deviation
    whatever the reward model's scale, and clipping never hides it; the KL penalty and any reward
    whitening come after it.
    """
    if coef < 0:
        raise ValueError(f"the safety penalty coefficient is subtracted and must be >= 0, got {coef}")
    if bool(((p_unsafe < 0) | (p_unsafe > 1)).any()):
        raise ValueError("P(unsafe) must lie within [0, 1]")
    return coef * p_unsafe.float()


def compute_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor,
                    beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards ``-beta * kl_t``, plus each row's score at its last real token.

    ``scores`` is ``[batch]`` (already normalised / penalised), ``kl`` the per-token KL estimate.
    Returns ``(rewards, non_score_rewards)``: the second is the KL part alone, for logging
    (TRL's ``objective/non_score_reward`` is its per-row sum, averaged).
    """
    mask = mask.bool()
    non_score = zero_outside(-beta * kl, mask)
    last = last_token_index(mask)
    if bool((last < 0).any()):
        raise ValueError("a response has no real token: it cannot receive a score")
    rows = torch.arange(mask.size(0), device=mask.device)
    rewards = non_score.clone()
    rewards[rows, last] += scores.to(rewards.dtype)
    return rewards, non_score


def whiten_rewards(rewards: torch.Tensor, mask: torch.Tensor, reduce_sum: ReduceSum | None = None) -> torch.Tensor:
    """Optional reward whitening (TRL's ``whiten_rewards``): unit spread, mean kept, pads at 0.

    It stabilises the value targets when the score scale drifts during training; it needs a big
    enough batch of real tokens for its variance to mean anything. ``reduce_sum``: over all processes.
    """
    return masked_whiten(rewards, mask, shift_mean=False, reduce_sum=reduce_sum)


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
                lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized Advantage Estimation over right-padded rows; returns ``(advantages, returns)``.

    ``values[:, t]`` is the value head's estimate before taking action ``t``. Values and rewards on
    padding are treated as 0, which makes the position after each row's last real token terminal
    (a truncated response is treated as finished too, as TRL does: the missing-EOS penalty is what
    tells the policy it did not finish). Both outputs are 0 on padding. The loop runs over the
    response length (tens to hundreds of steps), vectorised over the batch.
    """
    if not 0.0 <= gamma <= 1.0 or not 0.0 <= lam <= 1.0:
        raise ValueError(f"gamma and lam must be in [0, 1], got gamma={gamma}, lam={lam}")
    mask = mask.bool()
    rewards = zero_outside(rewards, mask)
    values = zero_outside(values, mask)
    length = rewards.size(1)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(length)):
        next_values = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = zero_outside(advantages, mask)
    returns = advantages + values
    return advantages, returns


def whiten_advantages(advantages: torch.Tensor, mask: torch.Tensor,
                      reduce_sum: ReduceSum | None = None) -> torch.Tensor:
    """Advantages centred and scaled to unit variance over the real tokens; 0 on padding.

    Why: it makes the policy-gradient step size independent of the reward scale and removes a
    common baseline; the returns (value targets) are computed *before* this and are not whitened.
    With ``reduce_sum`` (an all-reduce) the statistics are those of every process's tokens, so the
    whitened batch is the same however it is split over processes (as OpenRLHF and verl).
    """
    return masked_whiten(advantages, mask, shift_mean=True, reduce_sum=reduce_sum)
