"""Every stage on the user's own prompts (``prompts=custom``) and on the ``hh`` world: the prompt sets,
their checks against the policy's context, candidates and PPO on a prompt file, a judge reward model,
and the evaluation without gold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from alignment.config import Config, PromptsConfig, PromptSource
from alignment.data.hh_world import hh_prompts
from alignment.data.prompt_sets import build_prompt_sets, fit_to_context, texts_sha256
from alignment.data.prompts import check_prompt_lengths, load_prompts
from alignment.data.world import DemoWorld
from alignment.errors import UserError
from alignment.modeling import train_tokenizer
from conftest import run_cli

QUESTIONS = [f"What is a good name for a pet number {i}?" for i in range(10)]
CHAT = [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "Tell me about bread."}]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _prompt_file(tmp_path: Path) -> Path:
    """Ten plain prompts and one multi-turn chat, in TRL's prompt-only format."""
    return _jsonl(tmp_path / "mine.jsonl", [{"prompt": q} for q in QUESTIONS] + [{"prompt": CHAT}])


def _cfg(**prompts) -> Config:
    cfg = Config()
    cfg.prompts = PromptsConfig(**prompts)
    return cfg


# ------------------------------------------------------------------ prompt sets
def test_demo_sets_are_the_demo_world_splits_and_carry_its_gold() -> None:
    sets, world = build_prompt_sets(_cfg()), DemoWorld(0)
    assert sets.gold is not None and sets.source == PromptSource.demo
    assert [p.id for p in sets["train"]] == [p.id for p in world.prompts("train")]
    assert [p.id for p in sets["benign"]] == [p.id for p in world.prompts("eval", kind="benign")]
    assert all(p.kind == "harmful" for p in sets["redteam"])
    with pytest.raises(UserError, match="prompts.train=x.jsonl is set, but prompts=demo"):
        build_prompt_sets(_cfg(train="x.jsonl"))


def test_custom_sets_hold_out_eval_prompts_and_default_to_the_hh_safety_sets(tmp_path: Path) -> None:
    path = _prompt_file(tmp_path)
    sets = build_prompt_sets(_cfg(source="custom", train=str(path), eval_fraction=0.2))
    assert sets.gold is None
    assert len(sets["eval"]) == 2 and len(sets["train"]) == 9
    assert {p.source for p in sets["train"]}.isdisjoint({p.source for p in sets["eval"]})
    assert {p.source for p in sets["train"] + sets["eval"]} == {f"{path}:{n}" for n in range(1, 12)}
    assert [p.text for p in sets["redteam"]] == [p.text for p in hh_prompts("redteam")]
    assert {p.kind for p in sets["redteam"]} == {"harmful"} and {p.kind for p in sets["benign"]} == {"benign"}
    chat = next(p for p in sets["train"] + sets["eval"] if len(p.messages) == 3)
    assert chat.messages == CHAT and chat.text == "User: Hi!\n\nAssistant: Hello, how can I help?\n\nUser: Tell me about bread."
    summary = sets.summary()
    assert summary["sets"]["train"]["sha256"] == texts_sha256(sets["train"]) and summary["gold"] is False
    with pytest.raises(UserError, match="prompts.train is not set"):
        build_prompt_sets(_cfg(source="custom"))
    one = _jsonl(tmp_path / "one.jsonl", [{"prompt": "only one"}])
    with pytest.raises(UserError, match="cannot be split into training and held-out prompts"):
        build_prompt_sets(_cfg(source="custom", train=str(one)))


def test_hh_sets_can_be_replaced_one_by_one(tmp_path: Path) -> None:
    benign = _jsonl(tmp_path / "benign.jsonl", [{"prompt": "How do I kill a stuck process?"}])
    sets = build_prompt_sets(_cfg(source="hh", benign=str(benign)))
    assert [p.text for p in sets["benign"]] == ["How do I kill a stuck process?"]
    assert len(sets["train"]) == len(hh_prompts("train")) and sets.where["benign"] == str(benign)


def test_prompts_too_long_for_the_context_fail_or_are_left_out_and_counted(tmp_path: Path) -> None:
    tok = train_tokenizer(["a short text to learn from"] * 20, vocab_size=300)
    long = " ".join(["word"] * 200)
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "short one"}, {"prompt": long}, {"prompt": "short two"}])
    sets = build_prompt_sets(_cfg(source="custom", train=str(path), eval=str(path)))
    with pytest.raises(UserError, match=rf"prompts.train: {path}:2: the prompt is \d+ tokens"):
        fit_to_context(sets, tok, 64, 16, skip_long=False)
    fitted = fit_to_context(sets, tok, 64, 16, skip_long=True, names=("train", "eval"))
    assert [p.text for p in fitted["train"]] == ["short one", "short two"]
    assert fitted.skipped_long == {"train": 1, "eval": 1} and fitted.summary()["sets"]["train"]["skipped_long"] == 1
    with pytest.raises(UserError, match="ppo.generation.max_new_tokens=64 answer tokens exceed the policy's context"):
        fit_to_context(sets, tok, 64, 64, skip_long=True, reserve_key="ppo.generation.max_new_tokens")
    all_long = build_prompt_sets(_cfg(source="custom", train=str(path), eval=str(_jsonl(tmp_path / "e.jsonl",
                                                                                          [{"prompt": long}]))))
    with pytest.raises(UserError, match="prompts.eval .*no prompt fits"):
        fit_to_context(all_long, tok, 64, 16, skip_long=True, names=("eval",))



def test_prompts_max_tokens_caps_prompts_below_the_context(tmp_path: Path) -> None:
    tok = train_tokenizer(["a short text to learn from"] * 20, vocab_size=300)
    middle = " ".join(["word"] * 12)
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "short one"}, {"prompt": middle}])
    sets = build_prompt_sets(_cfg(source="custom", train=str(path), eval=str(path)))
    n_short, n_middle = check_prompt_lengths(sets["train"], tok, 512)
    assert n_short < n_middle
    assert fit_to_context(sets, tok, 512, 16, skip_long=False, names=("train",))["train"] == sets["train"]
    cap = n_middle - 1
    with pytest.raises(UserError, match=rf"{path}:2: the prompt is {n_middle} tokens .*more than prompts.max_tokens={cap}"):
        fit_to_context(sets, tok, 512, 16, skip_long=False, max_tokens=cap)
    fitted = fit_to_context(sets, tok, 512, 16, skip_long=True, names=("train",), max_tokens=cap)
    assert [p.text for p in fitted["train"]] == ["short one"] and fitted.skipped_long == {"train": 1}
    # the context stays the limit when it is the tighter one
    with pytest.raises(UserError, match="more than the 4 the context allows"):
        fit_to_context(sets, tok, 20, 16, skip_long=False, max_tokens=100)

# ------------------------------------------------------------------ stages on a prompt file
@pytest.mark.slow
def test_a_custom_prompt_file_reaches_candidates_and_ppo(tmp_path: Path, smoke_rm: Path) -> None:
    path = _prompt_file(tmp_path)
    eval_path = _jsonl(tmp_path / "held.jsonl", [{"prompt": "What should I cook tonight?"},
                                                  {"prompt": "How do plants grow?"}])
    run_dir = tmp_path / "run"
    custom = ["prompts=custom", f"prompts.train={path}", f"prompts.eval={eval_path}"]
    result = run_cli("alignment.stages.candidates", "scale=smoke", f"run.dir={run_dir}", *custom,
                     f"candidates.policy_path={smoke_rm / 'sft' / 'model'}", "candidates.n_prompts=4")
    assert result.returncode == 0, result.stderr[-3000:]
    file_sources = {p.source: p.text for p in load_prompts(path)}
    metrics = json.loads((run_dir / "candidates" / "metrics.json").read_text())
    assert len(metrics["prompt_sources"]) == 4 and set(metrics["prompt_sources"]) <= set(file_sources)
    samples = [json.loads(line) for line in (run_dir / "candidates" / "samples.jsonl").read_text().splitlines()]
    assert {s["prompt"] for s in samples} == {file_sources[s] for s in metrics["prompt_sources"]}
    assert all("style" not in s for s in samples), "no demo-world style without the demo world"

    result = run_cli("alignment.stages.ppo", "scale=smoke", f"run.dir={run_dir}", *custom,
                     f"ppo.policy_path={smoke_rm / 'sft' / 'model'}", f"ppo.reward_path={smoke_rm / 'reward' / 'model'}",
                     "ppo.safety_baseline=null")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "ppo" / "metrics.json").read_text())
    sampled = metrics["prompts_sampled"]
    assert set(sampled) == set(file_sources) and sum(sampled.values()) == metrics["episodes"] == 32
    assert metrics["prompts"]["sets"]["train"]["sha256"] == texts_sha256(load_prompts(path))
    assert metrics["gold_win_rate"] is None and metrics["rm_score_sft"] is not None
    lo, hi = metrics["rm_score_ppo_ci95"]
    assert lo <= metrics["rm_score_ppo"] <= hi
    assert {m["figure"] for m in metrics["missing"]} >= {"judge win rate", "over-optimisation check"}
    rows = [json.loads(line) for line in (run_dir / "ppo" / "samples.jsonl").read_text().splitlines()]
    assert {r["prompt"] for r in rows if r["split"] == "eval"} == {"What should I cook tonight?", "How do plants grow?"}
    assert all("gold_sft" not in r and "proxy_sft" in r for r in rows)
    safety = json.loads((run_dir / "ppo" / "safety.json").read_text())
    assert safety["prompts"] == "custom" and "gold_unsafe_rate" not in safety["policy"]
    assert safety["policy"]["over_refusal_rate_benign"]["rate"] == metrics["over_refusal_ppo"]


@pytest.mark.slow
@pytest.mark.parametrize("rows, row, message", [
    ([{"prompt": "fine"}, {"question": "no prompt column"}], 2, "no 'prompt' column"),
    ([{"prompt": "fine"}, {"prompt": [{"role": "assistant", "content": "x"}]}], 2, "must end with a non-empty user message"),
    ([{"prompt": "fine"}, {"prompt": " ".join(["word"] * 400)}], 2, "more than the"),
    ([], None, "the file has no rows"),
])
def test_bad_prompt_files_exit_2_naming_file_and_row(tmp_path: Path, smoke_rm: Path, rows, row, message) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    run_dir = tmp_path / "run"
    result = run_cli("alignment.stages.ppo", "scale=smoke", f"run.dir={run_dir}", "prompts=custom",
                     f"prompts.train={path}", f"prompts.eval={path}", f"ppo.policy_path={smoke_rm / 'sft' / 'model'}",
                     f"ppo.reward_path={smoke_rm / 'reward' / 'model'}", timeout=180)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and str(path) + (f":{row}" if row else "") in result.stderr
    assert "Traceback" not in result.stderr
    assert not (run_dir / "ppo").exists(), "nothing is written on bad input"


@pytest.mark.slow
def test_a_judge_reward_model_gives_a_win_rate_and_must_not_be_the_proxy(tmp_path: Path, smoke_rm: Path) -> None:
    reward = smoke_rm / "reward" / "model"
    common = ["scale=smoke", "prompts=hh", f"ppo.policy_path={smoke_rm / 'sft' / 'model'}", f"ppo.reward_path={reward}",
              "ppo.safety_baseline=null", "ppo.total_episodes=16", "ppo.eval_every=1"]
    result = run_cli("alignment.stages.ppo", f"run.dir={tmp_path / 'same'}", *common, f"eval.judge_path={reward}")
    assert result.returncode == 2 and "is the reward model being optimised" in result.stderr
    judge = tmp_path / "judge"
    shutil.copytree(reward, judge)  # the same weights elsewhere: the judge must then agree with the proxy exactly
    run_dir = tmp_path / "run"
    result = run_cli("alignment.stages.ppo", f"run.dir={run_dir}", *common, f"eval.judge_path={judge}")
    assert result.returncode == 0, result.stderr[-3000:]
    m = json.loads((run_dir / "ppo" / "metrics.json").read_text())
    assert m["judge_reward_sft"] == pytest.approx(m["rm_score_sft"]) and m["judge_reward_ppo"] == pytest.approx(m["rm_score_ppo"])
    assert 0 <= m["judge_win_rate"] <= 1 and m["overoptimisation_reference"] == "judge"
    assert all("judge_reward_mean" in e["eval"] for e in m["evals"]) and len(m["evals"]) == 2
    assert "judge win rate" not in {x["figure"] for x in m["missing"]}
    rows = [json.loads(line) for line in (run_dir / "ppo" / "samples.jsonl").read_text().splitlines()]
    assert all(r["judge_ppo"] == pytest.approx(r["proxy_ppo"]) for r in rows)
