"""align-pipeline optimizers=[ppo,dpo,grpo,rloo]: every optimizer from the same SFT policy, labels and
reward model into its own folder, skipped and rerun like any stage, and the run report's comparison
section (its JSON, and its HTML in headless Chromium)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_run_report import open_report

from alignment.config import PipelineConfig
from alignment.errors import UserError
from alignment.memory import peak_rss_mb, reset_peak_rss
from alignment.pipeline import plan
from alignment.reports.comparison import comparison_data
from conftest import run_cli

OPTIMIZERS = ["ppo", "dpo", "grpo", "rloo"]
BEFORE = ["sft", "candidates", "labels", "reward"]


def test_each_optimizer_starts_from_the_same_sft_labels_and_reward_model():
    cfg = PipelineConfig(rounds=2, optimizers=["grpo", "ppo", "dpo", "rloo"])
    cfg.run.dir = "/r"
    steps = plan(cfg)
    order = ["grpo", "ppo", "dpo", "rloo"]
    assert [s.dir for s in steps] == BEFORE + order + [f"round-2/{s}" for s in BEFORE[1:] + order]
    by_dir = {s.dir: s for s in steps}
    for o in order:
        step = by_dir[o]
        assert step.name == o and step.after == "reward"  # one optimizer's config change reruns only it
        assert step.overrides[f"{o}.policy_path"] == "/r/sft/model"
        assert step.overrides[f"{o}.reward_path"] == "/r/reward/model"
        assert step.overrides[f"{o}.safety_baseline"] == "/r/sft/safety.json"
    assert by_dir["dpo"].overrides["data.source"] == by_dir["reward"].overrides["data.source"] == "/r/labels/preferences"
    # the next round starts from the first optimizer's policy
    assert by_dir["round-2/candidates"].after == "grpo"
    assert by_dir["round-2/candidates"].overrides["candidates.policy_path"] == "/r/grpo/model"
    assert by_dir["round-2/rloo"].overrides["rloo.policy_path"] == "/r/grpo/model"
    assert [s.dir for s in plan(PipelineConfig())] == BEFORE + ["ppo"]  # the default: PPO alone, as before


@pytest.mark.parametrize("optimizers, message", [
    (["ppo", "ppo"], "without repeats"), ([], "without repeats"), (["ppo", "sac"], "'sac' is not one of"),
])
def test_the_optimizer_list_is_checked(optimizers, message):
    with pytest.raises(UserError, match=message):
        PipelineConfig(optimizers=optimizers)


def test_peak_memory_is_measured_per_stage():
    reset_peak_rss()
    base = peak_rss_mb()
    block = np.ones(40_000_000)  # 305 MiB
    grown = peak_rss_mb()
    del block
    assert grown > base + 250
    assert reset_peak_rss() and peak_rss_mb() < grown - 250  # the next stage does not inherit this one's peak


def statuses(run_dir: Path) -> dict[str, dict]:
    return {s["dir"]: s for s in json.loads((run_dir / "pipeline.json").read_text())["stages"]}


@pytest.fixture(scope="module")
def comparison_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("comparison") / "run"
    result = run_cli("alignment.pipeline", "scale=smoke", f"run.dir={run_dir}", f"optimizers=[{','.join(OPTIMIZERS)}]")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_the_pipeline_runs_every_optimizer_into_its_own_folder(comparison_run):
    state = statuses(comparison_run)
    assert list(state) == BEFORE + OPTIMIZERS
    for o in OPTIMIZERS:
        assert state[o]["status"] == "passed" and state[o]["wall_s"] > 0 and state[o]["peak_rss_mb"] > 0
        assert (comparison_run / o / "model" / "config.json").is_file()
    report = json.loads((comparison_run / "report.json").read_text())["comparison"]
    rows = {r["name"]: r for r in report["optimizers"]}
    assert list(rows) == OPTIMIZERS
    for o, r in rows.items():
        for key in ("gold_reward", "gold_reward_sft", "proxy_reward", "kl", "unsafe_rate_filter",
                    "refusal_rate_harmful", "over_refusal_rate_benign", "wall_s", "peak_rss_mb", "length_change"):
            assert isinstance(r[key], float), (o, key)
        # a smoke policy's answers often tie with the SFT policy's on every prompt: no win rate is then defined
        assert r["gold_win_rate"] is None or 0 <= r["gold_win_rate"] <= 1
        assert 0 <= r["rm_win_rate"] <= 1 and len(r["rm_win_rate_ci95"]) == 2
        assert r["gate_passed"] and r["seed"] == 0
    assert len({r["gold_reward_sft"] for r in rows.values()}) == 1  # one SFT policy, one evaluation
    assert report["fairness"] == {**report["fairness"], "fair": True, "differences": [], "same_evaluation": True,
                                  "same_policy_samples": True, "no_online_reward": ["dpo"]}
    # counted where spent: PPO's smoke budget, and the same optimizer steps (PPO's 4 updates x 2 epochs x 2 mini-batches)
    assert rows["grpo"]["policy_samples"] == rows["rloo"]["policy_samples"] == rows["ppo"]["policy_samples"] == 32
    assert rows["grpo"]["optimizer_steps"] == rows["rloo"]["optimizer_steps"] == rows["ppo"]["optimizer_steps"] == 16
    assert rows["ppo"]["reward_terms"] == rows["grpo"]["reward_terms"] == rows["rloo"]["reward_terms"]
    assert rows["ppo"]["reward_terms"]["reward_model"] == str((comparison_run / "reward" / "model").resolve())
    assert rows["dpo"]["policy_samples"] == 0 and "preference pairs" in rows["dpo"]["budget_text"]
    assert rows["dpo"]["reward_terms"] is None and all(isinstance(r["lr"], float) for r in rows.values())
    assert report["samples"] and set(report["samples"][0]["answers"]) == set(OPTIMIZERS)


@pytest.mark.slow
def test_an_optimizer_run_with_another_reward_term_is_reported_unfair(comparison_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(comparison_run, run, symlinks=True)
    # the very SFT policy and reward model of the others (a copy of the reward model would be another one)
    result = run_cli("alignment.stages.grpo", "scale=smoke", f"run.dir={run}",
                     f"grpo.policy_path={comparison_run / 'sft' / 'model'}",
                     f"grpo.reward_path={comparison_run / 'reward' / 'model'}", "reward_terms.safety_penalty=1.0")
    assert result.returncode == 0, result.stderr[-3000:]
    fair = comparison_data(run, json.loads((run / "pipeline.json").read_text()))["fairness"]
    assert not fair["fair"]
    assert {d["what"] for d in fair["differences"]} == {"reward term safety_penalty", "reward term safety_backend"}
    assert fair["differences"][0]["values"] in ({"ppo": None, "grpo": "fast", "rloo": None},
                                                {"ppo": 0.0, "grpo": 1.0, "rloo": 0.0})


@pytest.mark.slow
def test_a_config_change_of_one_optimizer_reruns_only_it(comparison_run):
    before = {o: (comparison_run / o / "metrics.json").stat().st_mtime_ns for o in OPTIMIZERS}
    result = run_cli("alignment.pipeline", "scale=smoke", f"run.dir={comparison_run}",
                     f"optimizers=[{','.join(OPTIMIZERS)}]", "dpo.beta=0.2")
    assert result.returncode == 0, result.stderr[-3000:]
    after = {o: (comparison_run / o / "metrics.json").stat().st_mtime_ns for o in OPTIMIZERS}
    assert [o for o in OPTIMIZERS if after[o] != before[o]] == ["dpo"]
    assert "dpo: running" in result.stderr and "grpo: done earlier with the same config, skipped" in result.stderr


@pytest.mark.slow
@pytest.mark.browser
def test_the_report_shows_the_optimizers_side_by_side(comparison_run, browser, artifacts):
    from playwright.sync_api import expect

    page, seen = open_report(browser, comparison_run / "report.html")
    section = page.locator("section#comparison")
    expect(section).to_be_visible()
    table = section.locator("table").first
    for o in OPTIMIZERS:
        expect(table.locator("tr", has_text=o)).to_have_count(1)
    expect(section).to_contain_text("the same for every optimizer")
    expect(section).to_contain_text("Fair: every reward term and every budget is the same")
    expect(section.locator("h3", has_text="eval prompts")).to_have_count(1)
    expect(section.locator("h3", has_text="Reward terms")).to_have_count(1)
    expect(section.locator("h3", has_text="Which differences stand")).to_have_count(1)
    header = section.locator("table").last.locator("th")  # the last split's answers side by side
    assert header.all_inner_texts() == ["prompt", "SFT", *OPTIMIZERS]
    assert page.locator(".section-error").count() == 0
    assert seen["errors"] == []
    page.screenshot(path=str(artifacts / "run-report-comparison.png"), full_page=True)
    page.close()


@pytest.mark.slow
@pytest.mark.parametrize("override", ["optimizers=[ppo,sac]", "optimizers=[ppo,ppo]"])
def test_a_bad_optimizer_list_exits_2_with_one_line(tmp_path, override):
    run_dir = tmp_path / "run"
    result = run_cli("alignment.pipeline", "scale=smoke", f"run.dir={run_dir}", override, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "optimizers" in lines[0], result.stderr[-2000:]
    assert not run_dir.exists()
