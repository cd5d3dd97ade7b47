"""Demo-world pairs to label (tests, benchmarks, a first look at the app without a policy)."""

from __future__ import annotations

import random
from typing import Any

from alignment.data.world import STYLES_BY_KIND, DemoWorld


def demo_items(world: DemoWorld, n: int, *, seed: int = 0, split: str = "train", gold_every: int = 0,
               prefix: str = "demo") -> list[dict[str, Any]]:
    """``n`` pairs of two different styles for demo prompts (``id`` ``<prefix>-<i>``).

    With ``gold_every=k``, every k-th pair is a gold item whose answer is the gold preference (ties for
    equal gold rewards never happen: the two styles always differ in gold reward here).
    """
    rng = random.Random(f"demo-items/{seed}")
    prompts = world.prompts(split)
    items = []
    for i in range(n):
        prompt = prompts[i % len(prompts)]
        while True:
            style_a, style_b = rng.sample(STYLES_BY_KIND[prompt.kind], 2)
            a, b = world.respond(prompt, style_a, rng), world.respond(prompt, style_b, rng)
            ga, gb = world.gold_reward(prompt, a), world.gold_reward(prompt, b)
            if ga != gb and a != b:
                break
        item: dict[str, Any] = {"id": f"{prefix}-{i}", "prompt": prompt.text, "response_a": a, "response_b": b,
                                "sources": [f"demo:{style_a}", f"demo:{style_b}"],
                                "meta": {"prompt_id": prompt.id, "styles": [style_a, style_b]}}
        if gold_every and i % gold_every == gold_every - 1:
            item["gold"] = "A" if ga > gb else "B"
        items.append(item)
    return items
