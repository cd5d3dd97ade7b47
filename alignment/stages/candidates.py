"""``align-candidates``: sample answers from a policy, score them for safety, pair them, queue them.

For each of ``candidates.n_prompts`` training prompts (the ``prompts`` group's ``train`` set: the demo
world, ``hh`` or your own file) the policy writes ``responses_per_prompt``
answers; the safety filter scores every answer; answers are paired and the pairs go into the labeling
database (``label.db``, project ``label.project``) with their safety scores, so annotators see which
responses the filter flagged and the admin view can compare filter and annotators.

Which pairs (``candidates.acquisition``):

* ``random`` (default): ``pairs_per_prompt`` pairs per prompt, picked by ``pairing`` (``random``, or
  ``most_different``: the pair whose any-unsafe scores differ most); with ``budget`` set, that many of
  them drawn at random, at most ``max_pairs_per_prompt`` per prompt;
* ``uncertainty``: every distinct pair of a prompt's answers is a candidate (the pool), and the
  ``budget`` queued are those the reward model is least sure about, with a random share and prompt
  diversity (:mod:`alignment.acquisition`); without labels yet, at random, with a log line.

Writes ``<run.dir>/candidates/``: ``samples.jsonl`` (every answer with its scores), ``metrics.json``
(unsafe rate of what the policy wrote, pairs queued, pairs with a flagged side, the acquisition's
record: rule, model, the queued pairs' uncertainty against the pool's), ``.hydra/``, and for
``uncertainty`` the pool and its features for re-ranking during labelling (``labels.rerank_every``).
Re-running adds nothing twice (items are identified by content).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from alignment.acquisition import (
    EXPLORE,
    RANDOM,
    UNCERTAIN,
    labelled_rows,
    save_pool,
    select_pairs,
    tagged,
    uncertainty_summary,
)
from alignment.config import Acquisition, CandidatesStageConfig, Config
from alignment.data.prompt_sets import stage_prompt_sets
from alignment.generation import sample_responses
from alignment.io import write_json_atomic, write_jsonl_atomic
from alignment.modeling import load_policy
from alignment.reward.ensemble import PairEncoder, fit_ensemble
from alignment.safety import build_filter
from alignment.safety.categories import CATEGORIES
from alignment.safety.eval import judge
from alignment.safety.filter import ANY_INDEX
from alignment.stages.common import save_resolved_config, seed_everything, stage_dir, stage_main
from labeling_ui.rerank import item_pair_key, pair_key
from labeling_ui.store import LabelStore

log = logging.getLogger(__name__)
STAGE = "candidates"


def pick_pairs(n_answers: int, any_scores: np.ndarray, pairing: str, k: int, rng: random.Random) -> list[tuple[int, int]]:
    """``k`` distinct index pairs among one prompt's answers."""
    pairs = list(combinations(range(n_answers), 2))
    if pairing == "random":
        rng.shuffle(pairs)
    else:
        pairs.sort(key=lambda ab: -abs(any_scores[ab[0]] - any_scores[ab[1]]))
    return pairs[:k]


def distinct_pairs(prompt: str, texts: list[str], any_scores: np.ndarray, pairing: str, k: int,
                   rng: random.Random, seen: set[tuple[str, frozenset[str]]]) -> list[tuple[int, int]]:
    """The pairs :func:`pick_pairs` picks among one prompt's answers ``texts`` that are worth an item.

    Two identical answers (up to surrounding whitespace) make no comparison, and the same two answers
    for the same prompt, in either order, make one item only: ``seen`` (updated here) holds the
    ``(prompt, {answer, answer})`` keys already paired. A pair left out is not replaced, so a prompt
    whose answers repeat may get fewer than ``k`` pairs.
    """
    out = []
    for a, b in pick_pairs(len(texts), any_scores, pairing, k, rng):
        key = pair_key(prompt, texts[a], texts[b])
        if len(key[1]) < 2 or key in seen:
            continue
        seen.add(key)
        out.append((a, b))
    return out


def make_item(prompt: Any, ja: int, jb: int, texts: list[str], scores: np.ndarray, judged: list, source: str) -> dict:
    """The labeling item of answers ``ja`` and ``jb`` to ``prompt``, with their safety scores."""
    return {
        "prompt": prompt.text, "response_a": texts[ja], "response_b": texts[jb], "source_a": source, "source_b": source,
        "safety_a": {cat: float(scores[ja, k]) for k, cat in enumerate(CATEGORIES)},
        "safety_b": {cat: float(scores[jb, k]) for k, cat in enumerate(CATEGORIES)},
        "meta": {"prompt_id": prompt.id, "flagged_a": judged[ja].unsafe, "flagged_b": judged[jb].unsafe},
    }


def form_pairs(c: CandidatesStageConfig, prompts: list, texts: list[str], scores: np.ndarray, judged: list,
               rng: random.Random, held: set[tuple[str, frozenset[str]]] | None = None) -> list[dict]:
    """Each prompt's ``pairs_per_prompt`` pairs by ``pairing`` (``held is None``), or with
    ``held`` (pairs queued earlier, keyed as :func:`distinct_pairs` keys them) every distinct pair not
    among them: the acquisition's pool."""
    n = c.responses_per_prompt
    k = c.pairs_per_prompt if held is None else n * (n - 1) // 2
    pairing = c.pairing if held is None else "random"
    seen = set() if held is None else set(held)
    items = []
    for i, prompt in enumerate(prompts):
        answers = list(range(i * n, (i + 1) * n))
        for a, b in distinct_pairs(prompt.text, [texts[j] for j in answers], scores[answers, ANY_INDEX], pairing, k,
                                   rng, seen):
            items.append(make_item(prompt, answers[a], answers[b], texts, scores, judged, c.policy_path))
    return items


def earlier_pairs(store: LabelStore, project: str, queued_by: str) -> set[tuple[str, frozenset[str]]]:
    """The pairs the project holds that another run of the stage queued (keys of :func:`distinct_pairs`)."""
    if store.get_project(project) is None:
        return set()
    return {item_pair_key(it) for it in store.items(project) if (it["meta"] or {}).get("queued_by") != queued_by}


def acquire(cfg: Config, store: LabelStore, pool: list[dict], out: Path) -> tuple[list[dict], dict]:
    """The ``budget`` pool pairs to queue, tagged, and the acquisition's record (see :mod:`alignment.acquisition`)."""
    c = cfg.candidates
    queued_by = str(out)
    rows = labelled_rows(store, cfg.label.project)
    scores, model = None, None
    encoder = PairEncoder(c.ensemble)
    encoder.add([(p["prompt"], p[side]) for p in pool for side in ("response_a", "response_b")]
                + [(r["prompt"], r[side]) for r in rows for side in ("chosen", "rejected")])
    if len(rows) < c.ensemble.min_pairs:
        log.info("candidates.acquisition=uncertainty: no reward model yet (%d labelled pair(s) in project %r, "
                 "%d needed): this round's pairs are chosen at random", len(rows), cfg.label.project,
                 c.ensemble.min_pairs)
    else:
        encoder.fit_projection()       # on what save_pool keeps: the re-ranking projects alike
        ensemble = fit_ensemble(encoder, rows, c.ensemble, cfg.seed)
        scores = ensemble.disagreement(*encoder.pairs([(p["prompt"], p["response_a"], p["response_b"]) for p in pool]))
        model = {"pairs": len(rows), "members": c.ensemble.members, "hidden": c.ensemble.hidden,
                 "encoder": c.ensemble.encoder}
        log.info("ensemble of %d heads trained on %d labelled pairs; pool uncertainty mean %.4f, max %.4f",
                 c.ensemble.members, len(rows), scores.mean(), scores.max())
    selection = select_pairs([p["meta"]["prompt_id"] for p in pool], c.queue_size, c.random_share,
                             c.max_pairs_per_prompt, cfg.seed, scores=scores)
    # without a model every pair is random; the random share among them is still tagged as such
    explore = set(selection.random if scores is not None else selection.random[:round(c.queue_size * c.random_share)])
    rest_tag = UNCERTAIN if scores is not None else RANDOM
    items = [tagged(pool[i], EXPLORE if i in explore else rest_tag, None if scores is None else float(scores[i]),
                    queued_by) for i in selection.indices]
    settings = {"rule": str(c.acquisition), "queued_by": queued_by, "project": cfg.label.project,
                "budget": c.queue_size, "random_share": c.random_share, "max_pairs_per_prompt": c.max_pairs_per_prompt,
                "ensemble": dataclasses.asdict(c.ensemble)}
    save_pool(out, pool, scores, encoder, settings)
    per_prompt = Counter(it["meta"]["prompt_id"] for it in items)
    record = settings | {"model": model, "pool_pairs": len(pool), "queued": len(items),
                         "queued_random": len(selection.random) if scores is not None else len(items),
                         "prompts_in_queue": len(per_prompt),
                         "largest_prompt_share": max(per_prompt.values()) / len(items) if items else None,
                         "uncertainty": uncertainty_summary(scores, selection) if scores is not None else None}
    return items, record


def run(cfg: Config, raw: DictConfig) -> int:
    c = cfg.candidates
    out = stage_dir(cfg, STAGE)
    seed_everything(cfg.seed)
    model, tokenizer = load_policy(cfg.policy, path=c.policy_path)
    prompt_sets = stage_prompt_sets(cfg, tokenizer, model, "candidates", ("train",))
    world = prompt_sets.gold
    safety_filter = build_filter(cfg.safety)
    store = LabelStore(cfg.label.db, synchronous=cfg.label.synchronous)
    save_resolved_config(raw, out)

    prompts = prompt_sets["train"]
    random.Random(f"candidates/{cfg.seed}").shuffle(prompts)
    prompts = prompts[:c.n_prompts]
    repeated = [p for p in prompts for _ in range(c.responses_per_prompt)]
    samples = sample_responses(model, tokenizer, [p.messages for p in repeated], c.generation, seed=cfg.seed,
                               desc="sampling candidates")
    texts = [s.text if s.text else "(empty answer)" for s in samples]
    scores, judged = judge(safety_filter, texts, [p.text for p in repeated])
    rows = [{"prompt_id": p.id, "prompt": p.text, "response": texts[j], "ended": samples[j].ended,
             "unsafe": judged[j].unsafe, "any_score": float(scores[j, ANY_INDEX]), "categories": list(judged[j].categories),
             **({"style": world.classify(p, texts[j])} if world else {})} for j, p in enumerate(repeated)]

    rng = random.Random(f"pairs/{cfg.seed}")
    acquisition = None
    if c.acquisition == Acquisition.uncertainty:
        pool = form_pairs(c, prompts, texts, scores, judged, rng, earlier_pairs(store, cfg.label.project, str(out)))
        items, acquisition = acquire(cfg, store, pool, out)
    else:
        items = form_pairs(c, prompts, texts, scores, judged, rng)
        if c.budget is not None:
            items = [items[i] for i in select_pairs([it["meta"]["prompt_id"] for it in items], c.budget, 1.0,
                                                    c.max_pairs_per_prompt, cfg.seed).indices]
    added = store.add_items(cfg.label.project, items, overlap=cfg.label.overlap, source=STAGE, skip_existing=True)
    write_jsonl_atomic(out / "samples.jsonl", rows)
    harmful = np.array([p.kind == "harmful" for p in repeated])
    unsafe = np.array([v.unsafe for v in judged])
    metrics = {
        "stage": STAGE, "policy": c.policy_path, "prompts": len(prompts), "answers": len(texts),
        "prompt_set": prompt_sets.summary()["sets"]["train"] | {"source": str(prompt_sets.source)},
        "prompt_sources": [p.source for p in prompts],
        "pairs": len(items), "pairs_added": len(added), "db": cfg.label.db, "project": cfg.label.project,
        "unsafe_rate_harmful": float(unsafe[harmful].mean()) if harmful.any() else None,
        "unsafe_rate_benign": float(unsafe[~harmful].mean()) if (~harmful).any() else None,
        "pairs_with_flagged_side": sum(it["meta"]["flagged_a"] or it["meta"]["flagged_b"] for it in items),
        "eos_rate": float(np.mean([s.ended for s in samples])),
        "acquisition": acquisition or {"rule": str(c.acquisition), "pairing": str(c.pairing)},
    }
    write_json_atomic(out / "metrics.json", metrics)
    log.info("queued %d new pairs (%d formed) in %s project %r; policy unsafe rate on harmful prompts %.2f",
             len(added), len(items), cfg.label.db, cfg.label.project, metrics["unsafe_rate_harmful"] or 0.0)
    return 0


main = stage_main(STAGE, run)

if __name__ == "__main__":
    main()
