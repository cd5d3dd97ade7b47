"""Every stage with a bf16 policy (``policy.dtype=bfloat16``, what ``auto`` gives on a bf16 checkpoint):
the stages on a transformers Trainer (SFT, reward, DPO, GRPO, RLOO) train float32 master weights, so
updates below bf16's resolution are kept, and every optimizer evaluates the SFT baseline at the same
precision as PPO, so their baselines are the same answers with the same scores."""

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli

#: A weight matrix every policy (and the reward model started from it) has.
WEIGHT = "model.layers.0.mlp.down_proj.weight"
#: Small enough that Adam's steps (about the learning rate per weight) are below half a bf16 step.
LR = "1e-6"
OPTIMISERS = ("dpo", "grpo", "rloo")


def stage_inputs(stage: str, run_dir) -> list[str]:
    return [f"{stage}.policy_path={run_dir / 'sft' / 'model'}", f"{stage}.reward_path={run_dir / 'reward' / 'model'}",
            f"{stage}.safety_baseline={run_dir / 'sft' / 'safety.json'}"]


@pytest.fixture(scope="module")
def bf16_runs(smoke_rm, tmp_path_factory) -> dict:
    """Each stage run once at ``scale=smoke`` with ``policy.dtype=bfloat16`` (the optimizers from the shared
    smoke SFT policy and reward model): ``{stage: its output folder}``."""
    out = {}
    for stage in ("sft", "reward", *OPTIMISERS, "ppo"):
        run = tmp_path_factory.mktemp(f"bf16-{stage}")
        extra = {"sft": [f"sft.lr={LR}"], "reward": [f"reward_model.lr={LR}", f"reward.sft_path={smoke_rm / 'sft' / 'model'}"],
                 "ppo": ["ppo.mixed_precision=bf16"]}.get(stage, [f"{stage}.lr={LR}"])
        inputs = stage_inputs(stage, smoke_rm) if stage in (*OPTIMISERS, "ppo") else []
        result = run_cli(f"alignment.stages.{stage}", "scale=smoke", "policy.dtype=bfloat16", *inputs, *extra,
                         f"run.dir={run}")
        assert result.returncode == 0, (stage, result.stderr[-3000:])
        out[stage] = run / stage
    return out


def starting_weights(stage: str, out, smoke_rm) -> torch.Tensor:
    if stage == "sft":  # the tiny policy built from scratch
        return load_file(f"{json.loads((out / 'metrics.json').read_text())['policy_init']}/model.safetensors")[WEIGHT]
    return load_file(smoke_rm / "sft" / "model" / "model.safetensors")[WEIGHT]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["sft", "reward", *OPTIMISERS])
def test_a_bf16_policy_trains_on_float32_masters_that_keep_updates_below_bf16s_resolution(stage, bf16_runs, smoke_rm):
    out = bf16_runs[stage]
    last = max((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    trained = load_file(last / "model.safetensors")[WEIGHT]
    assert trained.dtype == torch.float32  # the Trainer's own weights: the masters
    start = starting_weights(stage, out, smoke_rm).float().to(torch.bfloat16).float()  # as loaded in bf16
    delta = trained - start
    moved = (delta != 0).float().mean().item()
    assert moved > 0.9, moved
    # the same moves made on bf16 weights: most round away, which is what pure bf16 training would keep
    kept_by_bf16 = ((start + delta).to(torch.bfloat16).float() != start).float().mean().item()
    assert kept_by_bf16 < 0.5, kept_by_bf16
    if stage in ("sft", *OPTIMISERS):  # the exported policy is in the dtype it was loaded in
        assert load_file(out / "model" / "model.safetensors")[WEIGHT].dtype == torch.bfloat16


@pytest.mark.slow
@pytest.mark.parametrize("stage", OPTIMISERS)
def test_every_optimizer_evaluates_the_sft_baseline_as_ppo_does(stage, bf16_runs):
    def baseline(out):
        rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
        return [(r["prompt"], r["sft"], r["proxy_sft"], r.get("gold_sft")) for r in rows]

    assert baseline(bf16_runs[stage]) == baseline(bf16_runs["ppo"])
    figures = [json.loads((bf16_runs[s] / "metrics.json").read_text())["baseline"] for s in (stage, "ppo")]
    assert figures[0] == figures[1]


@pytest.mark.slow
def test_a_float16_policy_is_refused_on_a_cpu_with_one_line(smoke_rm, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 autocast with a loss scaler runs on a GPU")
    run = tmp_path / "run"
    result = run_cli("alignment.stages.dpo", "scale=smoke", "policy.dtype=float16", *stage_inputs("dpo", smoke_rm),
                     f"run.dir={run}", timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "policy.dtype=float16" in errors[0] and "bfloat16" in errors[0], result.stderr[-2000:]
    assert not run.exists()


def test_at_scale_full_the_trl_optimizers_take_a_pretrained_policys_learning_rate():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from trl import DPOConfig, GRPOConfig, RLOOConfig

    from alignment import CONF_DIR
    from alignment.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="dpo", overrides=["scale=full"]))
    for stage, trl_config in zip(OPTIMISERS, (DPOConfig, GRPOConfig, RLOOConfig)):
        # TRL's default for a pretrained policy, and no more than PPO's
        assert getattr(cfg, stage).lr <= trl_config.learning_rate <= cfg.ppo.lr, stage


def test_ppo_takes_its_precision_after_a_stage_that_set_another_in_the_same_process(tmp_path):
    """align-pipeline runs the stages in one process: after the reward stage's Trainer (float32), PPO at
    scale=full asks accelerate for bf16, which accelerate refuses once a precision is set."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from omegaconf import OmegaConf

    from alignment.config import Config
    from alignment.stages.ppo import stage_accelerator

    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        Accelerator(cpu=True)  # what the stage before left
        with pytest.raises(ValueError, match="already been initialized"):
            Accelerator(cpu=True, mixed_precision="bf16")
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config),
                                                  OmegaConf.from_dotlist(["ppo.mixed_precision=bf16"])))
        assert stage_accelerator(cfg, tmp_path).mixed_precision == "bf16"
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
