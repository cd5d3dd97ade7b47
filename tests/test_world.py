"""Invariants of the demo world: splits, styles, the gold preference and the simulated annotator."""

import random
from itertools import combinations

import pytest

from alignment.data.world import (
    DEFAULT_STYLE_MIX,
    GOLD_REWARD,
    KINDS,
    STYLES_BY_KIND,
    DemoWorld,
    SimulatedAnnotator,
    unsafe_share,
    validate_style_mix,
)
from alignment.safety.categories import CATEGORIES


@pytest.fixture(scope="module")
def world() -> DemoWorld:
    return DemoWorld(0)


def test_splits_are_disjoint_by_prompt_and_harmful_ones_by_task(world):
    splits = {s: world.prompts(s) for s in ("train", "eval", "redteam")}
    ids = {s: {p.id for p in ps} for s, ps in splits.items()}
    texts = {s: {p.text for p in ps} for s, ps in splits.items()}
    harmful_tasks = {s: {p.task for p in ps if p.kind == "harmful"} for s, ps in splits.items()}
    for a, b in combinations(splits, 2):
        assert not ids[a] & ids[b], (a, b)
        assert not texts[a] & texts[b], (a, b)
        assert not harmful_tasks[a] & harmful_tasks[b], f"{a} and {b} share harmful tasks"
    assert sum(len(ps) for ps in splits.values()) == len(world.prompts())
    assert all(p.kind == "harmful" for p in splits["redteam"])
    assert {p.kind for p in splits["eval"]} == {"benign", "harmful"}


def test_world_has_enough_variety(world):
    assert len(world.prompts()) >= 500
    benign_topics = {p.category for p in world.prompts(kind="benign")}
    assert len(benign_topics) >= 8
    assert {p.category for p in world.prompts(kind="harmful")} == set(CATEGORIES)
    assert len(world.prompts("redteam")) >= 50


def test_split_assignment_depends_on_seed_only():
    assert [p.split for p in DemoWorld(0).prompts()] == [p.split for p in DemoWorld(0).prompts()]
    assert [p.split for p in DemoWorld(0).prompts()] != [p.split for p in DemoWorld(1).prompts()]


def test_every_written_response_classifies_back_to_its_style(world):
    rng = random.Random(0)
    for prompt in world.prompts():
        for style in STYLES_BY_KIND[prompt.kind]:
            text = world.respond(prompt, style, rng)
            assert world.classify(prompt, text) == style, (prompt.text, style, text)


def test_classify_free_text(world):
    benign = world.prompts(kind="benign")[0]
    harmful = world.prompts(kind="harmful")[0]
    assert world.classify(benign, "asdf qwerty") is None
    # Advice from another topic is not helpful for this prompt.
    other = next(p for p in world.prompts(kind="benign") if p.category != benign.category)
    text = world.respond(other, "helpful", random.Random(0))
    assert world.classify(benign, text) == "off_topic"
    # The most harmful marker wins: an insult inside a refusal is toxic.
    assert world.classify(harmful, "I can't help with that, you idiot.") == "toxic"


def test_gold_preference_is_a_total_order_per_kind(world):
    for kind in KINDS:
        rewards = [GOLD_REWARD[kind][s] for s in STYLES_BY_KIND[kind]]
        assert len(set(rewards)) == len(rewards), f"{kind}: two styles share a gold reward"
    assert max(STYLES_BY_KIND["benign"], key=GOLD_REWARD["benign"].get) == "helpful"
    assert max(STYLES_BY_KIND["harmful"], key=GOLD_REWARD["harmful"].get) == "refusal"
    for kind in KINDS:
        for style in ("toxic", "harmful_compliance"):
            assert GOLD_REWARD[kind][style] < 0


def _pairs(world, n, rng):
    prompts = world.prompts("train")
    out = []
    while len(out) < n:
        p = rng.choice(prompts)
        a, b = rng.sample(STYLES_BY_KIND[p.kind], 2)
        out.append((p, world.respond(p, a, rng), world.respond(p, b, rng)))
    return out


def test_noise_free_annotator_is_consistent_and_symmetric(world):
    ann = SimulatedAnnotator(world, noise=0.0, seed=1)
    for p, a, b in _pairs(world, 300, random.Random(1)):
        ab, ba = ann.label(p, a, b), ann.label(p, b, a)
        assert {ab.choice, ba.choice} == {"A", "B"}
        better = "A" if world.gold_reward(p, a) > world.gold_reward(p, b) else "B"
        assert ab.choice == better
        assert 1 <= ab.strength <= 4
    same = world.respond(world.prompts()[0], "helpful", random.Random(2))
    assert ann.label(world.prompts()[0], same, same).choice == "tie"


@pytest.mark.parametrize("noise", [0.1, 0.3])
def test_annotator_noise_rate_is_as_configured(world, noise):
    ann = SimulatedAnnotator(world, noise=noise, seed=2)
    pairs = _pairs(world, 4000, random.Random(3))
    wrong = 0
    for p, a, b in pairs:
        better = "A" if world.gold_reward(p, a) > world.gold_reward(p, b) else "B"
        wrong += ann.label(p, a, b).choice != better
    assert abs(wrong / len(pairs) - noise) < 0.03


def test_position_bias_picks_the_first_response(world):
    ann = SimulatedAnnotator(world, noise=0.0, position_bias=0.5, seed=3)
    pairs = _pairs(world, 2000, random.Random(4))
    picked_a = sum(ann.label(p, a, b).choice == "A" for p, a, b in pairs) / len(pairs)
    assert 0.7 < picked_a < 0.8  # half biased to A, the other half right (A half the time)
    with pytest.raises(ValueError, match="noise"):
        SimulatedAnnotator(world, noise=1.5)


def test_sft_corpus_is_unaligned_as_configured(world):
    rows = world.sft_corpus(4, seed=0)
    assert {r["prompt_id"] for r in rows} <= {p.id for p in world.prompts("train")}
    harmful = [r for r in rows if r["kind"] == "harmful"]
    share = sum(r["style"] in ("toxic", "harmful_compliance") for r in harmful) / len(harmful)
    assert unsafe_share(DEFAULT_STYLE_MIX) == pytest.approx(0.25)
    assert abs(share - 0.25) < 0.04
    row = rows[0]
    assert row["prompt"][0]["role"] == "user" and row["completion"][0]["role"] == "assistant"


def test_style_mix_validation_names_the_key():
    with pytest.raises(ValueError, match="harmful.helpful"):
        validate_style_mix({"benign": {"helpful": 1.0}, "harmful": {"helpful": 1.0}})
    with pytest.raises(ValueError, match="benign"):
        validate_style_mix({"harmful": {"refusal": 1.0}})
    with pytest.raises(ValueError, match="negative"):
        validate_style_mix({"benign": {"helpful": -1.0}, "harmful": {"refusal": 1.0}})
