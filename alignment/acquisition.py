"""Which candidate pairs people label: at random, or where the reward model is least sure.

``align-candidates`` samples more pairs than it queues (every distinct pair of each prompt's answers:
the *pool*). With ``candidates.acquisition=uncertainty`` it trains the ensemble of
:mod:`alignment.reward.ensemble` on every pair of the project labelled so far (the labels the current
reward model learnt from) and queues the ``budget`` pairs:

* a ``random_share`` drawn uniformly from the pool (tagged ``explore``): exploration, and an unbiased
  sample of the pool to evaluate on;
* the rest in order of the ensemble's disagreement (tagged ``uncertainty``);
* never more than ``max_pairs_per_prompt`` from one prompt, so no prompt takes a large part of the queue.

With fewer than ``ensemble.min_pairs`` labelled pairs (the first round: no reward model yet) the choice
is random (tagged ``random``) and a log line says so. The tag and the pair's uncertainty go into each
item's ``meta`` (``acquisition``, ``uncertainty``), with ``queued_by`` naming the stage folder.

The stage leaves what a re-ranking needs in its folder: ``pool.jsonl`` (every pool pair as an item),
``features.npy`` with ``features.json`` (the encoder's features by (prompt, response)) and
``acquisition.json`` (the settings). During labelling, ``labels.rerank_every=K`` retrains the ensemble
every ``K`` labels and swaps the untouched ``uncertainty``/``random`` items of the round for the
pool's most uncertain pairs (:func:`labeling_ui.rerank.requeue_untouched`): leased, labelled and
``explore`` items never move.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alignment.config import EnsembleConfig
from alignment.data.loading import read_jsonl
from alignment.io import write_bytes_atomic, write_json_atomic, write_jsonl_atomic
from alignment.reward.ensemble import Ensemble, PairEncoder, fit_ensemble

log = logging.getLogger(__name__)

#: The ``meta["acquisition"]`` tags: why a pair was queued.
EXPLORE, UNCERTAIN, RANDOM = "explore", "uncertainty", "random"
POOL_FILE, FEATURES_FILE, KEYS_FILE, SETTINGS_FILE = "pool.jsonl", "features.npy", "features.json", "acquisition.json"


@dataclass
class Selection:
    """Indices into the pool: those drawn at random, then those chosen by score (best first)."""

    random: list[int]
    scored: list[int]

    @property
    def indices(self) -> list[int]:
        return self.random + self.scored


def select_pairs(prompt_ids: Sequence[str], budget: int, random_share: float, max_per_prompt: int, seed: int,
                 scores: np.ndarray | None = None, taken: Mapping[str, int] | None = None) -> Selection:
    """Up to ``budget`` pool indices: ``round(budget * random_share)`` uniformly at random (all of them
    when ``scores`` is None), the rest by descending score (ties in random order), with at most
    ``max_per_prompt`` per prompt counting the ``taken`` ones already queued. Fewer when the cap or the
    pool runs out."""
    n = len(prompt_ids)
    rng = np.random.default_rng(seed)
    counts: Counter[str] = Counter(taken or {})
    chosen = np.zeros(n, dtype=bool)

    def take(order: np.ndarray, want: int) -> list[int]:
        out: list[int] = []
        for i in order:
            if len(out) >= want:
                break
            if not chosen[i] and counts[prompt_ids[i]] < max_per_prompt:
                chosen[i] = True
                counts[prompt_ids[i]] += 1
                out.append(int(i))
        return out

    n_random = budget if scores is None else min(budget, round(budget * random_share))
    shuffled = rng.permutation(n)
    random_part = take(shuffled, n_random)
    scored_part: list[int] = []
    if scores is not None:
        ranked = shuffled[np.argsort(-np.asarray(scores)[shuffled], kind="stable")]
        scored_part = take(ranked, budget - len(random_part))
    if len(random_part) + len(scored_part) < budget:
        log.warning("only %d of %d pairs could be chosen (pool of %d, at most %d per prompt)",
                    len(random_part) + len(scored_part), budget, n, max_per_prompt)
    return Selection(random_part, scored_part)


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean and quartiles of some uncertainties (``None`` for none)."""
    v = np.asarray(values, dtype=float)
    if not len(v):
        return {"n": 0, "mean": None, "p25": None, "median": None, "p75": None}
    q = np.quantile(v, [0.25, 0.5, 0.75])
    return {"n": int(len(v)), "mean": float(v.mean()), "p25": float(q[0]), "median": float(q[1]), "p75": float(q[2])}


def uncertainty_summary(scores: np.ndarray, selection: Selection, bins: int = 20) -> dict[str, Any]:
    """How the queued pairs' uncertainty compares with the pool's: spreads and a shared histogram."""
    scores = np.asarray(scores, dtype=float)
    edges = np.linspace(0.0, max(float(scores.max()), 1e-9), bins + 1)
    queued = scores[selection.indices]
    return {"pool": spread(scores), "queued": spread(queued), "queued_random": spread(scores[selection.random]),
            "queued_by_uncertainty": spread(scores[selection.scored]),
            "histogram": {"edges": edges.tolist(), "pool": np.histogram(scores, edges)[0].tolist(),
                          "queued": np.histogram(queued, edges)[0].tolist()}}


def labelled_rows(store: Any, project: str) -> list[dict]:
    """The project's preference pairs so far (complete items, majority vote: what the export writes),
    in the order they were queued."""
    from labeling_ui.export import aggregate

    if store.get_project(project) is None:
        return []
    rows, _ = aggregate(store, project)
    return [r for r in rows if r["label"] == "chosen"]


# ------------------------------------------------------------------------------------------ the stage's files
def save_pool(out: Path, items: Sequence[dict], scores: np.ndarray | None, encoder: PairEncoder,
              settings: dict) -> None:
    """What a re-ranking during labelling reloads (see the module doc)."""
    rows = [dict(it) | {"uncertainty": None if scores is None else float(scores[i])} for i, it in enumerate(items)]
    write_jsonl_atomic(out / POOL_FILE, rows)
    keys, features = encoder.export()
    buffer = io.BytesIO()
    np.save(buffer, features.astype(np.float32))
    write_bytes_atomic(out / FEATURES_FILE, buffer.getvalue())
    write_json_atomic(out / KEYS_FILE, [list(k) for k in keys])
    write_json_atomic(out / SETTINGS_FILE, settings)


def tagged(item: dict, tag: str, score: float | None, queued_by: str) -> dict:
    """``item`` with the acquisition's record in its ``meta``."""
    return item | {"meta": dict(item.get("meta") or {}) | {"acquisition": tag, "uncertainty": score,
                                                            "queued_by": queued_by}}


# ------------------------------------------------------------------------------------------ learning curve
def learning_curve(encoder: PairEncoder, rows: Sequence[dict], heldout: Sequence[dict], cfg: EnsembleConfig,
                   seed: int, fractions: Sequence[float] = (0.25, 0.5, 0.75, 1.0)) -> list[dict]:
    """The accuracy on ``heldout`` rows (``first_better`` says which answer should win) of the ensemble's
    mean reward, trained on the first ``fraction`` of ``rows`` (in labelling order), per fraction."""
    encoder.add([(r["prompt"], r[k]) for r in rows for k in ("chosen", "rejected")]
                + [(r["prompt"], r[k]) for r in heldout for k in ("first", "second")])
    encoder.fit_projection()
    chosen, rejected = encoder.pairs([(r["prompt"], r["chosen"], r["rejected"]) for r in rows])
    better, worse = encoder.pairs([(r["prompt"], *((r["first"], r["second"]) if r["first_better"]
                                                   else (r["second"], r["first"]))) for r in heldout])
    points = []
    for n in sorted({max(2, round(f * len(rows))) for f in fractions}):
        if n > len(rows):
            continue
        ensemble = Ensemble.fit(chosen[:n], rejected[:n], cfg, seed)
        points.append({"labels": n, "accuracy": ensemble.accuracy(better, worse)})
    return points


def gold_heldout(world: Any, seed: int) -> list[dict]:
    """One pair per held-out demo prompt, two world-written answers of styles the gold reward tells apart."""
    import random

    from alignment.data.world import STYLES_BY_KIND

    rng = random.Random(f"acquisition-heldout/{seed}")
    out = []
    for prompt in world.prompts("eval"):
        first, second = rng.sample(STYLES_BY_KIND[prompt.kind], 2)
        a, b = world.respond(prompt, first, rng), world.respond(prompt, second, rng)
        gold_a, gold_b = world.gold_reward(prompt, a), world.gold_reward(prompt, b)
        if gold_a != gold_b:
            out.append({"prompt": prompt.text, "first": a, "second": b, "first_better": gold_a > gold_b})
    return out


def project_learning_curve(store: Any, project: str, cfg: EnsembleConfig, seed: int, world: Any | None,
                           min_heldout: int = 20) -> dict:
    """The ensemble's accuracy against the number of the project's labelled pairs (its learning curve).

    Held out: with the demo ``world``, pairs on its held-out prompts judged by the gold reward; otherwise
    one in five of the pairs chosen at random (``explore``/``random``, or queued without acquisition:
    an unbiased sample), judged by their labels and left out of training.
    """
    rows = labelled_rows(store, project)
    if world is not None:
        heldout, source = gold_heldout(world, seed), "gold preference, held-out demo prompts"
    else:
        tags = {it["ext_id"]: (it["meta"] or {}).get("acquisition") for it in store.items(project)}
        unbiased = [i for i, r in enumerate(rows) if tags.get(r["item_id"]) in (None, EXPLORE, RANDOM)][::5]
        heldout = [{"prompt": rows[i]["prompt"], "first": rows[i]["chosen"], "second": rows[i]["rejected"],
                    "first_better": True} for i in unbiased]
        held_out = set(unbiased)
        rows = [r for i, r in enumerate(rows) if i not in held_out]
        source = "labels of one in five randomly chosen pairs"
    record: dict[str, Any] = {"heldout": source, "heldout_pairs": len(heldout), "points": []}
    if len(rows) < cfg.min_pairs or len(heldout) < min_heldout:
        record["skipped"] = f"{len(rows)} labelled pairs to train on and {len(heldout)} held out: too few"
        return record
    record["points"] = learning_curve(PairEncoder(cfg), rows, heldout, cfg, seed)
    return record


# ------------------------------------------------------------------------------------------ re-ranking
@dataclass
class SavedPool:
    """What :func:`save_pool` wrote, loaded back: the settings, the pool, and the encoder with its
    features (projected as the candidates stage projected them)."""

    settings: dict
    cfg: EnsembleConfig
    pool: list[dict]
    encoder: PairEncoder
    #: Features of each pool pair's first and second answer.
    first: np.ndarray
    second: np.ndarray

    @classmethod
    def load(cls, candidates_dir: Path) -> SavedPool:
        settings = json.loads((candidates_dir / SETTINGS_FILE).read_text())
        cfg = EnsembleConfig(**settings["ensemble"])
        pool = read_jsonl(candidates_dir / POOL_FILE)
        encoder = PairEncoder(cfg)
        keys = json.loads((candidates_dir / KEYS_FILE).read_text())
        encoder.load([tuple(k) for k in keys], np.load(candidates_dir / FEATURES_FILE))
        encoder.fit_projection()
        first, second = encoder.pairs([(p["prompt"], p["response_a"], p["response_b"]) for p in pool])
        return cls(settings, cfg, pool, encoder, first, second)


class QueueReranker:
    """Retrains the ensemble on the labels so far and re-ranks the round's untouched items (see the
    module doc); built from the candidates stage's folder."""

    def __init__(self, store: Any, project: str, candidates_dir: Path, seed: int) -> None:
        self.store, self.project, self.seed = store, project, seed
        saved = SavedPool.load(candidates_dir)
        self.settings, self.cfg, self.pool, self.encoder = saved.settings, saved.cfg, saved.pool, saved.encoder
        self.saved = saved
        self.steps: list[dict] = []

    def label_count(self) -> int:
        with self.store.read() as c:
            return c.execute("""SELECT COUNT(*) FROM labels l JOIN items i ON i.id = l.item_id
                                JOIN projects p ON p.id = i.project_id
                                WHERE p.name = ? AND l.withdrawn_at IS NULL""", (self.project,)).fetchone()[0]

    def _replaceable(self, item: dict) -> bool:
        meta = item.get("meta") or {}
        return meta.get("queued_by") == self.settings["queued_by"] and meta.get("acquisition") in (UNCERTAIN, RANDOM)

    def step(self, labels: int) -> dict | None:
        """One re-ranking; its record, or None when there are too few labelled pairs to train on."""
        from labeling_ui.rerank import item_pair_key, requeue_untouched

        rows = labelled_rows(self.store, self.project)
        if len(rows) < self.cfg.min_pairs:
            return None
        started = time.monotonic()
        ensemble = fit_ensemble(self.encoder, rows, self.cfg, self.seed + labels)
        scores = ensemble.disagreement(self.saved.first, self.saved.second)
        queued_by, cap = self.settings["queued_by"], self.settings["max_pairs_per_prompt"]

        def choose(kept: list[dict], n: int) -> list[dict]:
            held = {item_pair_key(it) for it in kept}
            free = [i for i, p in enumerate(self.pool) if item_pair_key(p) not in held]
            taken = Counter((it["meta"] or {}).get("prompt_id") for it in kept
                            if (it["meta"] or {}).get("queued_by") == queued_by)
            chosen = select_pairs([self.pool[i]["meta"]["prompt_id"] for i in free], n, 0.0, cap, self.seed + labels,
                                  scores=scores[free], taken=taken).scored
            return [tagged({k: v for k, v in self.pool[free[j]].items() if k != "uncertainty"}, UNCERTAIN,
                           float(scores[free[j]]), queued_by) for j in chosen]

        done = requeue_untouched(self.store, self.project, self._replaceable, choose)
        moved = set(done.removed) - set(done.added)
        record = {"labels": labels, "pairs": len(rows), "replaceable": done.candidates, "replaced": len(moved),
                  "pool_uncertainty_mean": float(scores.mean()), "seconds": round(time.monotonic() - started, 2)}
        self.steps.append(record)
        return record


@contextmanager
def rerank_while_labelling(store: Any, project: str, candidates_dir: Path, every: int, seed: int,
                           poll_seconds: float = 0.5) -> Iterator[list[dict]]:
    """Re-rank the queue every ``every`` new labels in a background thread while the body runs; yields
    the list the re-rankings' records are appended to. Does nothing when ``every`` is 0 or the
    candidates stage did not choose by uncertainty."""
    settings = candidates_dir / SETTINGS_FILE
    if every <= 0 or not settings.is_file() or json.loads(settings.read_text()).get("rule") != UNCERTAIN:
        if every > 0:
            log.warning("labels.rerank_every=%d: %s holds no uncertainty pool (candidates.acquisition="
                        "uncertainty writes it): nothing to re-rank", every, candidates_dir)
        yield []
        return
    reranker = QueueReranker(store, project, candidates_dir, seed)
    stop = threading.Event()

    def loop() -> None:
        last = reranker.label_count()
        while not stop.wait(poll_seconds):
            count = reranker.label_count()
            if count - last >= every:
                last = count
                try:
                    reranker.step(count)
                except Exception:  # a failed re-ranking leaves the queue as it was; labelling goes on
                    log.exception("re-ranking the queue failed")

    thread = threading.Thread(target=loop, name="queue-rerank", daemon=True)
    thread.start()
    try:
        yield reranker.steps
    finally:
        stop.set()
        thread.join()
