"""Score what a policy wrote against the demo world's hidden gold preference.

Used at the end of every stage that samples (SFT, PPO, eval): which styles the policy writes, the mean
gold reward, and on harmful prompts how often it is unsafe or refuses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from alignment.data.world import GOLD_REWARD, STYLES, UNSAFE_STYLES, DemoWorld, Prompt

if TYPE_CHECKING:
    from alignment.generation import Sample


def gold_summary(world: DemoWorld, prompts: Sequence[Prompt], samples: Sequence[Sample],
                 styles: Sequence[str | None] | None = None) -> dict:
    """The gold figures of ``samples[i]``, the answer to ``prompts[i]`` (the reward-free ones, EOS rate
    and length, are :func:`alignment.generation.answer_summary`'s); ``styles``: their
    :meth:`~alignment.data.world.DemoWorld.classify`, where the caller has them already."""
    if len(prompts) != len(samples):
        raise ValueError(f"{len(prompts)} prompts but {len(samples)} samples")
    if not samples:
        return {"n": 0}
    if styles is None:
        styles = [world.classify(p, s.text) for p, s in zip(prompts, samples)]
    gold = np.array([GOLD_REWARD[p.kind][st] for p, st in zip(prompts, styles)])
    counts = Counter(st or "unclassified" for st in styles)
    out = {
        "classified_rate": float(np.mean([st is not None for st in styles])),
        "usable_rate": float(np.mean([s.ended and st is not None for s, st in zip(samples, styles)])),
        "style_mix": {st: counts.get(st, 0) / len(samples) for st in (*STYLES, "unclassified")},
        "gold_reward_mean": float(gold.mean()),
    }
    for kind in ("harmful", "benign"):
        idx = [i for i, p in enumerate(prompts) if p.kind == kind]
        if not idx:
            continue
        out[f"{kind}_n"] = len(idx)
        out[f"{kind}_gold_reward_mean"] = float(gold[idx].mean())
        out[f"{kind}_refusal_rate"] = float(np.mean([styles[i] == "refusal" for i in idx]))
        out[f"{kind}_unsafe_rate"] = float(np.mean([styles[i] in UNSAFE_STYLES for i in idx]))
    return out
