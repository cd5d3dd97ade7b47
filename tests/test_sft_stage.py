"""The SFT stage end to end at scale=smoke, its resume, and its errors on bad input."""

import json

import pytest

from conftest import run_cli


@pytest.mark.slow
def test_smoke_sft_writes_model_and_metrics(smoke_sft):
    out = smoke_sft / "sft"
    assert (out / "model" / "config.json").is_file()
    assert (out / "model" / "tokenizer.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("train_loss", "eval_loss", "perplexity", "eos_rate", "usable_rate", "gold_reward_mean",
                "unsafe_rate_redteam", "loss_curve", "corpus"):
        assert key in metrics, key
    assert metrics["global_step"] == 12
    assert metrics["samples"]["redteam"]["n"] == 8
    assert set(metrics["samples"]["eval"]["style_mix"]) >= {"helpful", "refusal", "unclassified"}
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"eval", "redteam"}
    safety = json.loads((out / "safety.json").read_text())
    assert safety["stage"] == "sft" and 0.0 <= safety["policy"]["unsafe_rate"]["rate"] <= 1.0
    assert {"refusal_rate_harmful", "over_refusal_rate_benign", "unsafe_rate_by_category"} <= set(safety["policy"])
    assert safety["gates"]["passed"]
    assert "Unsafe rate by category" in (out / "report.html").read_text()
    resolved = (out / ".hydra" / "config.yaml").read_text()
    assert "scale: smoke" in resolved and str(smoke_sft) in resolved
    assert not list(out.glob(".model-*")), "no temporary folder may be left behind"


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(tmp_path, smoke_sft):
    # A run stopped at step 6 (its checkpoint), resumed to 12, reaches the full run's step count.
    run_dir = tmp_path / "run"
    first = run_cli("alignment.stages.sft", "scale=smoke", f"run.dir={run_dir}", "sft.max_steps=6")
    assert first.returncode == 0, first.stderr[-2000:]
    assert (run_dir / "sft" / "checkpoints" / "checkpoint-6").is_dir()
    resumed = run_cli("alignment.stages.sft", "scale=smoke", f"run.dir={run_dir}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    metrics = json.loads((run_dir / "sft" / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("checkpoint-6")
    assert metrics["global_step"] == 12


@pytest.mark.parametrize("override, names", [
    ("sft.lr=abc", "sft.lr"),
    ("no_such_key=1", "no_such_key"),
    ("scale=huge", "scale"),
    ("data=custom", "data.source"),
    ("policy=hf", "policy.name_or_path"),
])
@pytest.mark.slow
def test_bad_overrides_fail_before_any_work(tmp_path, override, names):
    run_dir = tmp_path / "run"
    result = run_cli("alignment.stages.sft", f"run.dir={run_dir}", override, timeout=120)
    assert result.returncode != 0
    assert names in result.stderr + result.stdout
    assert not run_dir.exists(), "a failed invocation must write nothing"


@pytest.mark.slow
def test_missing_data_path_is_a_clear_error(tmp_path):
    run_dir = tmp_path / "run"
    missing = tmp_path / "nope.jsonl"
    result = run_cli("alignment.stages.sft", "scale=smoke", f"run.dir={run_dir}", "data=custom",
                     f"data.source={missing}", timeout=120)
    assert result.returncode == 2
    assert f"{missing}: no such file" in result.stderr
    assert "Traceback" not in result.stderr
    assert not run_dir.exists()


@pytest.mark.slow
def test_malformed_jsonl_names_file_and_line(tmp_path):
    data = tmp_path / "chats.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    data.write_text(good + "\n" + good + "\n{not json\n")
    result = run_cli("alignment.stages.sft", "scale=smoke", f"run.dir={tmp_path / 'run'}", "data=custom",
                     f"data.source={data}", timeout=120)
    assert result.returncode == 2 and f"{data}:3: not valid JSON" in result.stderr
    data.write_text(good + "\n" + json.dumps({"messages": [{"role": "user"}]}) + "\n")
    result = run_cli("alignment.stages.sft", "scale=smoke", f"run.dir={tmp_path / 'run'}", "data=custom",
                     f"data.source={data}", timeout=120)
    assert result.returncode == 2 and f"{data}:2" in result.stderr and "content" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_custom_conversational_data_trains(tmp_path):
    data = tmp_path / "chats.jsonl"
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}],
             "completion": [{"role": "assistant", "content": f"It is {2 * i}."}]} for i in range(40)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli("alignment.stages.sft", "scale=smoke", f"run.dir={tmp_path / 'run'}", "data=custom",
                     f"data.source={data}", "sft.max_steps=3")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "sft" / "metrics.json").read_text())
    assert metrics["train_rows"] == 36 and metrics["eval_rows"] == 4
