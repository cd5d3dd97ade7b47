"""The config schema: choices are enums checked while composing, ranges are checked by ``__post_init__``,
each once, and the enums change nothing a saved config or a pipeline fingerprint holds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from alignment import CONF_DIR
from alignment.config import (
    CandidatesStageConfig,
    Choice,
    Config,
    DataConfig,
    GRPOStageConfig,
    KLConfig,
    KLEstimator,
    LabelConfig,
    LoRAConfig,
    PipelineConfig,
    PipelineOptions,
    PPOStageConfig,
    RewardModelConfig,
    RewardTermsConfig,
    RLOOStageConfig,
    SafetyBackend,
    SafetyConfig,
    SFTStageConfig,
    register_configs,
)
from alignment.errors import UserError, config_error_line
from conftest import run_cli


def composed(config_name: str, *overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


@pytest.mark.parametrize("override, valid", [
    ("ppo.kl.estimator=k9", "[k1, k2, k3]"),
    ("ppo.value_model=shared", "[separate, head]"),
    ("reward_terms.safety_backend=nope", "[fast, default, classifier, llama_guard]"),
    ("eval.split=train", "[test, validation]"),
    ("safety.backend=nope", "[fast, default, classifier, llama_guard]"),
    ("reward_model.input_format=xml", "[chat, pair, concat]"),
    ("reward_model.pooling=max", "[default, mean]"),
    ("reward_model.head_init=zeros", "[random, probe]"),
    ("candidates.pairing=best", "[random, most_different]"),
    ("policy.dtype=fp8", "[auto, float32, bfloat16, float16]"),
    ("safety.llama_guard.dtype=int4", "[auto, float32, bfloat16, float16]"),
    ("labels.annotators=crowd", "[simulated, human]"),
    ("label.synchronous=OFF", "[NORMAL, FULL, EXTRA]"),
    ("label.reports_for=nobody", "[admins, everyone]"),
    ("label.command=serve-all", "[serve, add-user, deactivate, reactivate, import, export, stats, bots, migrate]"),
    ("pipeline.stages=[sft,rlhf]", "[sft, candidates, labels, reward, ppo]"),
])
def test_a_bad_choice_fails_while_composing_naming_the_valid_values(override, valid):
    with pytest.raises((HydraException, OmegaConfBaseException)) as caught:
        composed("pipeline", override)
    line = config_error_line(caught.value)
    key, value = override.split("=", 1)
    assert "\n" not in line and key in line and valid in line, line


@pytest.mark.parametrize("module, override, valid", [
    ("alignment.stages.ppo", "ppo.kl.estimator=k9", "expected one of [k1, k2, k3]"),
    ("alignment.stages.evaluate", "safety.backend=nope", "expected one of [fast, default, classifier, llama_guard]"),
])
@pytest.mark.slow
def test_a_bad_choice_exits_2_with_one_line(tmp_path, module, override, valid):
    run_dir = tmp_path / "run"
    result = run_cli(module, f"run.dir={run_dir}", override, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and override in lines[0] and valid in lines[0], result.stderr
    assert not run_dir.exists()


@pytest.mark.slow
def test_a_value_out_of_range_exits_2_before_any_work(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("alignment.stages.ppo", f"run.dir={run_dir}", "reward_terms.safety_penalty=-1", timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "reward_terms.safety_penalty=-1.0: must be >= 0" in result.stderr and "Traceback" not in result.stderr
    assert not run_dir.exists()


def test_align_label_rejects_a_bad_choice_or_range_with_exit_2(tmp_path, caplog):
    from alignment.labeling import main

    db = f"label.db={tmp_path / 'labels.db'}"
    assert main(["stats", db, "label.synchronous=sometimes"]) == 2
    assert "expected one of [NORMAL, FULL, EXTRA]" in caplog.text
    assert main(["stats", db, "label.overlap=0"]) == 2
    assert "label.overlap=0: must be >= 1" in caplog.text
    assert not (tmp_path / "labels.db").exists()


@pytest.mark.parametrize("build, message", [
    (lambda: RewardTermsConfig(safety_penalty=-0.5), "reward_terms.safety_penalty=-0.5: must be >= 0"),
    (lambda: RewardTermsConfig(missing_eos_penalty=-1.0), "reward_terms.missing_eos_penalty=-1.0"),
    (lambda: RewardTermsConfig(kl_coef=-0.1), "reward_terms.kl_coef=-0.1"),
    (lambda: GRPOStageConfig(batch_size=6, steps_per_generation=1), "a multiple of grpo.num_generations=4"),
    (lambda: RLOOStageConfig(steps_per_generation=3, grad_accum=2), "rloo.steps_per_generation=3"),
    (lambda: PPOStageConfig(lr=0.0), "ppo.lr=0.0: must be > 0"),
    (lambda: PPOStageConfig(batch_size=10, mini_batch_size=4), "a multiple of ppo.mini_batch_size=4"),
    (lambda: PPOStageConfig(total_episodes=8, batch_size=16, mini_batch_size=8), "ppo.total_episodes=8"),
    (lambda: PPOStageConfig(lam=1.5), "ppo.lam=1.5: must be within [0, 1]"),
    (lambda: PPOStageConfig(value_model="shared"), "ppo.value_model='shared' is not one of ['separate', 'head']"),
    (lambda: KLConfig(target=0.0), "ppo.kl.target=0.0: must be > 0"),
    (lambda: KLConfig(estimator="k9"), "ppo.kl.estimator='k9' is not one of ['k1', 'k2', 'k3']"),
    (lambda: LoRAConfig(r=0), "ppo.lora.r=0"),
    (lambda: LoRAConfig(dropout=1.0), "ppo.lora.dropout=1.0: must be within [0, 1)"),
    (lambda: LoRAConfig(target_modules=[]), "ppo.lora.target_modules=[]"),
    (lambda: DataConfig(eval_fraction=1.0), "data.eval_fraction=1.0: must be within (0, 1)"),
    (lambda: DataConfig(responses_per_prompt=0), "data.responses_per_prompt=0"),
    (lambda: CandidatesStageConfig(responses_per_prompt=1), "candidates.responses_per_prompt=1: must be >= 2"),
    (lambda: CandidatesStageConfig(responses_per_prompt=3, pairs_per_prompt=4), "within [1, 3]"),
    (lambda: LabelConfig(overlap=0), "label.overlap=0: must be >= 1"),
    (lambda: LabelConfig(gold_rate=1.5), "label.gold_rate=1.5"),
    (lambda: SafetyConfig(device="gpu"), "safety.device='gpu': must be auto, cpu, cuda or cuda:N"),
    (lambda: SafetyConfig(batch_size=0), "safety.batch_size=0"),
    (lambda: SafetyConfig(threshold=2.0), "safety.threshold=2.0"),
    (lambda: RewardModelConfig(epochs=0.0), "reward_model.epochs=0.0: must be > 0 (or null for reward.epochs)"),
    (lambda: RewardModelConfig(head_lr=0.0), "reward_model.head_lr=0.0"),
    (lambda: SFTStageConfig(lr=-1.0), "sft.lr=-1.0"),
    (lambda: PipelineConfig(rounds=0), "rounds=0: must be >= 1"),
    (lambda: PipelineOptions(stages=["sft", "rlhf"]), "pipeline.stages='rlhf' is not one of"),
])
def test_post_init_rejects_values_out_of_range(build, message):
    with pytest.raises(UserError) as caught:
        build()
    assert message in str(caught.value)


def test_an_override_out_of_range_fails_when_the_config_becomes_dataclasses():
    raw = composed("ppo", "ppo.kl.horizon=0")          # OmegaConf's merge does not run __post_init__ ...
    with pytest.raises(UserError, match=r"ppo\.kl\.horizon=0: must be > 0"):
        OmegaConf.to_object(raw)                       # ... the conversion every entry point does runs it


def test_the_defaults_and_valid_devices_pass():
    Config(), PipelineConfig()
    for device in ("auto", "cpu", "cuda", "cuda:1"):
        assert SafetyConfig(device=device).device == device


def test_choices_behave_as_their_values():
    cfg = OmegaConf.to_object(composed("ppo", "ppo.kl.estimator=k3", "ppo.value_model=head"))
    assert cfg.ppo.kl.estimator is KLEstimator.k3 and cfg.ppo.value_model == "head"
    assert f"{cfg.ppo.kl.estimator}" == str(cfg.ppo.kl.estimator) == "k3"
    assert json.dumps({"kl": cfg.ppo.kl.estimator}) == '{"kl": "k3"}'
    assert SafetyConfig(backend="fast").backend is SafetyBackend.fast   # built in Python: coerced
    for choice in Choice.__subclasses__():
        assert all(m.name == m.value for m in choice), f"{choice.__name__}: OmegaConf reads and writes names"


def test_saved_configs_spell_the_values():
    raw = composed("pipeline", "ppo.kl.estimator=k2", "safety=fast")
    saved = OmegaConf.create(OmegaConf.to_yaml(raw, resolve=True))
    assert saved.ppo.kl.estimator == "k2" and saved.safety.backend == "fast"
    assert list(saved.pipeline.stages) == ["sft", "candidates", "labels", "reward", "ppo"]
    assert OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(PipelineConfig), saved)).ppo.kl.estimator == "k2"


def test_pipeline_fingerprints_do_not_see_the_enums():
    """A fingerprint hashes the values: the same as for the config with plain strings in the enum fields."""
    from alignment.pipeline import fingerprint, plan, stage_config

    raw = composed("pipeline", "run.dir=/r", "ppo.kl.estimator=k3", "reward_model=minilm")
    for step in plan(OmegaConf.to_object(raw)):
        stage_raw = stage_config(raw, step)
        plain = OmegaConf.create(OmegaConf.to_container(stage_raw, resolve=True, enum_to_str=True))
        assert isinstance(OmegaConf.to_container(stage_raw)["policy"]["dtype"], Choice)
        assert fingerprint(stage_raw, step, "u") == fingerprint(plain, step, "u")


def test_registries_hold_exactly_the_schema_choices():
    from alignment.ppo.kl import KL_ESTIMATORS, per_token_kl
    from alignment.safety.backends import BACKENDS

    assert list(KL_ESTIMATORS) == [e.value for e in KLEstimator]
    assert list(BACKENDS) == [b.value for b in SafetyBackend]
    import torch

    logp, ref = torch.log(torch.tensor([[0.5]])), torch.log(torch.tensor([[0.25]]))
    assert torch.equal(per_token_kl(logp, ref, KLEstimator.k3), KL_ESTIMATORS["k3"](logp, ref))


def test_a_registry_refuses_a_second_implementation_under_one_name():
    from alignment.registry import Registry

    reg: Registry = Registry("widget")
    first = reg.register("a")(len)
    assert first is len and reg == {"a": len}
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        reg.register("a")(str)
    assert reg["a"] is len


def test_config_imports_nothing_from_the_demo_data():
    code = "import sys, alignment.config; print(sorted(m for m in sys.modules if m.startswith('alignment.data')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
