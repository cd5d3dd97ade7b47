"""The candidates stage: policy samples, safety scores, pairs queued in the labeling database."""

import json
import random

import numpy as np
import pytest

from alignment.stages.candidates import distinct_pairs
from conftest import run_cli
from labeling_ui.store import LabelStore


@pytest.mark.slow
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


@pytest.mark.slow
def test_candidates_reject_bad_settings(tmp_path, smoke_sft):
    result = run_cli("alignment.stages.candidates", "scale=smoke", f"run.dir={tmp_path / 'run'}",
                     f"candidates.policy_path={smoke_sft / 'sft' / 'model'}", "candidates.pairing=best", timeout=120)
    assert result.returncode == 2 and "candidates.pairing" in result.stderr
    assert not (tmp_path / "run").exists()


def test_the_same_two_answers_are_paired_once(tmp_path):
    texts = ["Sure, here you go.", "Sure, here you go.\n", "No.", "Ask a doctor."]   # 0 and 1: the same answer
    scores = np.array([0.9, 0.9, 0.1, 0.5])
    seen: set = set()
    pairs = distinct_pairs("Q?", texts, scores, "random", 6, random.Random(0), seen)  # all 6 index pairs offered
    keys = [frozenset((texts[a].strip(), texts[b].strip())) for a, b in pairs]
    assert sorted(map(sorted, keys)) == [["Ask a doctor.", "No."], ["Ask a doctor.", "Sure, here you go."],
                                         ["No.", "Sure, here you go."]]
    assert distinct_pairs("Q?", texts, scores, "random", 6, random.Random(1), seen) == []   # already queued
    assert len(distinct_pairs("Other?", texts, scores, "random", 6, random.Random(0), seen)) == 3
    # most_different offers (0, 2) and (1, 2) first: the second is the same comparison, and is not replaced
    assert distinct_pairs("Q3?", texts[:3], scores[:3], "most_different", 2, random.Random(0), set()) == [(0, 2)]
    store = LabelStore(tmp_path / "labels.db")                # what the stage queues: no duplicate item
    store.add_items("p", [{"prompt": "Q?", "response_a": texts[a], "response_b": texts[b]} for a, b in pairs])
    assert len(store.items("p")) == 3
