"""The candidates stage: policy samples, safety scores, pairs queued in the labeling database."""

import json
import random
from collections import Counter

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


def _label_everything(db, project="default"):
    """One annotator labels every open item of ``project`` (the bots' rule: gold, else the hash fallback)."""
    from alignment.data.world import DemoWorld
    from labeling_ui.bots import BotBrain
    from labeling_ui.queue import LabelQueue

    store = LabelStore(db)
    store.set_overlap(project, 1)
    store.add_annotator("tester", "password123", update=True)
    queue, brain = LabelQueue(store, project, gold_rate=0.0), BotBrain(DemoWorld(0), noise=0.0)
    shown = queue.next_item("tester")
    while shown is not None:
        d = brain.decide(shown.prompt, shown.response_left, shown.response_right)
        _, shown = queue.submit("tester", shown.assignment_id, d["choice"], d["strength"])
    return store


@pytest.mark.slow
def test_uncertainty_without_labels_is_random_then_the_next_round_queues_what_the_ensemble_doubts(smoke_sft, tmp_path):
    db = tmp_path / "labels.db"
    common = ["alignment.stages.candidates", "scale=smoke", "safety=fast", f"label.db={db}",
              "candidates.acquisition=uncertainty", "candidates.responses_per_prompt=4", "candidates.budget=16",
              f"candidates.policy_path={smoke_sft / 'sft' / 'model'}", "candidates.ensemble.min_pairs=4"]
    first = run_cli(*common, f"run.dir={tmp_path / 'r1'}")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "no reward model yet" in first.stderr and "chosen at random" in first.stderr
    m1 = json.loads((tmp_path / "r1" / "candidates" / "metrics.json").read_text())["acquisition"]
    assert m1["model"] is None and m1["queued"] == m1["queued_random"] == 16
    store = _label_everything(db)
    tags = Counter(it["meta"]["acquisition"] for it in store.items("default"))
    assert tags == {"explore": 3, "random": 13}                 # a random share of 0.2, rounded

    second = run_cli(*common, f"run.dir={tmp_path / 'r2'}", "seed=1")
    assert second.returncode == 0, second.stderr[-3000:]
    m2 = json.loads((tmp_path / "r2" / "candidates" / "metrics.json").read_text())["acquisition"]
    assert m2["model"]["pairs"] >= 4 and m2["queued"] == 16 and m2["queued_random"] == 3
    u = m2["uncertainty"]
    assert u["queued_by_uncertainty"]["mean"] > u["pool"]["mean"]      # what the ensemble doubts most
    items = [it for it in store.items("default") if it["meta"]["queued_by"].endswith("r2/candidates")]
    assert len(items) == 16 and max(Counter(it["meta"]["prompt_id"] for it in items).values()) <= 2
    first_round = {(it["prompt"], frozenset((it["response_a"], it["response_b"]))) for it in store.items("default")
                   if it["meta"]["queued_by"].endswith("r1/candidates")}
    assert not any((it["prompt"], frozenset((it["response_a"], it["response_b"]))) in first_round for it in items)
    # greedy by uncertainty: every pair left out scores below the chosen ones, or its prompt was full
    scored = [it["meta"]["uncertainty"] for it in items if it["meta"]["acquisition"] == "uncertainty"]
    per_prompt = Counter(it["meta"]["prompt_id"] for it in items)
    queued = {(it["prompt"], it["response_a"], it["response_b"]) for it in items}
    left_out = [row for row in map(json.loads, (tmp_path / "r2" / "candidates" / "pool.jsonl").open())
                if (row["prompt"], row["response_a"], row["response_b"]) not in queued]
    assert all(row["uncertainty"] <= min(scored) or per_prompt[row["meta"]["prompt_id"]] == 2 for row in left_out)
    again = run_cli(*common, f"run.dir={tmp_path / 'r2'}", "seed=1")       # a rerun queues nothing new
    assert again.returncode == 0 and json.loads((tmp_path / "r2" / "candidates" / "metrics.json").read_text())[
        "pairs_added"] == 0


@pytest.mark.parametrize("module, override, key", [
    ("alignment.stages.candidates", "candidates.acquisition=entropy", "candidates.acquisition"),
    ("alignment.stages.candidates", "candidates.random_share=1.5", "candidates.random_share"),
    ("alignment.stages.candidates", "candidates.budget=0", "candidates.budget"),
    ("alignment.stages.candidates", "candidates.max_pairs_per_prompt=0", "candidates.max_pairs_per_prompt"),
    ("alignment.stages.candidates", "candidates.ensemble.members=1", "candidates.ensemble.members"),
    ("alignment.stages.labels", "labels.rerank_every=-5", "labels.rerank_every"),
])
@pytest.mark.slow
def test_bad_acquisition_settings_exit_2_naming_the_key(tmp_path, module, override, key):
    result = run_cli(module, "scale=smoke", f"run.dir={tmp_path / 'run'}", override, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert key in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
