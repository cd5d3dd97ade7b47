"""The KL penalty: per-token estimators of KL(policy || reference) and the controllers of its weight.

PPO for RLHF maximises ``score - beta * KL(pi || pi_ref)``: the penalty keeps the policy close to
the SFT model it started from, where the reward model's judgement can still be trusted. The KL of
a whole response is estimated from the sampled tokens only, one term per token, with
``logr = log pi_ref(x) - log pi(x)`` and ``r = pi_ref(x) / pi(x)`` (Schulman, "Approximating KL
Divergence", http://joschu.net/blog/kl-approx.html):

* ``k1 = -logr``                 unbiased, high variance, can be negative per token;
* ``k2 = logr ** 2 / 2``          biased, low variance, always >= 0;
* ``k3 = (r - 1) - logr``         unbiased, low variance, always >= 0.

TRL's PPOTrainer offered ``k1`` (default) and ``k3``; ``k2`` is here for completeness (it is the
estimator whose *gradient* is that of the KL, used by some GRPO-style losses).

``beta`` is either fixed or adapted so that the measured KL tracks a target (Ziegler et al. 2019,
"Fine-Tuning Language Models from Human Preferences", section 2.2). Both controllers have
``state_dict()`` / ``load_state_dict()`` with plain Python numbers, so a checkpoint restores the
exact same ``beta`` trajectory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from alignment.registry import Registry

KLEstimatorFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: The per-token estimators by name (``ppo.kl.estimator``; :class:`alignment.config.KLEstimator`
#: lists the same names for the schema).
KL_ESTIMATORS: Registry[KLEstimatorFn] = Registry("KL estimator")


# --------------------------------------------------------------------------------------------------
# Per-token estimators
# --------------------------------------------------------------------------------------------------

@KL_ESTIMATORS.register("k1")
def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """``log pi - log pi_ref`` per token: the naive, unbiased estimator."""
    return logprobs - ref_logprobs


@KL_ESTIMATORS.register("k2")
def kl_k2(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """``(log pi - log pi_ref) ** 2 / 2`` per token: biased but never negative."""
    return 0.5 * (logprobs - ref_logprobs) ** 2


#: The k3 estimator's per-token bound, in nats (verl's): ``exp(log r)`` is unbounded, and one token the
#: reference finds far likelier than the policy does (``log r = 12``: 1.6e5 nats) would swamp the
#: penalty of a whole batch. ``log r`` itself is clamped to +-20 first, so ``exp`` stays finite.
K3_CLAMP = 10.0


@KL_ESTIMATORS.register("k3")
def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """``(r - 1) - log r`` with ``r = pi_ref / pi`` per token: unbiased and never negative; clamped
    to at most :data:`K3_CLAMP` nats per token (as verl)."""
    logr = (ref_logprobs - logprobs).clamp(-20.0, 20.0)
    return (torch.expm1(logr) - logr).clamp(max=K3_CLAMP)


def per_token_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1",
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """The chosen estimator per token, 0 where ``mask`` is False (padding never costs KL)."""
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; expected one of {list(KL_ESTIMATORS)}")
    kl = KL_ESTIMATORS[estimator](logprobs, ref_logprobs)
    if mask is not None:
        kl = torch.where(mask.bool(), kl, torch.zeros((), dtype=kl.dtype, device=kl.device))
    return kl


def sequence_kl(kl: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL of each whole response: the sum of its per-token terms, shape ``[batch]``.

    Its batch mean is what TRL logs as ``objective/kl`` and what the adaptive controller tracks.
    """
    if mask is not None:
        kl = torch.where(mask.bool(), kl, torch.zeros((), dtype=kl.dtype, device=kl.device))
    return kl.sum(dim=-1)


# --------------------------------------------------------------------------------------------------
# Controllers of beta
# --------------------------------------------------------------------------------------------------

class FixedKLController:
    """A constant ``beta``. ``update`` is accepted (and ignored) so trainers need not branch."""

    kind = "fixed"

    def __init__(self, beta: float) -> None:
        if beta < 0:
            raise ValueError(f"the KL coefficient must be >= 0, got {beta}")
        self.value = float(beta)

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> float:
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_kind(state, self.kind)
        self.value = float(state["value"])


class AdaptiveKLController:
    """Ziegler et al.'s proportional controller: ``beta`` follows the KL towards ``target``.

    After each rollout batch with measured KL ``current`` (the mean over responses of their summed
    per-token KL, see :func:`sequence_kl`):

        error = clip(current / target - 1, -0.2, 0.2)
        beta  = beta * (1 + error * n_steps / horizon)

    ``n_steps`` is the number of *samples* (responses) the batch held and ``horizon`` is in samples
    too (10,000 in Ziegler et al.), so the speed of adaptation does not depend on the batch size.
    The clip keeps one outlier batch from moving ``beta`` by more than ``20% * n_steps / horizon``.
    This is exactly TRL's (and OpenAI lm-human-preferences') ``AdaptiveKLController``.
    """

    kind = "adaptive"

    def __init__(self, init_beta: float, target: float, horizon: float) -> None:
        if init_beta < 0:
            raise ValueError(f"the initial KL coefficient must be >= 0, got {init_beta}")
        if target <= 0:
            raise ValueError(f"the KL target must be > 0, got {target}")
        if horizon <= 0:
            raise ValueError(f"the KL horizon must be > 0, got {horizon}")
        self.value = float(init_beta)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> float:
        """Adapt ``beta`` to the KL measured on a batch of ``n_steps`` samples; returns the new beta."""
        current = float(current_kl)
        error = min(max(current / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``beta`` and the settings it was adapted under, for an exact resume."""
        _check_kind(state, self.kind)
        self.value = float(state["value"])
        self.target = float(state["target"])
        self.horizon = float(state["horizon"])


KLController = FixedKLController | AdaptiveKLController


def make_kl_controller(beta: float, adaptive: bool = False, target: float | None = None,
                       horizon: float = 10_000) -> KLController:
    """A fixed controller, or an adaptive one starting at ``beta`` (which then needs a ``target``)."""
    if not adaptive:
        return FixedKLController(beta)
    if target is None:
        raise ValueError("an adaptive KL controller needs a target KL")
    return AdaptiveKLController(beta, target, horizon)


def _check_kind(state: dict[str, Any], kind: str) -> None:
    if state.get("kind") != kind:
        raise ValueError(f"cannot load a {state.get('kind')!r} KL controller state into a {kind!r} "
                         "controller (did the KL settings change between the run and its resume?)")
