"""The PPO objective: clipped policy loss, clipped value loss, and the statistics worth logging.

During the optimisation phase each mini-batch is re-scored by the current policy and value head and
compared with what was recorded at rollout time (``old_logprobs``, ``old_values``). With
``ratio = exp(logprobs - old_logprobs)`` per token (Schulman et al. 2017):

    policy loss = mean over real tokens of  max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps))
    value loss  = 0.5 * mean over real tokens of  max((V - R)^2, (clip(V, V_old +- eps_v) - R)^2)
    loss        = policy loss + vf_coef * value loss - entropy_coef * entropy

The max makes both losses pessimistic: once a token's ratio (or value) has moved more than the
clip range in the direction the loss wants, its gradient is zero. All means are over the real
tokens of the mini-batch (TRL's ``masked_mean``). Statistics come back as detached 0-d tensors, so
a trainer can accumulate them without a device sync per micro-batch.
"""

from __future__ import annotations

import torch

from alignment.ppo.rollout_math import (
    LOGPROB_CHUNK,
    as_float32,
    masked_mean,
    masked_var,
    per_chunk,
    position_chunks,
    zero_outside,
)


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float = 0.2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped surrogate loss, and ``clipfrac``, ``approxkl``, ``approxkl_k3``, ``ratio``.

    * ``clipfrac``: share of real tokens where the clipped term was the larger (so no gradient);
    * ``approxkl``: ``0.5 * mean((logprobs - old_logprobs)^2)``, TRL's ``policy/approxkl`` (k2 of
      old -> new); TRL averaged it over *all* positions, pads included (they contribute 0 there and
      dilute it); we average over real tokens only, like every other statistic here;
    * ``approxkl_k3``: ``mean((ratio - 1) - log ratio)``, the unbiased, non-negative estimator of
      KL(old || new), worth watching for an early stop;
    * ``ratio``: mean ratio over real tokens (TRL's ``val/ratio``), 1 at the first step.
    """
    mask = mask.bool()
    logratio = zero_outside(logprobs - old_logprobs, mask)  # pads may hold any filler
    ratio = torch.exp(logratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "approxkl": 0.5 * masked_mean(logratio**2, mask),
            "approxkl_k3": masked_mean(torch.expm1(logratio) - logratio, mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float = 0.2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped value loss (``0.5 * max`` of squared errors, as TRL), and ``clipfrac``.

    Clipping the value around its rollout-time estimate keeps the value head from chasing one noisy
    batch of returns (Huang et al. 2024 note it rarely helps and never hurts much; a large
    ``cliprange_value`` turns it off).
    """
    mask = mask.bool()
    clipped_values = torch.clamp(values, old_values - cliprange_value, old_values + cliprange_value)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(unclipped_error, clipped_error), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((clipped_error > unclipped_error).float(), mask)}
    return loss, stats


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0, chunk: int = LOGPROB_CHUNK) -> torch.Tensor:
    """Entropy of ``softmax(logits / temperature)`` per position, float32: ``logsumexp(l) - sum(softmax(l) * l)``.

    Pass the sampling temperature, so it is the entropy of the sampling distribution. Like the
    log-probs it runs over ``chunk`` positions of a row at a time in float32 (recomputed in the
    backward pass under autograd), so no float32 copy of all the logits is materialised.
    """
    out = [per_chunk(_chunk_entropy, part, temperature).reshape(-1) for part in position_chunks(logits, chunk)]
    return torch.cat(out).reshape(logits.shape[:-1])


def _chunk_entropy(part: torch.Tensor, temperature: float) -> torch.Tensor:
    part = as_float32(part)
    if temperature != 1.0:
        part = part / temperature
    return torch.logsumexp(part, dim=-1) - (torch.softmax(part, dim=-1) * part).sum(dim=-1)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - Var(returns - values) / Var(returns)`` over real tokens: 1 is a perfect value head,
    0 is no better than a constant, negative is worse. NaN when the returns are constant."""
    mask = mask.bool()
    with torch.no_grad():
        var_returns = masked_var(returns, mask)
        ratio = masked_var(returns - values, mask) / var_returns
        return torch.where(var_returns > 0, 1.0 - ratio, torch.full_like(ratio, float("nan")))


def ppo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
             values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
             cliprange: float = 0.2, cliprange_value: float = 0.2, vf_coef: float = 0.1,
             logits: torch.Tensor | None = None, entropy_coef: float = 0.0,
             temperature: float = 1.0, entropy: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The total loss of one (micro-)batch and its statistics, under the names a trainer logs.

    ``logits`` (``[batch, length, vocab]``, divided by ``temperature`` here) are only needed for the
    entropy bonus, or the statistic when ``entropy`` (per position, as
    :func:`~alignment.ppo.rollout_math.logprobs_and_entropy` gives it with the log-probs) is not passed;
    with neither, ``policy/entropy`` is absent and ``entropy_coef`` must be 0.
    The defaults are TRL's PPOTrainer defaults (``cliprange=0.2``, ``cliprange_value=0.2``,
    ``vf_coef=0.1``, no entropy bonus).
    """
    mask = mask.bool()
    pg_loss, pg_stats = policy_loss(logprobs, old_logprobs, advantages, mask, cliprange)
    vf_loss, vf_stats = value_loss(values, old_values, returns, mask, cliprange_value)
    loss = pg_loss + vf_coef * vf_loss
    stats: dict[str, torch.Tensor] = {
        "loss/policy": pg_loss.detach(),
        "loss/value": vf_loss.detach(),
        "policy/clipfrac": pg_stats["clipfrac"],
        "policy/approxkl": pg_stats["approxkl"],
        "policy/approxkl_k3": pg_stats["approxkl_k3"],
        "policy/ratio": pg_stats["ratio"],
        "value/clipfrac": vf_stats["clipfrac"],
    }
    if entropy is not None and not entropy_coef:
        stats["policy/entropy"] = masked_mean(entropy.detach(), mask)
    elif logits is not None:
        with torch.set_grad_enabled(torch.is_grad_enabled() and bool(entropy_coef)):  # no graph for a statistic
            entropy = masked_mean(entropy_from_logits(logits, temperature), mask)
        if entropy_coef:
            loss = loss - entropy_coef * entropy
        stats["policy/entropy"] = entropy.detach()
    elif entropy_coef:
        raise ValueError("entropy_coef > 0 needs the logits")
    stats["loss/total"] = loss.detach()
    return loss, stats
