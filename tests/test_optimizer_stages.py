"""The stages on TRL's trainers (align-dpo, align-grpo, align-rloo): our reward as TRL reward functions,
and each stage trains, saves, evaluates and gates like align-ppo; a failed gate exits 3, bad input 2."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from alignment.safety.filter import ANY_INDEX, SCORE_COLUMNS
from alignment.stages.group_rl import OurRewards, SampleCount, optimizer_steps
from conftest import run_cli

EOS = 1


class ConstantScorer:
    """A reward model's scores, fixed per answer text (what a RewardScorer returns for them)."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def score(self, prompts, responses, desc=None):
        return np.array([self.scores[r] for r in responses])


class AnyScoreFilter:
    """A safety filter whose P(unsafe) of a text is fixed."""

    name = "fixed"
    thresholds = np.full(len(SCORE_COLUMNS), 0.5)

    def __init__(self, p_unsafe: dict[str, float]) -> None:
        self.p_unsafe = p_unsafe

    def score_all(self, texts, prompts=None):
        scores = np.zeros((len(texts), len(SCORE_COLUMNS)))
        scores[:, ANY_INDEX] = [self.p_unsafe[t] for t in texts]
        return scores


def test_our_reward_functions_sum_to_ppos_score():
    scorer = ConstantScorer({"good": 5.0, "bad": -1.0, "huge": 100.0})
    rewards = OurRewards(scorer, mean=1.0, std=2.0, clip=5.0, stop_ids=[EOS, 2], missing_eos_penalty=1.0,
                         safety_filter=AnyScoreFilter({"good": 0.1, "bad": 0.8, "huge": 0.0}), safety_penalty=2.0)
    completions = [[{"role": "assistant", "content": f" {t} "}] for t in ("good", "bad", "huge")]
    prompts = ["p1", "p2", "p3"]
    ids = [[7, 8, EOS], [7, 8, 9], [2]]  # 2: another stop id (Llama 3 has two)
    funcs = rewards.functions()
    assert [f.__name__ for f in funcs] == ["reward_model", "missing_eos", "safety"]
    parts = [f(prompts=prompts, completions=completions, completion_ids=ids, prompt_text=prompts) for f in funcs]
    # normalised (5-1)/2=2, (-1-1)/2=-1, (100-1)/2 clipped to 5; the EOS penalty on the second; 2 * P(unsafe)
    assert parts[0] == pytest.approx([2.0, -1.0, 5.0])
    assert parts[1] == pytest.approx([0.0, -1.0, 0.0])
    assert parts[2] == pytest.approx([-0.2, -1.6, 0.0])
    # what was scored is counted, once (by the reward model's function): 3 samples, 3 + 3 + 1 tokens, 3 prompts
    assert (rewards.count.samples, rewards.count.tokens, len(rewards.count.prompts)) == (3, 7, 3)
    terms = rewards.record("/r/reward/model", kl_coef=0.05)
    assert terms == {"reward_model": "/r/reward/model", "normalisation": {"mean": 1.0, "std": 2.0, "clip": 5.0},
                     "missing_eos_penalty": 1.0, "safety_penalty": 2.0, "safety_backend": "fixed", "kl_coef": 0.05,
                     "kl_control": "fixed"}
    assert [f.__name__ for f in OurRewards(scorer, 0.0, 1.0, 5.0, [EOS], None).functions()] == ["reward_model"]


def test_the_sample_count_is_saved_with_each_checkpoint_and_resumed(tmp_path):
    count = SampleCount(rank=1)
    count.add([[7, 8], [9]], ["p", "q"])
    count.on_save(SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(global_step=8), None)
    resumed = SampleCount(rank=1)
    resumed.resume(str(tmp_path / "checkpoint-8"))
    assert (resumed.samples, resumed.tokens, resumed.prompts) == (2, 3, {"p", "q"})
    other = SampleCount(rank=0)  # each process counts its own draws, in its own file
    other.resume(str(tmp_path / "checkpoint-8"))
    assert other.samples == 0


def test_the_sampling_budget_sets_the_steps(tmp_path):
    from omegaconf import OmegaConf

    from alignment.config import Config

    raw = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.from_dotlist(["ppo.total_episodes=128"]))
    cfg = OmegaConf.to_object(raw)
    assert cfg.grpo.total_episodes == 128 and cfg.rloo.total_episodes == 128  # PPO's budget unless told otherwise
    assert cfg.grpo.generation == cfg.ppo.generation and cfg.dpo.eval_prompts == cfg.ppo.eval_prompts
    # by default a round is PPO's update: 64 samples, 4 passes in mini-batches of 16, so the same optimizer steps
    ppo_steps = cfg.ppo.total_episodes // cfg.ppo.batch_size * cfg.ppo.ppo_epochs * (cfg.ppo.batch_size // cfg.ppo.mini_batch_size)
    assert optimizer_steps(cfg.grpo, processes=1) == optimizer_steps(cfg.rloo, processes=1) == ppo_steps == 32
    assert optimizer_steps(cfg.grpo, processes=2) == 16  # one round of 2 x 64 samples
    cfg.grpo.steps_per_generation, cfg.grpo.num_iterations, cfg.grpo.grad_accum = 2, 1, 2
    assert optimizer_steps(cfg.grpo, processes=1) == 4  # 4 rounds of 32 samples, one step of 2 micro-batches each


def inputs(stage, run_dir):
    return [f"{stage}.policy_path={run_dir / 'sft' / 'model'}", f"{stage}.reward_path={run_dir / 'reward' / 'model'}",
            f"{stage}.safety_baseline={run_dir / 'sft' / 'safety.json'}"]


@pytest.mark.slow
@pytest.mark.parametrize("stage, extra", [
    ("dpo", ["dpo.lr=1e-3", "dpo.loss_type=ipo"]),
    ("grpo", ["grpo.lr=1e-3", "reward_terms.safety_penalty=1.0"]),
    ("rloo", ["rloo.lr=1e-3", "rloo.lora.enabled=true", "rloo.lora.r=4"]),
])
def test_each_stage_trains_saves_evaluates_and_gates(tmp_path, smoke_rm, stage, extra):
    run = tmp_path / "run"
    result = run_cli(f"alignment.stages.{stage}", "scale=smoke", *inputs(stage, smoke_rm), *extra, f"run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    out = run / stage
    trained = load_file(out / "model" / "model.safetensors")
    sft = load_file(smoke_rm / "sft" / "model" / "model.safetensors")
    assert any(not torch.equal(trained[k], sft[k]) for k in sft), "the policy did not move"
    metrics = json.loads((out / "metrics.json").read_text())
    # grpo/rloo: PPO's smoke update (8 samples, 2 passes of 2 mini-batches) 4 times; dpo: dpo.max_steps
    assert metrics["stage"] == stage and metrics["steps"] == metrics["optimizer_steps"] == (4 if stage == "dpo" else 16)
    for key in ("gold_win_rate_ties_half", f"gold_reward_{stage}", "gold_reward_sft", f"proxy_reward_{stage}",
                "kl_sft", "unsafe_rate_filter", "train_s"):
        assert isinstance(metrics[key], float), key
    # the smoke policy's answers often all score the same gold: the win rate is then undefined, not 0 or NaN
    decided = metrics["gold_wins"] + metrics["gold_losses"]
    assert (metrics["gold_win_rate"] is None) == (decided == 0) == (metrics["gold_win_rate_ci95"] is None)
    assert metrics["policy_samples"] == (0 if stage == "dpo" else 32)  # grpo/rloo: PPO's smoke budget, counted
    if stage == "dpo":
        assert metrics["reward_terms"] is None and metrics["budget"]["pairs_seen"] == 32
    else:
        assert metrics["budget"]["policy_tokens"] > 0 and metrics["budget"]["eval_split"] == "test"
        assert metrics["reward_terms"]["safety_penalty"] == (1.0 if stage == "grpo" else 0.0)
        assert metrics["reward_terms"]["safety_backend"] == ("fast" if stage == "grpo" else None)
    for key in ("rm_win_rate", "length_change"):
        assert isinstance(metrics[key], float), key
    assert set(metrics["length_control"]) == {"rm", "gold"}
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert rows and {"prompt", "sft", stage, "gold_sft", f"gold_{stage}"} <= set(rows[0])
    assert metrics["gold_ties"] == sum(r["gold_sft"] == r[f"gold_{stage}"] for r in rows)
    assert decided + metrics["gold_ties"] == len(rows)
    safety = json.loads((out / "safety.json").read_text())
    assert safety["stage"] == stage and safety["gates"]["passed"]
    assert safety["baseline"] == str(smoke_rm / "sft" / "safety.json")
    assert f"SFT vs {stage.upper()}" in (out / "report.html").read_text()
    assert (out / "adapter" / "adapter_config.json").is_file() == (stage == "rloo")
    assert not (out / "model" / "adapter_config.json").exists()  # the merged policy: plain transformers


@pytest.mark.slow
def test_a_failed_gate_exits_3_after_writing_everything(tmp_path, smoke_rm):
    run = tmp_path / "run"
    result = run_cli("alignment.stages.grpo", "scale=smoke", *inputs("grpo", smoke_rm), "safety.gate.max_unsafe_rate=-1",
                     f"run.dir={run}")
    assert result.returncode == 3, result.stderr[-3000:]
    assert not json.loads((run / "grpo" / "safety.json").read_text())["gates"]["passed"]
    assert (run / "grpo" / "metrics.json").is_file() and (run / "grpo" / "model" / "config.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("stage, args, message", [
    ("dpo", [], "dpo.policy_path="),
    ("rloo", ["rloo.reward_path=/nonexistent"], "rloo.reward_path=/nonexistent: no reward model"),
    ("grpo", ["grpo.num_generations=3"], "a multiple of grpo.num_generations=3"),
    ("dpo", ["dpo.loss_type=kto"], "dpo.loss_type"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, smoke_rm, stage, args, message):
    run = tmp_path / "run"
    given = {a.split("=")[0] for a in args}
    paths = [a for a in inputs(stage, smoke_rm) if a.split("=")[0] not in given] if args else []
    result = run_cli(f"alignment.stages.{stage}", "scale=smoke", *paths, *args, f"run.dir={run}", timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line or line.startswith("config error")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert not run.exists()


def test_validation_prompts_are_the_held_out_prompts_after_the_test_ones():
    from alignment.errors import UserError
    from alignment.ppo.evaluation import eval_prompt_sets

    class Sets(dict):  # as PromptSets: a fresh list per lookup
        def __getitem__(self, name):
            return list(dict.__getitem__(self, name))

    sets = Sets(eval=[f"e{i}" for i in range(10)], redteam=[f"r{i}" for i in range(6)])
    test, validation = eval_prompt_sets(sets, 4, seed=0), eval_prompt_sets(sets, 4, seed=0, split="validation")
    assert test == eval_prompt_sets(sets, 4, seed=0)  # fixed for a seed
    assert [len(test[s]) for s in ("eval", "redteam")] == [4, 4] and len(validation["eval"]) == 4
    assert len(validation["redteam"]) == 2  # what is left of 6 after 4 test prompts
    for split in ("eval", "redteam"):
        assert not set(test[split]) & set(validation[split])
    with pytest.raises(UserError, match="eval.split=validation: the redteam prompt set has 6 prompts"):
        eval_prompt_sets(sets, 6, seed=0, split="validation")
