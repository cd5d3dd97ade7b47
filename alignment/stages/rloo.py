"""``align-rloo``: REINFORCE Leave-One-Out with TRL's ``RLOOTrainer`` on our reward.

``rloo.num_generations`` answers per training prompt; an answer's advantage is its reward less the
mean reward of the prompt's other answers (optionally whitened over the batch:
``rloo.normalize_advantages``). The KL to the reference (the SFT policy) is the k1 log-ratio summed over
the answer and subtracted from its reward with weight ``rloo.beta``, as PPO's penalty. The reward, the
sampling budget and the end of the stage are shared with ``align-grpo``: see
:mod:`alignment.stages.group_rl`.
"""

from __future__ import annotations

from omegaconf import DictConfig
from trl import RLOOConfig, RLOOTrainer

from alignment.config import Config
from alignment.stages.common import stage_main
from alignment.stages.group_rl import run_group_stage

STAGE = "rloo"


def run(cfg: Config, raw: DictConfig) -> int:
    c = cfg.rloo
    return run_group_stage(cfg, raw, STAGE, RLOOTrainer, RLOOConfig, dict(normalize_advantages=c.normalize_advantages))


main = stage_main(STAGE, run)

if __name__ == "__main__":
    main()
