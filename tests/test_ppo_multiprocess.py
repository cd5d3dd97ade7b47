"""A NaN loss on one of two processes stops both, promptly, with the same clear error and before the
optimizer step (under DDP and under DeepSpeed ZeRO-2, whose engine steps itself).

Run by pytest, the test launches this very file on two CPU processes (gloo) through ``accelerate launch``;
run as a script, it is one of those processes: a PPO update whose values are NaN on process 1 only.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from alignment.config import PolicyConfig, PPOStageConfig
from alignment.data.world import DemoWorld
from alignment.modeling import load_policy
from alignment.ppo.trainer import NonFiniteLossError, PPOTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["cpu_2proc", "zero2"])
def test_a_nan_on_one_rank_stops_both_ranks_with_a_clear_error(engine, smoke_sft):
    if engine == "zero2":
        pytest.importorskip("deepspeed", reason="DeepSpeed engines need `pip install deepspeed` (DS_BUILD_OPS=0)")
    command = [sys.executable, "-m", "accelerate.commands.launch",
               "--config_file", os.path.join(ROOT, "conf", "accelerate", f"{engine}.yaml"),
               "--num_processes", "2", "--mixed_precision", "no",
               os.path.abspath(__file__), str(smoke_sft / "sft" / "model")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for rank in (0, 1):
        assert f"rank {rank}: the PPO loss became NaN or infinite on 1 process(es) at update 1" in output, output[-3000:]
        assert f"rank {rank}: weights unchanged, 0 optimizer steps" in output, output[-3000:]


def poisoned_update(policy_path: str) -> None:
    """One PPO update on this process; process 1's values are NaN, so only its loss is."""
    import torch
    from accelerate import Accelerator

    from alignment.ppo.engines import cpu_launch_options

    accelerator = Accelerator(**cpu_launch_options())
    cfg = PPOStageConfig(batch_size=4, mini_batch_size=4, ppo_epochs=1, value_model="head")
    cfg.generation.max_new_tokens = 8
    model, tok = load_policy(PolicyConfig(), path=policy_path)
    trainer = PPOTrainer(cfg, accelerator, model, policy_path, tok, lambda p, t: np.zeros(len(t)), 0.0, 1.0,
                         [p.text for p in DemoWorld(0).prompts("train")], seed=0, num_updates=1)
    if accelerator.process_index == 1:
        at_step = trainer.forward.at_step

        def nan_values(*args):
            logits, values = at_step(*args)
            return logits, values * float("nan")

        trainer.forward.at_step = nan_values
    before = {k: v.detach().clone() for k, v in trainer.policy().named_parameters()}
    try:
        trainer.step()
    except NonFiniteLossError as err:
        print(f"rank {accelerator.process_index}: {err}", flush=True)
        same = all(torch.equal(before[k], v) for k, v in trainer.policy().named_parameters())
        # a DeepSpeed engine counts its steps, also those it skips for a non-finite gradient
        steps = getattr(trainer.model, "global_steps", 0)
        print(f"rank {accelerator.process_index}: weights {'unchanged' if same else 'changed'}, {steps} optimizer steps",
              flush=True)
        sys.exit(3)
    print(f"rank {accelerator.process_index}: finished", flush=True)


if __name__ == "__main__":
    poisoned_update(sys.argv[1])
