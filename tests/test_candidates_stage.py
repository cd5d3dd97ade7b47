"""The candidates stage: policy samples, safety scores, pairs queued in the labeling database."""

import json

from conftest import run_cli
from labeling_ui.store import LabelStore


def test_candidates_queue_scored_pairs_once(smoke_sft):
    args = ["alignment.stages.candidates", "scale=smoke", f"run.dir={smoke_sft}", "safety=fast",
            "candidates.pairing=most_different", "label.project=round1"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    metrics = json.loads((smoke_sft / "candidates" / "metrics.json").read_text())
    assert metrics["answers"] == 16 and metrics["pairs_added"] == metrics["pairs"] > 0
    items = LabelStore(str(smoke_sft / "labels" / "labels.db")).items("round1")
    assert len(items) == metrics["pairs"]
    assert set(items[0]["safety_a"]) >= {"violence", "self-harm", "cybercrime"}
    rows = [json.loads(line) for line in (smoke_sft / "candidates" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and all(0.0 <= r["any_score"] <= 1.0 for r in rows)
    again = run_cli(*args)
    assert again.returncode == 0
    assert json.loads((smoke_sft / "candidates" / "metrics.json").read_text())["pairs_added"] == 0
    assert len(LabelStore(str(smoke_sft / "labels" / "labels.db")).items("round1")) == len(items)


def test_candidates_reject_bad_settings(tmp_path, smoke_sft):
    result = run_cli("alignment.stages.candidates", "scale=smoke", f"run.dir={tmp_path / 'run'}",
                     f"candidates.policy_path={smoke_sft / 'sft' / 'model'}", "candidates.pairing=best", timeout=120)
    assert result.returncode == 2 and "candidates.pairing" in result.stderr
    assert not (tmp_path / "run").exists()
