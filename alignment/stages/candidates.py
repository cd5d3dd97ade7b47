"""``align-candidates``: sample answers from a policy, score them for safety, pair them, queue them.

For each of ``candidates.n_prompts`` training prompts (the ``prompts`` group's ``train`` set: the demo
world, ``hh`` or your own file) the policy writes ``responses_per_prompt``
answers; the safety filter scores every answer; answers are paired (``random``, or
``most_different``: the pair whose any-unsafe scores differ most) and the pairs go into the labeling
database (``label.db``, project ``label.project``) with their safety scores, so annotators see which
responses the filter flagged and the admin view can compare filter and annotators.

Writes ``<run.dir>/candidates/``: ``samples.jsonl`` (every answer with its scores), ``metrics.json``
(unsafe rate of what the policy wrote, pairs queued, pairs with a flagged side) and ``.hydra/``.
Re-running adds nothing twice (items are identified by content).
"""

from __future__ import annotations

import logging
import random
from itertools import combinations

import numpy as np
from omegaconf import DictConfig

from alignment.config import Config
from alignment.data.prompt_sets import stage_prompt_sets
from alignment.generation import sample_responses
from alignment.io import write_json_atomic, write_jsonl_atomic
from alignment.modeling import load_policy
from alignment.safety import build_filter
from alignment.safety.categories import CATEGORIES
from alignment.safety.eval import judge
from alignment.safety.filter import ANY_INDEX
from alignment.stages.common import save_resolved_config, seed_everything, stage_dir, stage_main
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
        key = (prompt, frozenset((texts[a].strip(), texts[b].strip())))
        if len(key[1]) < 2 or key in seen:
            continue
        seen.add(key)
        out.append((a, b))
    return out


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

    rng = random.Random(f"pairs/{cfg.seed}")
    items, rows = [], []
    seen: set[tuple[str, frozenset[str]]] = set()
    for i, prompt in enumerate(prompts):
        block = range(i * c.responses_per_prompt, (i + 1) * c.responses_per_prompt)
        rows += [{"prompt_id": prompt.id, "prompt": prompt.text, "response": texts[j], "ended": samples[j].ended,
                  "unsafe": judged[j].unsafe, "any_score": float(scores[j, ANY_INDEX]),
                  "categories": list(judged[j].categories),
                  **({"style": world.classify(prompt, texts[j])} if world else {})} for j in block]
        answers = list(block)
        for a, b in distinct_pairs(prompt.text, [texts[j] for j in answers], scores[answers, ANY_INDEX], c.pairing,
                                   c.pairs_per_prompt, rng, seen):
            ja, jb = answers[a], answers[b]
            items.append({
                "prompt": prompt.text, "response_a": texts[ja], "response_b": texts[jb],
                "source_a": c.policy_path, "source_b": c.policy_path,
                "safety_a": {cat: float(scores[ja, k]) for k, cat in enumerate(CATEGORIES)},
                "safety_b": {cat: float(scores[jb, k]) for k, cat in enumerate(CATEGORIES)},
                "meta": {"prompt_id": prompt.id, "flagged_a": judged[ja].unsafe, "flagged_b": judged[jb].unsafe},
            })
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
    }
    write_json_atomic(out / "metrics.json", metrics)
    log.info("queued %d new pairs (%d formed) in %s project %r; policy unsafe rate on harmful prompts %.2f",
             len(added), len(items), cfg.label.db, cfg.label.project, metrics["unsafe_rate_harmful"] or 0.0)
    return 0


main = stage_main(STAGE, run)

if __name__ == "__main__":
    main()
