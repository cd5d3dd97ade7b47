"""Choosing pairs to label: the ensemble's disagreement, the random share, prompt diversity, re-ranking
the queue without disturbing leases."""

import threading
from collections import Counter

import numpy as np
import pytest
import torch

from alignment.acquisition import EXPLORE, RANDOM, UNCERTAIN, select_pairs, spread, uncertainty_summary
from alignment.config import EnsembleConfig
from alignment.reward.ensemble import Ensemble
from labeling_ui.queue import LabelQueue
from labeling_ui.rerank import pair_key, requeue_untouched
from labeling_ui.store import LabelStore


def test_disagreement_is_zero_when_members_agree_and_highest_where_they_split():
    # two linear members: they agree on pair 0 (both sure the first answer wins) and on pair 2 (both
    # call it a coin flip), and split on pair 1 (one sure the first wins, the other sure the second does)
    ens = Ensemble(torch.tensor([[[4.0], [4.0]], [[4.0], [-4.0]]]), None, None)
    first, second = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), np.zeros((3, 2))
    bald = ens.disagreement(first, second)
    p = 1 / (1 + np.exp(-4.0))
    entropy = lambda q: -(q * np.log(q) + (1 - q) * np.log(1 - q))  # noqa: E731
    assert bald[0] == pytest.approx(0.0, abs=1e-12) and bald[2] == pytest.approx(0.0, abs=1e-12)
    assert bald[1] == pytest.approx(np.log(2) - entropy(p))     # H(0.5) - H(p), by hand
    assert ens.margins(first, second).mean(axis=1).tolist() == [4.0, 0.0, 0.0]
    assert ens.accuracy(first[:1], second[:1]) == 1.0


@pytest.mark.parametrize("hidden", [0, 16])
def test_acquisition_picks_the_pairs_a_fitted_ensemble_disagrees_on(hidden):
    rng = np.random.default_rng(0)
    # many consistent labels along feature 0 (the answer with more of it wins), five conflicting ones along 1
    known = np.c_[rng.uniform(0.5, 1.5, 60), np.zeros((60, 2))]
    unsure = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0]], dtype=float)
    chosen = np.r_[known, unsure]
    cfg = EnsembleConfig(hidden=hidden, members=8, weight_decay=1e-4, steps=300)
    ens = Ensemble.fit(chosen, np.zeros_like(chosen), cfg, seed=0)
    assert ens.accuracy(known, np.zeros_like(known)) == 1.0
    first = np.r_[np.c_[np.ones(10), np.zeros((10, 2))],          # 0-9: differ where the labels agree
                  np.c_[np.zeros(10), np.ones(10), np.zeros(10)],  # 10-19: differ where they conflict
                  np.zeros((10, 3))]                               # 20-29: identical answers
    scores = ens.disagreement(first, np.zeros_like(first))
    assert scores[20:].max() == pytest.approx(0.0, abs=1e-12)
    assert scores[10:20].min() > 3 * scores[:10].max()
    chosen_pairs = select_pairs([f"p{i}" for i in range(30)], 10, 0.0, 1, seed=0, scores=scores)
    assert chosen_pairs.random == [] and sorted(chosen_pairs.scored) == list(range(10, 20))


@pytest.mark.parametrize("share", [0.0, 0.25, 1.0])
def test_random_share_and_prompt_cap_hold(share):
    prompt_ids = [f"p{i // 10}" for i in range(400)]               # 40 prompts of 10 pairs
    scores = np.array([1.0 if pid == "p0" else 0.01 * (i % 10) for i, pid in enumerate(prompt_ids)])
    sel = select_pairs(prompt_ids, 60, share, 2, seed=3, scores=scores)
    assert len(sel.indices) == len(set(sel.indices)) == 60
    assert len(sel.random) == round(60 * share)
    per_prompt = Counter(prompt_ids[i] for i in sel.indices)
    assert max(per_prompt.values()) <= 2                           # p0 is the most uncertain, yet gets 2
    if share < 1:
        assert per_prompt["p0"] == 2
    # the random share is uniform over the pool: over many seeds every pair is drawn about equally often
    if share == 1.0:
        draws = Counter(i for s in range(300) for i in select_pairs(prompt_ids, 60, 1.0, 10, seed=s).random)
        assert len(draws) == 400 and max(draws.values()) < 3 * min(draws.values())


def test_prompt_cap_counts_pairs_already_queued_and_a_short_pool_gives_fewer():
    ids = ["a"] * 5 + ["b"] * 5
    sel = select_pairs(ids, 6, 0.0, 2, seed=0, scores=np.arange(10.0), taken={"b": 1})
    assert Counter(ids[i] for i in sel.indices) == {"a": 2, "b": 1}
    assert len(select_pairs(ids, 6, 1.0, 2, seed=0).indices) == 4


def test_uncertainty_summary_compares_queued_with_pool():
    scores = np.linspace(0, 1, 101)
    sel = select_pairs(["p"] * 101, 10, 0.0, 200, seed=0, scores=scores)
    s = uncertainty_summary(scores, sel)
    assert s["queued"]["mean"] > s["pool"]["mean"] and s["queued"]["n"] == 10
    assert sum(s["histogram"]["pool"]) == 101 and sum(s["histogram"]["queued"]) == 10
    assert spread([])["mean"] is None


def _items(n, tag, prefix="q"):
    return [{"prompt": f"{prefix}{i}?", "response_a": f"yes {i}", "response_b": f"no {i}",
             "meta": {"prompt_id": f"{prefix}{i}", "acquisition": tag, "queued_by": "round-1"}} for i in range(n)]


def _as_new(item):
    return {k: item[k] for k in ("prompt", "response_a", "response_b", "meta")}


def _replaceable(item):
    return item["meta"].get("acquisition") in (UNCERTAIN, RANDOM)


def _offer(n_offer, prefix="new"):
    def choose(kept, n):
        return _items(max(n, n_offer), UNCERTAIN, prefix)[:n_offer] if n_offer else []
    return choose


def test_rerank_replaces_only_untouched_items_and_never_queues_a_pair_twice(db):
    store = LabelStore(db)
    store.add_items("p", _items(8, UNCERTAIN) + _items(2, EXPLORE, "e"), overlap=1)
    store.add_annotator("ann", "password123")
    queue = LabelQueue(store, "p", gold_rate=0.0)
    _, shown = queue.submit("ann", queue.next_item("ann").assignment_id, "A", 2)   # q0 labelled
    leased = queue.skip("ann", shown.assignment_id)    # q1 skipped: all its slots free, but someone saw it
    assert (shown.prompt, leased.prompt) == ("q1?", "q2?")          # q2: an open lease
    touched = {"q0?", "q1?", "q2?"}
    before = {it["ext_id"]: it for it in store.items("p")}
    assert {it["prompt"] for it in before.values() if it["n_labels"] or not it["slots_left"]} == {"q0?", "q2?"}
    # offer the touched q0, q1 again (reversed: the same pairs), new pairs, then the q-items once more
    offer = [dict(it, response_a=it["response_b"], response_b=it["response_a"]) for it in _items(2, UNCERTAIN)] + \
        _items(20, UNCERTAIN, "new") + _items(8, UNCERTAIN)
    done = requeue_untouched(store, "p", _replaceable, lambda kept, n: offer, keep_next=0)
    after = store.items("p")
    assert done.candidates == 5 and len(done.removed) == len(done.added) == 5    # q3..q7 out, new0..new4 in
    assert sorted(it["prompt"] for it in after if it["prompt"].startswith("new")) == [f"new{i}?" for i in range(5)]
    assert len(after) == len(before)                # the queue keeps its size
    keys = [pair_key(it["prompt"], it["response_a"], it["response_b"]) for it in after]
    assert len(keys) == len(set(keys))
    # the touched q-items and the explore items stay as they were: same rows, same ids, same counters
    for it in after:
        if it["prompt"] in touched or it["meta"]["acquisition"] == EXPLORE:
            assert it == before[it["ext_id"]]
    assert {it["prompt"] for it in after} >= touched
    assert store.check_invariants("p") == []
    # the open leases still work: the same item comes back and takes its label
    again = queue.next_item("ann")
    assert again.assignment_id == leased.assignment_id
    label_id, _ = queue.submit("ann", leased.assignment_id, "B", 1)
    assert label_id > 0 and store.check_invariants("p") == []


def test_rerank_with_nothing_to_offer_or_replace_changes_nothing(store):
    store.add_items("p", _items(3, EXPLORE), overlap=1)
    before = store.items("p")
    assert requeue_untouched(store, "p", _replaceable, _offer(5), keep_next=0).candidates == 0
    store.add_items("p", _items(3, UNCERTAIN, "u"), overlap=1)
    assert requeue_untouched(store, "p", _replaceable, _offer(5), keep_next=6).candidates == 0   # all next in line
    done = requeue_untouched(store, "p", _replaceable, _offer(0), keep_next=0)
    assert done.candidates == 3 and done.removed == [] and len(store.items("p")) == 6
    done = requeue_untouched(store, "p", _replaceable, _offer(2), keep_next=0)
    assert len(done.removed) == len(done.added) == 2 and len(store.items("p")) == 6
    # a movable item ranked among the best stays where it is; only the rest is replaced
    u = [it for it in store.items("p") if it["meta"]["acquisition"] == UNCERTAIN]
    done = requeue_untouched(store, "p", _replaceable, lambda kept, n: [_as_new(u[0])] + _items(5, UNCERTAIN, "z"), keep_next=0)
    assert len(done.removed) == 2 and u[0]["ext_id"] not in done.removed
    assert store.item(u[0]["id"]) == u[0]
    assert [it for it in store.items("p") if it["meta"]["acquisition"] == EXPLORE] == before


def test_rerank_under_concurrent_labelling_never_reassigns_or_loses_an_item(db):
    store = LabelStore(db)
    """Annotators label the whole queue while re-rankings run: every item ends with its labels, no pair
    is queued twice, and no lease was ever taken from under an annotator."""
    store.add_items("p", _items(60, UNCERTAIN), overlap=2)
    names = [f"ann{i}" for i in range(4)]
    for name in names:
        store.add_annotator(name, "password123")
    queue = LabelQueue(store, "p", gold_rate=0.0)
    errors, stop = [], threading.Event()

    def annotate(name):
        try:
            shown = queue.next_item(name)
            while shown is not None:
                _, shown = queue.submit(name, shown.assignment_id, "A", 1)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    replaced = []

    def rerank():
        k = 0
        while not stop.is_set():
            k += 1
            replaced.append(len(requeue_untouched(store, "p", _replaceable, _offer(60, f"r{k}-")).removed))

    threads = [threading.Thread(target=annotate, args=(n,)) for n in names]
    reranker = threading.Thread(target=rerank)
    reranker.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reranker.join()
    assert errors == [] and sum(replaced) > 0
    items = store.items("p")
    # PostgreSQL's two transactions may leave the queue a few items longer when annotators outrun them
    # (annotators that stopped before those came in leave them short of labels)
    extra = len(items) - 60
    assert (extra >= 0 if store.postgres else extra == 0) and store.count_pending("p") <= extra
    assert store.check_invariants("p") == []
    keys = [pair_key(it["prompt"], it["response_a"], it["response_b"]) for it in items]
    assert len(keys) == len(set(keys))
    assert sum(it["n_labels"] == 2 for it in items) >= 60
    assert sum(it["prompt"].startswith("r") for it in items) > 0     # some re-ranked items were labelled


def test_the_labels_section_names_the_rule_and_draws_without_pyplot():
    import matplotlib.pyplot as plt

    from alignment.reports.acquisition import acquisition_html

    scores = np.linspace(0, 0.5, 50)
    sel = select_pairs(["p"] * 50, 10, 0.2, 50, seed=0, scores=scores)
    candidates = {"acquisition": {
        "rule": "uncertainty", "random_share": 0.2, "max_pairs_per_prompt": 2, "pool_pairs": 50, "queued": 10,
        "ensemble": {"hidden": 64, "min_pairs": 10}, "model": {"members": 8, "encoder": "minilm", "pairs": 37},
        "uncertainty": uncertainty_summary(scores, sel)}}
    labels = {"reranks": [{"labels": 30, "pairs": 9, "replaceable": 12, "replaced": 5, "seconds": 0.4}],
              "learning_curve": {"heldout": "gold preference", "heldout_pairs": 180,
                                 "points": [{"labels": 10, "accuracy": 0.6}, {"labels": 40, "accuracy": 0.8}]}}
    before = plt.get_fignums()
    page = acquisition_html(candidates, labels)
    assert plt.get_fignums() == before                   # Figure objects, no pyplot state
    assert "By uncertainty" in page and "trained on 37 labelled pairs" in page and "20% of the queue" in page
    assert page.count("<img") == 2 and "Re-rankings during labelling" in page and "0.8" in page
    fallback = dict(candidates["acquisition"], model=None, uncertainty=None)
    assert "without a reward model yet" in acquisition_html({"acquisition": fallback}, None)
    assert acquisition_html({"acquisition": {"rule": "random", "pairing": "random"}}, None).count("At random") == 1
    assert acquisition_html(None, None) == ""


@pytest.mark.slow
def test_two_rounds_choose_by_uncertainty_and_rerank_during_labelling(tmp_path):
    """The loop: round 1 has no model (random, with a log line), its labels stage re-ranks the queue while
    the bots label, round 2's candidates are chosen by the ensemble trained on round 1's labels, and the
    run report's labels section shows the rule and the learning curve."""
    import json

    from conftest import run_cli

    run_dir = tmp_path / "run"
    result = run_cli("alignment.pipeline", "scale=smoke", f"run.dir={run_dir}", "rounds=2", "safety=fast",
                     "pipeline.stages=[sft,candidates,labels,reward]", "candidates.acquisition=uncertainty",
                     "candidates.n_prompts=16", "candidates.responses_per_prompt=4", "candidates.budget=24",
                     "candidates.ensemble.min_pairs=4",
                     "labels.rerank_every=9", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no reward model yet" in result.stderr
    first = json.loads((run_dir / "candidates" / "metrics.json").read_text())["acquisition"]
    second = json.loads((run_dir / "round-2" / "candidates" / "metrics.json").read_text())["acquisition"]
    assert first["model"] is None and first["queued"] == 24
    assert second["model"]["pairs"] >= 4 and second["queued"] >= 16 and second["uncertainty"]["queued"]["n"] == second["queued"]
    labels = json.loads((run_dir / "labels" / "metrics.json").read_text())
    assert labels["reranks"] and all(r["replaced"] <= r["replaceable"] for r in labels["reranks"])
    assert labels["learning_curve"]["points"]
    store = LabelStore(run_dir / "labels" / "labels.db")
    assert store.check_invariants("default") == [] and store.count_pending("default") == 0
    items = store.items("default")
    keys = [pair_key(it["prompt"], it["response_a"], it["response_b"]) for it in items]
    assert len(keys) == len(set(keys))
    page = (run_dir / "report.html").read_text()
    assert "How the pairs were chosen" in page and "By uncertainty: the disagreement" in page
    assert "Learning curve" in page
