"""The PPO algorithm's math as pure torch functions (the trainer loop lives elsewhere).

Read in this order, which is the order of one PPO iteration:

* :mod:`~alignment.ppo.rollout_math`: log-probs of sampled tokens, truncation at the first EOS,
  masks, the missing-EOS penalty, masked mean / variance / whitening;
* :mod:`~alignment.ppo.kl`: per-token KL estimators (k1, k2, k3) and the fixed / adaptive
  controllers of the KL coefficient;
* :mod:`~alignment.ppo.advantages`: the safety penalty, per-token rewards, GAE, returns, whitening;
* :mod:`~alignment.ppo.losses`: clipped policy and value losses, entropy, statistics.

References: Huang et al. 2024, "The N Implementation Details of RLHF with PPO" and its TL;DR
follow-up (arXiv 2403.17031); Ziegler et al. 2019; TRL's PPOTrainer (trl <= 1.12).
"""

from alignment.ppo.advantages import (
    compute_gae,
    compute_rewards,
    normalise_scores,
    safety_penalty,
    whiten_advantages,
    whiten_rewards,
)
from alignment.ppo.kl import (
    KL_ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    KLController,
    kl_k1,
    kl_k2,
    kl_k3,
    make_kl_controller,
    per_token_kl,
    sequence_kl,
)
from alignment.ppo.losses import (
    entropy_from_logits,
    explained_variance,
    policy_loss,
    ppo_loss,
    value_loss,
)
from alignment.ppo.rollout_math import (
    TruncatedResponses,
    apply_missing_eos_penalty,
    first_true_indices,
    last_token_index,
    logprobs_and_entropy,
    logprobs_from_logits,
    mask_from_lengths,
    masked_mean,
    masked_var,
    masked_whiten,
    truncate_after_eos,
    zero_outside,
)

__all__ = [
    "KL_ESTIMATORS",
    "AdaptiveKLController",
    "FixedKLController",
    "KLController",
    "TruncatedResponses",
    "apply_missing_eos_penalty",
    "compute_gae",
    "compute_rewards",
    "entropy_from_logits",
    "explained_variance",
    "first_true_indices",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "last_token_index",
    "logprobs_and_entropy",
    "logprobs_from_logits",
    "make_kl_controller",
    "mask_from_lengths",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "normalise_scores",
    "per_token_kl",
    "policy_loss",
    "ppo_loss",
    "safety_penalty",
    "sequence_kl",
    "truncate_after_eos",
    "value_loss",
    "whiten_advantages",
    "whiten_rewards",
    "zero_outside",
]
