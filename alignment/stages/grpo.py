"""``align-grpo``: Group Relative Policy Optimisation with TRL's ``GRPOTrainer`` on our reward.

``grpo.num_generations`` answers per training prompt; an answer's advantage is its score less its
group's mean, divided by the group's std (``grpo.scale_rewards=group``; ``batch`` or ``none``); the KL to
the reference (the SFT policy) is Schulman's k3 estimator added to the per-token loss with weight
``grpo.beta``; ``grpo.loss_type`` sets how token losses are averaged (``dapo``, TRL's default, or ``grpo``,
``dr_grpo``, ``bnpo``). The reward, the sampling budget and the end of the stage are shared with
``align-rloo``: see :mod:`alignment.stages.group_rl`.
"""

from __future__ import annotations

from omegaconf import DictConfig
from trl import GRPOConfig, GRPOTrainer

from alignment.config import Config
from alignment.stages.common import stage_main
from alignment.stages.group_rl import run_group_stage

STAGE = "grpo"


def run(cfg: Config, raw: DictConfig) -> int:
    c = cfg.grpo
    return run_group_stage(cfg, raw, STAGE, GRPOTrainer, GRPOConfig, dict(loss_type=c.loss_type.value, scale_rewards=c.scale_rewards.value))


main = stage_main(STAGE, run)

if __name__ == "__main__":
    main()
