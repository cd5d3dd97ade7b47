"""A NaN loss, or a finite loss whose gradient overflows, on one of two processes stops both, promptly,
with the same clear error and before the weights change (under DDP and under DeepSpeed ZeRO-2, whose
engine steps itself); and the processes' group waits in a collective as long as it is told to (the main
process evaluates while the others wait).

Run by pytest, the test launches this very file on two CPU processes (gloo) through ``accelerate launch``;
run as a script, it is one of those processes: a PPO update poisoned on process 1 only.
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
#: What each poison makes the error say.
ERRORS = {"loss": "the PPO loss became NaN or infinite on 1 process(es) at update 1",
          "gradient": "the PPO gradient norm became "}


@pytest.mark.slow
@pytest.mark.parametrize("engine, poison", [("cpu_2proc", "loss"), ("zero2", "loss"), ("cpu_2proc", "gradient"),
                                            ("zero2", "gradient")])
def test_a_non_finite_loss_or_gradient_on_one_rank_stops_both_ranks_with_a_clear_error(engine, poison, smoke_sft):
    if engine == "zero2":
        pytest.importorskip("deepspeed", reason="DeepSpeed engines need `pip install deepspeed` (DS_BUILD_OPS=0)")
    command = [sys.executable, "-m", "accelerate.commands.launch",
               "--config_file", os.path.join(ROOT, "conf", "accelerate", f"{engine}.yaml"),
               "--num_processes", "2", "--mixed_precision", "no",
               os.path.abspath(__file__), str(smoke_sft / "sft" / "model"), poison]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for rank in (0, 1):
        assert f"rank {rank}: {ERRORS[poison]}" in output, output[-3000:]
        assert f"rank {rank}: weights unchanged" in output, output[-3000:]
        assert f"rank {rank}: collectives wait 1:12:01" in output, output[-3000:]


def poisoned_update(policy_path: str, poison: str) -> None:
    """One PPO update on this process; on process 1 the values are NaN (``loss``: only its loss is not
    finite) or the gradient of one weight is scaled by NaN (``gradient``: every loss is finite)."""
    import torch
    from accelerate import Accelerator

    from alignment.ppo.engines import launch_options

    accelerator = Accelerator(**launch_options(collective_timeout_s=4321))
    group = torch.distributed.group.WORLD._get_backend(torch.device("cpu"))
    print(f"rank {accelerator.process_index}: collectives wait {group.options._timeout}", flush=True)
    cfg = PPOStageConfig(batch_size=4, mini_batch_size=4, ppo_epochs=1, value_model="head")
    cfg.generation.max_new_tokens = 8
    model, tok = load_policy(PolicyConfig(), path=policy_path)
    trainer = PPOTrainer(cfg, accelerator, model, policy_path, tok, lambda p, t: np.zeros(len(t)), 0.0, 1.0,
                         [p.text for p in DemoWorld(0).prompts("train")], seed=0, num_updates=1)
    if accelerator.process_index == 1 and poison == "loss":
        at_step = trainer.forward.at_step

        def nan_values(*args):
            logits, values = at_step(*args)
            return logits, values * float("nan")

        trainer.forward.at_step = nan_values
    elif accelerator.process_index == 1:
        trainer.policy().model.layers[0].mlp.down_proj.weight.register_hook(lambda grad: grad * float("nan"))
    before = {k: v.detach().clone() for k, v in trainer.policy().named_parameters()}
    try:
        trainer.step()
    except NonFiniteLossError as err:
        print(f"rank {accelerator.process_index}: {err}", flush=True)
        same = all(torch.equal(before[k], v) for k, v in trainer.policy().named_parameters())
        print(f"rank {accelerator.process_index}: weights {'unchanged' if same else 'changed'}", flush=True)
        sys.exit(3)
    print(f"rank {accelerator.process_index}: finished", flush=True)


if __name__ == "__main__":
    poisoned_update(sys.argv[1], sys.argv[2])
