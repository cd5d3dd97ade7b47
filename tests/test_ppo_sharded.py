"""PPO under DeepSpeed ZeRO-2, ZeRO-3 and FSDP2 on two CPU processes (gloo), with and without LoRA: the
engine starts, wraps or partitions the weights, samples correctly from gathered weights, evaluates on the
main process alone, checkpoints (a state dict) and goes on sampling, and exports the full weights put
together from both processes' shards; and the PPO stage with LoRA under ZeRO-2 and ZeRO-3 finishes.

Run by pytest, a test launches this very file on two processes through ``accelerate launch`` with the
engine's own config from ``conf/accelerate``; run as a script, it is one of those processes.

accelerate 1.16 builds FSDP only for GPU-like devices (its state falls back to DDP over gloo when asked
for the CPU), so for ``fsdp`` the script sets accelerate's state as it does on GPUs (:func:`accelerator`);
everything past that (FSDP2's ``fully_shard`` over a gloo CPU mesh, our trainer) is the real thing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
#: ``<engine>`` or ``<engine>+lora`` (the reference is then the sharded policy itself, adapters off).
ENGINES = ["zero2", "zero3", "fsdp", "zero3+lora", "fsdp+lora"]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_ppo_under_a_sharded_engine_samples_evaluates_and_exports_the_gathered_weights(engine, smoke_sft, tmp_path):
    if engine.startswith("zero"):
        pytest.importorskip("deepspeed", reason="DeepSpeed engines need `pip install deepspeed` (DS_BUILD_OPS=0)")
    command = [sys.executable, "-m", "accelerate.commands.launch",
               "--config_file", str(ROOT / "conf" / "accelerate" / f"{engine.removesuffix('+lora')}.yaml"),
               "--num_processes", "2", "--mixed_precision", "no",
               __file__, engine, str(smoke_sft / "sft" / "model"), str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, env=os.environ.copy())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["wrapped"], report
    assert report["exported_equals_gathered"] and report["moved"], report
    assert report["sampled_as_the_exported_model"], report
    assert report["evals"] == 1 and report["checkpoint"], report

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    out = model.generate(input_ids=torch.tensor([[1, 2, 3]]), max_new_tokens=4, do_sample=False)
    assert out.shape[1] > 3


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["zero2", "zero3"])
def test_the_ppo_stage_with_lora_finishes_under_zero_with_its_outputs(engine, smoke_rm, tmp_path):
    """As a user runs it (the engine's config as it is, bf16 included): with LoRA the reference is the
    live policy with its adapters off, sharded under ZeRO-3, so every evaluation against it must be
    entered by every process, and the final one must not need the processes that have finished."""
    pytest.importorskip("deepspeed", reason="DeepSpeed engines need `pip install deepspeed` (DS_BUILD_OPS=0)")
    run = tmp_path / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch",
               "--config_file", str(ROOT / "conf" / "accelerate" / f"{engine}.yaml"), "--num_processes", "2",
               "-m", "alignment.stages.ppo", "scale=smoke", "ppo.lora.enabled=true",
               f"ppo.policy_path={smoke_rm / 'sft' / 'model'}", f"ppo.reward_path={smoke_rm / 'reward' / 'model'}",
               f"ppo.safety_baseline={smoke_rm / 'sft' / 'safety.json'}", f"run.dir={run}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    metrics = json.loads((run / "ppo" / "metrics.json").read_text())
    assert metrics["lora"] and metrics["processes"] == 2 and metrics["updates"] == 2
    assert metrics["trainable_parameters"] > 0 and isinstance(metrics["kl_sft"], float)
    assert (run / "ppo" / "model" / "config.json").is_file() and (run / "ppo" / "adapter" / "adapter_config.json").is_file()


def accelerator(engine: str):
    """The engine's accelerator on CPU processes; for FSDP, accelerate's state set as on GPUs."""
    from accelerate import Accelerator

    from alignment.ppo.engines import launch_options

    if engine != "fsdp":
        return Accelerator(**launch_options())  # DeepSpeed's CPU accelerator joins the processes over gloo
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    acc = Accelerator(cpu=True)  # MULTI_CPU: gloo process group, DDP unless told otherwise
    acc.state.fsdp_plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2, auto_wrap_policy="transformer_based_wrap", reshard_after_forward=True,
        state_dict_type="SHARDED_STATE_DICT")
    # both shared states: every AcceleratorState() (prepare makes some) copies the process state's type over its own
    PartialState().distributed_type = acc.state.distributed_type = DistributedType.FSDP
    return acc


def run_process(engine: str, policy_path: str, out: Path) -> None:
    from alignment.config import PolicyConfig, PPOStageConfig
    from alignment.data.world import DemoWorld
    from alignment.generation import sample_tokens
    from alignment.modeling import load_policy
    from alignment.ppo.engines import load_models_whole
    from alignment.ppo.trainer import PPOTrainer

    engine, lora = engine.removesuffix("+lora"), engine.endswith("+lora")
    acc = accelerator(engine)
    load_models_whole(acc)
    if engine == "zero3":  # DeepSpeed keeps parameters under 1e5 elements whole: all of this tiny model's
        acc.state.deepspeed_plugin.deepspeed_config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    assert acc.num_processes == 2
    cfg = PPOStageConfig(batch_size=4, mini_batch_size=4, micro_batch_size=2, ppo_epochs=1, lr=1e-3,
                         value_model="separate", eval_every=1, save_every=1)
    cfg.generation.max_new_tokens = 8
    cfg.lora.enabled, cfg.lora.r = lora, 4  # with LoRA the reference is the sharded policy itself, adapters off
    model, tok = load_policy(PolicyConfig(), path=policy_path)
    prompts = [p.text for p in DemoWorld(0).prompts("train")]
    trainer = PPOTrainer(cfg, acc, model, policy_path, tok, lambda p, t: np.array([-len(x) / 10 for x in t]),
                         0.0, 1.0, prompts, seed=0, num_updates=1)
    # a collective when sharded; under ZeRO-3 and FSDP only the main process receives the weights
    before = {k: v.clone() for k, v in (acc.get_state_dict(trainer.model) or {}).items()}
    wrapped = wrapped_as_configured(engine, trainer)

    def sample(policy, ids, mask):
        return sample_tokens(policy, ids, mask, cfg.generation.max_new_tokens, cfg.generation.temperature,
                             trainer.stop_ids, tok.pad_token_id)

    def on_eval(update: int, policy) -> dict:  # the main process alone samples from the full weights
        ids = torch.tensor([tok.encode(prompts[0])])
        return {"update": update, "tokens": sample(policy, ids, torch.ones_like(ids)).shape[1]}

    trainer.train(out / "checkpoints", on_eval if acc.is_main_process else None)
    gathered = trainer.gather_policy()
    reference = acc.get_state_dict(trainer.model)  # accelerate's own gather: the yardstick

    # every process samples its own prompts from the gathered weights, stopping at its own EOS
    encoded = [tok.encode(p) for p in prompts[4 * acc.process_index:4 * acc.process_index + 4]]
    width = max(map(len, encoded))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(e)) + e for e in encoded])
    mask = (torch.arange(width)[None] >= torch.tensor([width - len(e) for e in encoded])[:, None]).long()
    torch.manual_seed(11)
    with trainer.full_policy() as policy:
        sampled = sample(policy, ids, mask)
    acc.wait_for_everyone()
    if not acc.is_main_process:
        return
    torch.manual_seed(11)
    again = sample(gathered, ids, mask)
    exported = {f"policy.{k}": v for k, v in gathered.state_dict().items()}
    same = all(torch.equal(v, reference[k].to(v.dtype)) for k, v in exported.items() if k in reference)
    covered = {k for k in reference if k.startswith("policy.")} <= set(exported)
    gathered.save_pretrained(out / "model")
    (out / "report.json").write_text(json.dumps({
        "wrapped": wrapped,
        "exported_equals_gathered": same and covered,
        "moved": any(not torch.equal(before[k], reference[k]) for k in before if k.startswith("policy.")),
        "sampled_as_the_exported_model": torch.equal(sampled, again),
        "evals": len(trainer.progress.evals),
        "checkpoint": any((out / "checkpoints").glob("update-*")),
    }))


def wrapped_as_configured(engine: str, trainer) -> bool:
    """FSDP: every decoder layer of the policy and the value backbone is its own FSDP unit. ZeRO-3:
    every parameter above DeepSpeed's persistence threshold is partitioned (this process holds none of
    them whole; smaller ones are kept whole by design). ZeRO-2: the engine runs stage 2."""
    if engine == "fsdp":
        from torch.distributed.fsdp import FSDPModule
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer

        layers = [m for m in trainer.model.modules() if isinstance(m, LlamaDecoderLayer)]
        policy_layers = trainer.policy().config.num_hidden_layers
        return len(layers) == 2 * policy_layers and all(isinstance(layer, FSDPModule) for layer in layers)
    stage = trainer.model.zero_optimization_stage()
    if engine == "zero3":
        large = [p for p in trainer.model.module.parameters() if p.ds_numel > trainer.model.zero_param_persistence_threshold()]
        return stage == 3 and bool(large) and all(p.numel() == 0 for p in large)
    return stage == 2


if __name__ == "__main__":
    run_process(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
