#!/usr/bin/env python
"""Benchmark: what each label buys, choosing pairs by the reward model's uncertainty against at random.

    python scripts/bench_active.py [--seeds 0,...,9] [--budget 200] [--batch 10] [--sft-dir RUN] [--skip-ppo] [--skip-hh]

**Demo world** (the gold preference is known). ``align-sft`` trains the demo policy (or ``--sft-dir``
gives a run that has one); ``align-candidates candidates.acquisition=uncertainty`` samples
``--pool-responses`` answers to every training prompt and forms the pool (every distinct pair of a
prompt's answers) with its frozen MiniLM features, as the pipeline's stage does. Then, per seed and
method, labels are bought ``--batch`` pairs at a time (10: a re-ranking every 30 labels at the demo's
overlap of 3) up to ``B = --budget`` pairs (the demo pipeline's 200), each pair from three simulated
annotators (the bots' noise 0.1 and position bias 0.05, display order drawn per label; majority vote,
ties dropped, as the export does): ``random`` draws each batch uniformly from the pool (at most 2
pairs per prompt); ``uncertainty`` draws at random until 10 pairs are labelled (no model yet), then
as ``align-candidates`` does (:func:`alignment.acquisition.select_pairs`: 20% at random, the rest by
the disagreement of the ensemble of :mod:`alignment.reward.ensemble`, retrained on the labels so far).
What is trained here is that cheap model, not the reward stage: at ``B/4``, ``B/2`` and ``B`` pairs the
ensemble is fitted on every label so far, and ``rm_gold_accuracy`` is how often its mean reward orders
held-out pairs as the gold preference does (every pair of styles the gold reward tells apart, on each
held-out prompt, written by the world).

Then the real stages, for the PPO comparison: ``align-reward`` (the demo's reward model: ``tiny``, from
the SFT policy) on uncertainty's ``B/2`` labelled pairs and on random's ``B`` (acquisition seed = the
first of ``--seeds``), each followed by ``align-ppo`` from the same SFT policy with ``seed=--ppo-seed``:
``ppo_gold_win_rate`` is PPO's gold win rate over SFT for each; ``reward_stage`` adds those reward
models' accuracy on the held-out gold pairs.

**HH-RLHF** (the 1,600 real pairs in ``../shared``): a fixed fifth of them, grouped by opening
question, is held out; the rest is the pool, whose human choice is revealed when a pair is
"labelled". Random and uncertainty (batches of 100, the first at random) at 200, 400 and 800 labels,
and the whole pool (the same set for both); ``hh_accuracy`` is the ensemble's agreement with the human
choice on the held-out pairs.

Ends with one JSON line: ``rm_gold_accuracy`` (method -> budget -> mean over seeds, ``ci95`` and the
per-seed values), ``ppo_gold_win_rate``, ``hh_accuracy`` (method -> labels -> mean over seeds),
``budgets``, ``seeds``, ``wall_s``, ``targets`` (with the per-seed difference of uncertainty at ``B/2``
and random at ``B``) and ``diagnostics``: usable pairs and tie share per budget, the label noise left
after the vote, the pool's size and tie share, and how well the ensemble's disagreement finds the pool
pairs its mean reward gets wrong (AUROC). Targets on 2 cores: uncertainty at ``B/2`` at least random's
gold accuracy at ``B``; PPO from uncertainty's ``B/2`` within 0.03 of random's ``B`` gold win rate;
the whole benchmark within 30 minutes.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np

from benchlib import ROOT, emit, read_json, run_module, setup

HH_DATA = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless" / "harmless-base-test.dev.jsonl"
MARGINS = (0.0, 1 / 3, 2 / 3, 1.0)
log = logging.getLogger("bench_active")


def ci95(values: list[float]) -> list[float]:
    """Student's t interval of the mean over seeds."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return [float(v.mean())] * 2
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return [round(float(v.mean() - half), 4), round(float(v.mean() + half), 4)]


def simulate(first: np.ndarray, second: np.ndarray, prompt_ids: list[str], label, checkpoints: list[int],
             batch: int, method: str, seed: int, cfg) -> dict:
    """Buy labels batch by batch; at each checkpoint, the pool indices labelled so far (in order), and
    ``labels``: ``label(i)`` of each, +1 (first answer wins), -1 (second wins) or 0 (no usable label)."""
    from alignment.acquisition import select_pairs

    chosen: list[int] = []
    labels: dict[int, int] = {}
    taken: Counter[str] = Counter()
    out: dict = {}
    step = 0
    while len(chosen) < checkpoints[-1]:
        want = min(batch, checkpoints[-1] - len(chosen))
        free = np.setdiff1d(np.arange(len(prompt_ids)), chosen)
        usable = [i for i in chosen if labels[i]]
        scores = None
        if method == "uncertainty" and len(usable) >= cfg.min_pairs:
            scores = fit(first, second, usable, labels, cfg, seed * 1000 + step).disagreement(first[free], second[free])
        sel = select_pairs([prompt_ids[i] for i in free], want, 0.2 if scores is not None else 1.0, 2,
                           seed * 1000 + step, scores=scores, taken=taken)
        for j in sel.indices:
            i = int(free[j])
            chosen.append(i)
            labels[i] = label(i)
            taken[prompt_ids[i]] += 1
        step += 1
        if len(chosen) in checkpoints:
            out[len(chosen)] = list(chosen)
        if not sel.indices:
            break
    return out | {"labels": labels}


def fit(first: np.ndarray, second: np.ndarray, idx: list[int], labels: dict[int, int], cfg, seed: int):
    """The ensemble on the usable labelled pairs among ``idx``."""
    from alignment.reward.ensemble import Ensemble

    usable = [i for i in idx if labels[i]]
    wins = np.array([labels[i] > 0 for i in usable])[:, None]
    chosen = np.where(wins, first[usable], second[usable])
    rejected = np.where(wins, second[usable], first[usable])
    return Ensemble.fit(chosen, rejected, cfg, seed)


def head_accuracy(first: np.ndarray, second: np.ndarray, idx: list[int], labels: dict[int, int],
                  better: np.ndarray, worse: np.ndarray, cfg) -> tuple[float, int]:
    """The ensemble on the usable labelled pairs (the cheap reward model: its members' mean reward):
    accuracy on the held-out pairs, and the pairs it learnt from."""
    head = fit(first, second, idx, labels, cfg, 0)
    return head.accuracy(better, worse), sum(1 for i in idx if labels[i])


def finds_errors(first: np.ndarray, second: np.ndarray, idx: list[int], labels: dict[int, int],
                 gold_sign: np.ndarray, cfg, seed: int) -> float:
    """AUROC of the ensemble's disagreement, over the unlabelled pool pairs the gold preference orders,
    for telling apart those its mean reward orders wrongly: does uncertainty point at the mistakes?"""
    from sklearn.metrics import roc_auc_score

    ens = fit(first, second, idx, labels, cfg, seed)
    rest = np.setdiff1d(np.arange(len(first)), idx)
    rest = rest[gold_sign[rest] != 0]
    wrong = np.sign(ens.margins(first[rest], second[rest]).mean(axis=1)) != gold_sign[rest]
    scores = ens.disagreement(first[rest], second[rest])
    return float(roc_auc_score(wrong, scores)) if 0 < wrong.sum() < len(wrong) else float("nan")


# ------------------------------------------------------------------------------------------ demo world
class DemoLabeler:
    """Three simulated annotators per pair (the bots' settings), majority vote as the export takes it."""

    def __init__(self, world, pool: list[dict], seed: int, noise: float, position_bias: float = 0.05) -> None:
        from alignment.data.world import SimulatedAnnotator

        self.world, self.pool = world, pool
        self.annotators = [SimulatedAnnotator(world, noise, position_bias, seed=seed * 10 + k) for k in range(3)]
        self.rng = random.Random(f"display/{seed}")
        self.rows: dict[int, dict] = {}

    def __call__(self, i: int) -> int:
        item = self.pool[i]
        prompt = self.world.find(item["prompt"])
        votes = []
        for annotator in self.annotators:
            flip = self.rng.random() < 0.5       # the app draws the display order per assignment
            first, second = (item["response_b"], item["response_a"]) if flip else (item["response_a"], item["response_b"])
            lab = annotator.label(prompt, first, second)
            choice = lab.choice if lab.choice == "tie" or not flip else {"A": "B", "B": "A"}[lab.choice]
            votes.append((choice, lab.strength))
        ranked = Counter(c for c, _ in votes).most_common()
        if (len(ranked) > 1 and ranked[0][1] == ranked[1][1]) or ranked[0][0] == "tie":
            return 0
        winner = ranked[0][0]
        chosen, rejected = (item["response_a"], item["response_b"]) if winner == "A" else (item["response_b"], item["response_a"])
        margin = float(np.mean([MARGINS[s - 1] for c, s in votes if c == winner]))
        self.rows[i] = {"prompt": item["prompt"], "chosen": chosen, "rejected": rejected, "margin": margin}
        return 1 if winner == "A" else -1


def gold_pairs(world) -> list[dict]:
    """Every pair of styles the gold reward tells apart, on each held-out prompt, written by the world."""
    from alignment.data.world import STYLES_BY_KIND

    rng = random.Random("bench-active/heldout")
    rows = []
    for prompt in world.prompts("eval"):
        for first, second in combinations(STYLES_BY_KIND[prompt.kind], 2):
            a, b = world.respond(prompt, first, rng), world.respond(prompt, second, rng)
            if world.gold_reward(prompt, a) != world.gold_reward(prompt, b):
                better_first = world.gold_reward(prompt, a) > world.gold_reward(prompt, b)
                rows.append({"prompt": prompt.text, "chosen": a if better_first else b,
                             "rejected": b if better_first else a})
    return rows


def demo_pool(tmp: Path, sft: Path, responses: int, budget: int) -> Path:
    """``align-candidates`` with acquisition by uncertainty on every training prompt: its folder."""
    from alignment.data.world import DemoWorld

    n_prompts = len(DemoWorld(0).prompts("train"))
    run_module("alignment.stages.candidates", f"run.dir={tmp / 'pool'}", f"candidates.policy_path={sft / 'sft' / 'model'}",
               f"candidates.n_prompts={n_prompts}", f"candidates.responses_per_prompt={responses}",
               "candidates.acquisition=uncertainty", f"candidates.budget={budget}", "safety=fast")
    return tmp / "pool" / "candidates"


def demo_curves(pool_dir: Path, seeds: list[int], budget: int, batch: int, cfg, noise: float) -> dict:
    """Random against uncertainty on the demo world's pool: accuracies, label sets and diagnostics."""
    from alignment.acquisition import SavedPool
    from alignment.data.world import DemoWorld

    world = DemoWorld(0)
    saved = SavedPool.load(pool_dir)        # the pool and its features, as the labels stage's re-ranking reads them
    pool, first, second = saved.pool, saved.first, saved.second
    prompt_ids = [p["meta"]["prompt_id"] for p in pool]
    held_rows = gold_pairs(world)
    better, worse = saved.encoder.pairs([(r["prompt"], r["chosen"], r["rejected"]) for r in held_rows])
    gold = np.array([np.sign(world.gold_reward(world.find(p["prompt"]), p["response_a"])
                             - world.gold_reward(world.find(p["prompt"]), p["response_b"])) for p in pool])
    checkpoints = [budget // 4, budget // 2, budget]
    acc: dict[str, dict[int, list[float]]] = {m: {b: [] for b in checkpoints} for m in ("random", "uncertainty")}
    usable: dict[str, dict[int, list[int]]] = {m: {b: [] for b in checkpoints} for m in acc}
    tie_share: dict[str, dict[int, list[float]]] = {m: {b: [] for b in checkpoints} for m in acc}
    label_noise: list[float] = []
    auroc: list[float] = []
    label_sets: dict[str, list[dict]] = {}
    for seed in seeds:
        for method in acc:
            labeler = DemoLabeler(world, pool, seed, noise)
            run = simulate(first, second, prompt_ids, labeler, checkpoints, batch, method, seed, cfg)
            for b in checkpoints:
                a, n = head_accuracy(first, second, run[b], run["labels"], better, worse, cfg)
                acc[method][b].append(a)
                usable[method][b].append(n)
                tie_share[method][b].append(float((gold[run[b]] == 0).mean()))
            log.info("seed %d %s: gold accuracy %s", seed, method, [round(acc[method][b][-1], 3) for b in checkpoints])
            if method == "random":
                voted = [i for i in run[budget] if run["labels"][i] and gold[i]]
                label_noise.append(float(np.mean([run["labels"][i] != gold[i] for i in voted])))
                auroc.append(finds_errors(first, second, run[budget // 2], run["labels"], gold, cfg, seed))
            if seed == seeds[0]:
                n = budget // 2 if method == "uncertainty" else budget
                label_sets[method] = [labeler.rows[i] for i in run[n] if i in labeler.rows]
    return {"acc": acc, "usable": usable, "tie_share": tie_share, "label_sets": label_sets, "held_rows": held_rows,
            "checkpoints": checkpoints, "pool_pairs": len(pool), "pool_tie_share": float((gold == 0).mean()),
            "label_noise": float(np.mean(label_noise)), "auroc": float(np.nanmean(auroc))}


def ppo_comparison(tmp: Path, sft: Path, label_sets: dict[str, list[dict]], held_rows: list[dict], seed: int) -> dict:
    """``align-reward`` then ``align-ppo`` on each method's labels, from the same SFT policy and seed."""
    held_file = tmp / "heldout.jsonl"
    held_file.write_text("".join(json.dumps({k: r[k] for k in ("prompt", "chosen", "rejected")}) + "\n"
                                 for r in held_rows))
    out = {}
    for method, rows in label_sets.items():
        run_dir = tmp / f"ppo-{method}"
        data = run_dir / "labels.jsonl"
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        common = [f"run.dir={run_dir}", f"seed={seed}"]
        status, reward_s = run_module("alignment.stages.reward", *common, "data=custom", f"data.source={data}",
                                      f"data.eval_source={held_file}", f"reward.sft_path={sft / 'sft' / 'model'}",
                                      check=False)
        if status not in (0, 3):
            sys.exit(f"align-reward on {method}'s labels exited with status {status}")
        status, ppo_s = run_module("alignment.stages.ppo", *common, f"ppo.policy_path={sft / 'sft' / 'model'}",
                                   f"ppo.reward_path={run_dir / 'reward' / 'model'}",
                                   f"ppo.safety_baseline={sft / 'sft' / 'safety.json'}", check=False)
        if status not in (0, 3):
            sys.exit(f"align-ppo on {method}'s reward model exited with status {status}")
        reward, ppo = read_json(run_dir / "reward" / "metrics.json"), read_json(run_dir / "ppo" / "metrics.json")
        out[method] = {"pairs": len(rows), "gold_win_rate": ppo.get("gold_win_rate"),
                       "reward_gold_accuracy": reward.get("eval_accuracy"), "reward_s": round(reward_s, 1),
                       "ppo_s": round(ppo_s, 1)}
        log.info("%s: %d pairs, reward model gold accuracy %.3f, PPO gold win rate %s", method, len(rows),
                 reward.get("eval_accuracy"), ppo.get("gold_win_rate"))
    return out


# ------------------------------------------------------------------------------------------ HH-RLHF
def hh_pool(path: Path) -> tuple[list[dict], list[dict]]:
    """The real pairs as (pool, held-out): a fixed fifth of the opening questions held out. Each pool pair
    shows its answers in a fixed random order (``first_chosen``)."""
    from alignment.data.preferences import hh_pair

    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = hh_pair(**{k: v for k, v in json.loads(line).items() if k in ("chosen", "rejected")})
        except (ValueError, TypeError):
            continue            # a few pairs do not parse (see alignment/data/assets/hh/SOURCE.md)
        if row["chosen"].strip() and row["rejected"].strip() and row["chosen"].strip() != row["rejected"].strip():
            rows.append(row)
    opening = sorted({r["prompt"].split("\n\nAssistant:")[0] for r in rows})
    random.Random(0).shuffle(opening)
    held_out = set(opening[:len(opening) // 5])
    rng = random.Random("hh-order")
    pool, held = [], []
    for r in rows:
        (held if r["prompt"].split("\n\nAssistant:")[0] in held_out else pool).append(r)
    for r in pool:
        r["first_chosen"] = rng.random() < 0.5
    return pool, held


def hh_curves(seeds: list[int], cfg) -> dict:
    """Random against uncertainty on the real pairs: accuracy on the held-out pairs per label count."""
    from alignment.reward.ensemble import PairEncoder

    pool, held_rows = hh_pool(HH_DATA)
    encoder = PairEncoder(cfg)
    started = time.monotonic()
    ordered = [(r["prompt"], *((r["chosen"], r["rejected"]) if r["first_chosen"] else (r["rejected"], r["chosen"])))
               for r in pool]
    encoder.add([(p, x) for p, a, b in ordered for x in (a, b)])
    encoder.fit_projection()                   # on the pool, as align-candidates does
    first, second = encoder.pairs(ordered)
    better, worse = encoder.pairs([(r["prompt"], r["chosen"], r["rejected"]) for r in held_rows])
    log.info("HH-RLHF: %d pool and %d held-out pairs encoded in %.0f s", len(pool), len(held_rows),
             time.monotonic() - started)
    prompt_ids = [r["prompt"] for r in pool]
    checkpoints = [b for b in (200, 400, 800) if b < len(pool)]
    labels = {i: 1 if r["first_chosen"] else -1 for i, r in enumerate(pool)}   # the human choice, revealed

    acc: dict[str, dict[int, list[float]]] = {m: {b: [] for b in [*checkpoints, len(pool)]}
                                              for m in ("random", "uncertainty")}
    whole = head_accuracy(first, second, list(range(len(pool))), labels, better, worse, cfg)[0]  # seed-free
    for seed in seeds:
        for method in acc:
            run = simulate(first, second, prompt_ids, labels.__getitem__, checkpoints, 100, method, seed, cfg)
            for b in checkpoints:
                acc[method][b].append(head_accuracy(first, second, run[b], labels, better, worse, cfg)[0])
            acc[method][len(pool)].append(whole)          # the whole pool: the same for both methods
            log.info("HH seed %d %s: accuracy %s", seed, method, [round(v[-1], 3) for v in acc[method].values()])
    return {"acc": acc, "pool_pairs": len(pool), "heldout_pairs": len(held_rows)}


def summary(acc: dict[str, dict[int, list[float]]]) -> dict:
    return {m: {str(b): {"mean": round(float(np.mean(v)), 4), "ci95": ci95(v), "seeds": [round(x, 4) for x in v]}
                for b, v in by_budget.items()} for m, by_budget in acc.items()}


def main() -> None:
    import argparse

    setup("bench_active")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9", help="comma-separated seeds of the acquisition runs")
    parser.add_argument("--budget", type=int, default=200, help="B: the demo pipeline's pairs per round")
    parser.add_argument("--batch", type=int, default=10, help="pairs bought between two refits (re-ranking every "
                        "30 labels at overlap 3)")
    parser.add_argument("--pool-responses", type=int, default=6, help="answers per training prompt in the pool")
    parser.add_argument("--noise", type=float, default=0.1, help="the simulated annotators' label noise")
    parser.add_argument("--hidden", type=int, default=None, help="the heads' hidden units (0: linear heads)")
    parser.add_argument("--members", type=int, default=None, help="ensemble members")
    parser.add_argument("--sft-dir", type=Path, default=None, help="a run with sft/model (default: train one)")
    parser.add_argument("--pool-dir", type=Path, default=None,
                        help="reuse the candidates folder of an earlier run's pool (see --keep)")
    parser.add_argument("--ppo-seed", type=int, default=0)
    parser.add_argument("--skip-ppo", action="store_true")
    parser.add_argument("--skip-hh", action="store_true")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    if len(seeds) < 1 or args.budget < 8 or args.batch < 1:
        sys.exit("--seeds: at least one; --budget: at least 8; --batch: at least 1")
    from alignment.config import EnsembleConfig

    cfg = EnsembleConfig(**{k: v for k, v in (("hidden", args.hidden), ("members", args.members)) if v is not None})
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench-active-")) if args.keep is None else args.keep
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        sft = args.sft_dir
        if sft is None:
            sft = tmp / "base"
            run_module("alignment.stages.sft", f"run.dir={sft}")
        pool_dir = args.pool_dir or demo_pool(tmp, sft, args.pool_responses, args.budget)
        demo = demo_curves(pool_dir, seeds, args.budget, args.batch, cfg, args.noise)
        ppo = None if args.skip_ppo else ppo_comparison(tmp, sft, demo["label_sets"], demo["held_rows"], args.ppo_seed)
        hh = None if args.skip_hh or not HH_DATA.is_file() else hh_curves(seeds, cfg)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    emit(figures(demo, ppo, hh, seeds, args.budget, time.monotonic() - started) | {
        "settings": {"batch": args.batch, "noise": args.noise, "pool_responses": args.pool_responses,
                     "hidden": cfg.hidden, "members": cfg.members, "dims": cfg.dims}})


def figures(demo: dict, ppo: dict | None, hh: dict | None, seeds: list[int], budget: int, wall: float) -> dict:
    acc = demo["acc"]
    half, full = budget // 2, budget
    unc_half, rnd_full = float(np.mean(acc["uncertainty"][half])), float(np.mean(acc["random"][full]))
    paired = list(np.subtract(acc["uncertainty"][half], acc["random"][full]))
    win = {m: ppo[m]["gold_win_rate"] for m in ppo} if ppo else None
    return {
        "rm_gold_accuracy": summary(acc),
        "ppo_gold_win_rate": None if win is None else {"uncertainty": win["uncertainty"], "random": win["random"],
                                                       "uncertainty_pairs": half, "random_pairs": full},
        "hh_accuracy": None if hh is None else {m: {str(b): round(float(np.mean(v)), 4) for b, v in by_b.items()}
                                                for m, by_b in hh["acc"].items()},
        "hh": None if hh is None else {"accuracy": summary(hh["acc"]), "pool_pairs": hh["pool_pairs"],
                                       "heldout_pairs": hh["heldout_pairs"]},
        "budgets": demo["checkpoints"], "seeds": seeds, "wall_s": round(wall, 1),
        "targets": {
            "uncertainty_half_vs_random_full": round(unc_half - rnd_full, 4),
            "uncertainty_half_vs_random_full_per_seed": {
                "mean": round(float(np.mean(paired)), 4), "ci95": ci95(paired)},
            "uncertainty_half_reaches_random_full": unc_half >= rnd_full,
            "ppo_within_0.03": None if win is None or None in win.values() else win["uncertainty"] >= win["random"] - 0.03,
            "within_30_min": wall <= 1800,
        },
        "reward_stage": ppo,
        "diagnostics": {
            "pool_pairs": demo["pool_pairs"], "pool_tie_share": round(demo["pool_tie_share"], 4),
            "label_noise_after_vote": round(demo["label_noise"], 4),
            "disagreement_finds_errors_auroc": round(demo["auroc"], 4),
            "usable_pairs": {m: {str(b): float(np.mean(v)) for b, v in by_b.items()} for m, by_b in demo["usable"].items()},
            "tie_share": {m: {str(b): round(float(np.mean(v)), 4) for b, v in by_b.items()}
                          for m, by_b in demo["tie_share"].items()},
        },
    }


if __name__ == "__main__":
    main()
