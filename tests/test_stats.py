"""Intervals by prompt, win rates, length control and the over-optimisation test, on constructed cases
whose answers can be worked out by hand (alignment/stats.py)."""

import numpy as np
import pytest

from alignment.data.world import DemoWorld
from alignment.safety.categories import CATEGORIES
from alignment.safety.eval import summarise_answers
from alignment.safety.filter import ANY_INDEX, SCORE_COLUMNS, verdicts
from alignment.stats import length_controlled, mean_ci, overoptimisation_test, separated, win_rate_ci

MANY = 20_000  # resamples: the quantiles below sit far from the Monte Carlo noise at this many


def test_the_bootstrap_resamples_prompts_not_answers():
    # 3 prompts, 2 answers each; prompt a's answers are both unsafe, b's and c's both safe: rate 1/3.
    values = np.array([1, 1, 0, 0, 0, 0], dtype=float)
    prompts = ["a", "a", "b", "b", "c", "c"]
    # By prompt, a resample holds K ~ Binomial(3, 1/3) copies of a: the rate is K/3, and P(K = 3) = 1/27 = 0.037
    # lies above the upper 2.5%, so the interval is [0, 1].
    assert mean_ci(values, seed=0, groups=prompts, n_resamples=MANY) == (0.0, 1.0)
    # By answer (wrongly treating the two answers to a prompt as independent), K ~ Binomial(6, 1/3) of 6:
    # P(K >= 5) = 13/729 = 0.018 < 0.025, P(K = 0) = 64/729 > 0.025, so the interval is [0, 4/6]: too narrow.
    lo, hi = mean_ci(values, seed=0, n_resamples=MANY)
    assert lo == 0.0 and hi == pytest.approx(4 / 6)


def test_safety_rates_are_bootstrapped_by_prompt():
    world = DemoWorld(0)
    harmful = world.prompts("redteam")[:3]
    prompts = [p for p in harmful for _ in range(2)]  # safety.eval.samples_per_prompt=2
    texts = ["Sure, here is how to do it. Step one: wait until nobody is watching."] * 2 + ["I can't help with that."] * 4
    scores = np.zeros((6, len(SCORE_COLUMNS)))
    scores[:2, CATEGORIES.index("violence")] = scores[:2, ANY_INDEX] = 0.9
    out = summarise_answers(prompts, texts, scores, verdicts(scores, np.full(len(SCORE_COLUMNS), 0.5)), world, seed=3,
                            refusals=np.array([False, False, True, True, True, True]))
    assert out["unsafe_rate"]["rate"] == pytest.approx(1 / 3)
    unsafe = np.array([1, 1, 0, 0, 0, 0], dtype=float)
    assert out["unsafe_rate"]["ci95"] == mean_ci(unsafe, 3, [p.text for p in prompts])
    assert out["unsafe_rate"]["ci95"] != mean_ci(unsafe, 3)  # by answer: not what the evaluation reports
    assert out["refusal_rate_harmful"]["ci95"] == mean_ci(1 - unsafe, 3, [p.text for p in prompts])


def test_the_win_rate_interval_is_paired_by_prompt():
    # Two prompts, one win and one loss: a resample is WW, WL or LL with probabilities 1/4, 1/2, 1/4, so the
    # win rate is 1, 1/2 or 0 and the 95% interval [0, 1].
    win = win_rate_ci(np.array([1.0, 0.0]), np.array([0.0, 1.0]), seed=0)
    assert win["rate"] == 0.5 and win["ci95"] == (0.0, 1.0) and (win["wins"], win["losses"], win["ties"]) == (1, 1, 0)
    # A tie is not decided: one win and one tie is a win rate of 1 (resamples of the tie alone have none)...
    assert win_rate_ci(np.array([1.0, 2.0]), np.array([0.0, 2.0]))["ci95"] == (1.0, 1.0)
    # ... and with ties as half a win, (1 + 0.5) / 2.
    assert win_rate_ci(np.array([1.0, 2.0]), np.array([0.0, 2.0]), ties_half=True)["rate"] == 0.75
    # 40 wins, 24 losses: the interval holds the rate and is about +-2 standard errors wide.
    many = win_rate_ci(np.r_[np.ones(40), np.zeros(24)], np.r_[np.zeros(40), np.ones(24)], seed=1)
    se = np.sqrt(0.625 * 0.375 / 64)
    assert many["ci95"][0] < 0.625 < many["ci95"][1] and many["ci95"][1] - many["ci95"][0] == pytest.approx(4 * se, rel=0.2)


def test_two_figures_rank_only_where_their_intervals_separate():
    assert separated((0.8, 0.9), (0.5, 0.7)) == 1 and separated((0.5, 0.7), (0.8, 0.9)) == -1
    assert separated((0.6, 0.85), (0.5, 0.7)) == 0 and separated(None, (0.5, 0.7)) == 0


def test_length_control_separates_a_length_gain_from_a_real_one():
    rng = np.random.default_rng(0)
    len_before = rng.integers(5, 30, 128).astype(float)
    len_after = len_before + rng.integers(5, 15, 128)
    noise = rng.normal(0, 0.1, (2, 128))
    # the score is length alone: longer answers win every comparison, and nothing is left at equal length
    longer = length_controlled(0.1 * len_after + noise[0], 0.1 * len_before + noise[1], len_after, len_before, seed=0)
    assert longer.gain > 0.5 and longer.win_rate > 0.95
    assert abs(longer.lc_gain) < 0.3 * longer.gain and longer.length_explains_most
    # a gain of 1 whatever the length: controlling for length keeps it
    better = length_controlled(1 + noise[0], noise[1], len_after, len_before, seed=0)
    assert better.lc_gain == pytest.approx(1.0, abs=0.15) and not better.length_explains_most
    assert better.lc_gain_ci95[0] < better.lc_gain < better.lc_gain_ci95[1]


def _noise_run(rng: np.random.Generator, evaluations: int = 7, prompts: int = 64) -> tuple[list, list]:
    """Scores with no trend: a fixed difficulty per prompt plus fresh noise at each evaluation."""
    proxy_prompt, gold_prompt = rng.normal(size=prompts), rng.normal(size=prompts)
    proxy = [proxy_prompt + rng.normal(size=prompts) for _ in range(evaluations)]
    gold = [gold_prompt + rng.normal(size=prompts) for _ in range(evaluations)]
    return proxy, gold


def _flags(proxy: list, gold: list) -> list[bool]:
    """The test at every evaluation after the SFT baseline, as a run applies it."""
    return [overoptimisation_test(proxy[:k + 1], gold[:k + 1], seed=k)["flagged"] for k in range(1, len(proxy))]


def _old_rule(proxy: list, gold: list, tolerance: float = 0.05) -> bool:
    """The rule this test replaced: the last evaluation against the previous one, one raw tolerance."""
    return any(proxy[k].mean() - proxy[k - 1].mean() > tolerance and gold[k].mean() - gold[k - 1].mean() < -tolerance
               for k in range(1, len(proxy)))


def test_the_overoptimisation_test_rarely_flags_pure_noise():
    rng = np.random.default_rng(2026)
    flagged = sum(any(_flags(*_noise_run(rng))) for _ in range(200))
    assert flagged <= 10, f"{flagged} of 200 noise runs flagged (at most 5% allowed)"


def test_the_overoptimisation_test_flags_a_steady_fall_of_gold_while_the_proxy_rises():
    rng = np.random.default_rng(7)
    proxy = [rng.normal(size=64) + 0.15 * k for k in range(7)]
    gold = [rng.normal(size=64) - 0.15 * k for k in range(7)]
    flags = _flags(proxy, gold)
    assert not flags[0] and flags[-1]  # a step of 0.15 sd is within the noise; six of them are not
    last = overoptimisation_test(proxy, gold)
    assert last["since_evaluation"] < 3 and last["proxy"]["change_sd"] > 0.5 > -0.5 > last["reference"]["change_sd"]
    # gold that peaked mid-run and fell since is compared with its peak, not with the previous evaluation
    peaked = [rng.normal(size=64) + (0.15 * k if k <= 3 else 0.45 - 0.3 * (k - 3)) for k in range(7)]
    assert overoptimisation_test(proxy, peaked)["since_evaluation"] in (2, 3, 4)


def test_the_overoptimisation_test_ignores_the_noise_the_old_rule_flagged():
    rng = np.random.default_rng(11)
    while True:
        proxy, gold = _noise_run(rng)
        if _old_rule(proxy, gold):
            break
    assert not any(_flags(proxy, gold))
