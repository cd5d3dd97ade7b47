"""Intervals by prompt: the statistics behind every rate, win rate and score change the project reports.

The unit of every resample is the **prompt**. Answers to one prompt are not independent (the safety
evaluation draws ``safety.samples_per_prompt`` of them; a win compares two answers to the same prompt),
so resampling answers makes intervals too narrow. Each figure is a ratio of per-prompt sums (unsafe
answers over answers, wins over decided comparisons), and a percentile bootstrap resamples the prompts
with replacement and recomputes the ratio (Efron & Tibshirani, 1993, ch. 13; the cluster bootstrap).
A resample whose denominator is zero (no decided comparison) is left out of the quantiles.

``scipy.stats.bootstrap`` resamples rows of equal weight; these statistics are ratios over prompts of
unequal weight, and the regression of :func:`length_controlled` is refitted on each resample, so the
resampling is numpy's: one ``(resamples, prompts)`` index matrix per figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 1000
LEVEL = 0.95
#: Length explains "most" of a gain when the length-controlled gain keeps less than half of it.
LENGTH_SHARE_WARNING = 0.5

Interval = tuple[float, float]
_NAN_INTERVAL: Interval = (float("nan"), float("nan"))


def resample_prompts(n: int, seed: int = 0, n_resamples: int = N_RESAMPLES) -> np.ndarray:
    """``(n_resamples, n)`` indices of prompts drawn with replacement, fixed for a seed."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def percentile_interval(statistics: np.ndarray, level: float = LEVEL) -> Interval:
    """The percentile interval of a bootstrap distribution, ignoring the resamples that gave no value."""
    finite = statistics[np.isfinite(statistics)]
    if finite.size == 0:
        return _NAN_INTERVAL
    lo, hi = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def ratio_ci(numerators: np.ndarray, denominators: np.ndarray, seed: int = 0, level: float = LEVEL,
             n_resamples: int = N_RESAMPLES) -> Interval:
    """Interval of ``sum(numerators) / sum(denominators)``, resampling the prompts (one row each)."""
    num, den = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    if num.size == 0:
        return _NAN_INTERVAL
    idx = resample_prompts(num.size, seed, n_resamples)
    totals = den[idx].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return percentile_interval(np.where(totals > 0, num[idx].sum(axis=1) / totals, np.nan), level)


def by_prompt(values: np.ndarray, groups: np.ndarray | list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt sums and counts of ``values`` (one row per answer), ``groups`` naming each answer's
    prompt (``None``: one answer per prompt)."""
    values = np.asarray(values, dtype=float)
    if groups is None:
        return values, np.ones_like(values)
    _, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    return np.bincount(inverse, weights=values), np.bincount(inverse).astype(float)


def mean_ci(values: np.ndarray, seed: int = 0, groups: np.ndarray | list | None = None, level: float = LEVEL,
            n_resamples: int = N_RESAMPLES) -> Interval:
    """Interval of the mean of ``values`` (a rate when they are 0/1), resampling prompts: the rows of one
    ``groups`` label move together."""
    return ratio_ci(*by_prompt(values, groups), seed=seed, level=level, n_resamples=n_resamples)


# ------------------------------------------------------------------------------------------ win rates
def outcomes(after: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Per prompt: +1 where ``after`` scored higher (a win), -1 lower (a loss), 0 the same (a tie)."""
    return np.sign(np.asarray(after, dtype=float) - np.asarray(before, dtype=float))


def win_rate_ci(after: np.ndarray, before: np.ndarray, seed: int = 0, ties_half: bool = False,
                level: float = LEVEL) -> dict:
    """The win rate of ``after`` over ``before`` (paired: one pair per prompt) and its paired bootstrap
    interval by prompt: wins / (wins + losses), or with ``ties_half`` (wins + ties / 2) / pairs; both
    ``None`` where no comparison was decided."""
    o = outcomes(after, before)
    if ties_half:
        num, den = (o > 0) + 0.5 * (o == 0), np.ones_like(o)
    else:
        num, den = (o > 0).astype(float), (o != 0).astype(float)
    total = den.sum()
    return {"rate": float(num.sum() / total) if total else None, "ci95": ratio_ci(num, den, seed, level) if total else None,
            "wins": int((o > 0).sum()), "losses": int((o < 0).sum()), "ties": int((o == 0).sum())}


def separated(a: Interval | None, b: Interval | None) -> int:
    """+1 when interval ``a`` lies wholly above ``b``, -1 wholly below, 0 when they overlap (or one is missing)."""
    if a is None or b is None or not all(np.isfinite([*a, *b])):
        return 0
    return 1 if a[0] > b[1] else -1 if a[1] < b[0] else 0


# ------------------------------------------------------------------------------------------ length
def _ols_intercepts(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Per row of ``dy``/``dx`` (resamples x prompts): the intercept of ``dy ~ a + b dx``, i.e. the mean
    of ``dy`` where ``dx`` is 0; ``b`` is 0 for a row where ``dx`` does not vary."""
    mx, my = dx.mean(axis=-1, keepdims=True), dy.mean(axis=-1, keepdims=True)
    var = ((dx - mx) ** 2).sum(axis=-1)
    cov = ((dx - mx) * (dy - my)).sum(axis=-1)
    slope = np.divide(cov, var, out=np.zeros_like(cov), where=var > 1e-12)
    return my[..., 0] - slope * mx[..., 0]


def _lc_win_rate(wins: np.ndarray, dx: np.ndarray) -> float:
    """P(win) at equal length: a logistic regression of win on the length difference, at a difference of 0
    (AlpacaEval's length-controlled win rate, without its per-instruction terms). Ties are left out by the
    caller; with one outcome only the observed rate is returned."""
    if wins.size == 0:
        return float("nan")
    if wins.min() == wins.max():
        return float(wins[0])
    from sklearn.linear_model import LogisticRegression  # only where a length-controlled win rate is fitted

    model = LogisticRegression(C=1.0).fit(dx[:, None], wins.astype(int))
    return float(1 / (1 + np.exp(-model.intercept_[0])))


@dataclass
class LengthControl:
    """A score's gain over the SFT answers with and without what length explains."""

    gain: float
    gain_ci95: Interval
    lc_gain: float
    lc_gain_ci95: Interval
    win_rate: float
    lc_win_rate: float
    lc_win_rate_ci95: Interval
    #: The share of the gain that the length difference accounts for (``None`` without a gain to explain).
    length_share: float | None
    length_explains_most: bool

    def as_dict(self) -> dict:
        """The figures for JSON: an undefined one (no decided comparison) as ``None``."""
        return {k: _defined(v) for k, v in vars(self).items()}


def _defined(value: object) -> object:
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, tuple):
        return value if all(np.isfinite(value)) else None
    return value


def length_controlled(after: np.ndarray, before: np.ndarray, len_after: np.ndarray, len_before: np.ndarray,
                      seed: int = 0, n_resamples: int = 200) -> LengthControl:
    """A score's gain (mean of ``after - before``, one pair per prompt) and its win rate, controlled for
    length: regressed on the length difference (in its own standard deviations) and read at a difference
    of 0. The gain's regression is least squares; the win rate's a logistic regression, as AlpacaEval's
    length-controlled win rate. Intervals by prompt (``n_resamples``: the logistic fit is refitted on each)."""
    dy = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    dl = np.asarray(len_after, dtype=float) - np.asarray(len_before, dtype=float)
    dx = dl / dl.std() if dl.std() > 0 else np.zeros_like(dl)
    idx = resample_prompts(dy.size, seed, n_resamples)
    decided = dy != 0
    gain, lc_gain = float(dy.mean()), float(_ols_intercepts(dy, dx))
    win = float((dy[decided] > 0).mean()) if decided.any() else float("nan")
    lc_win = _lc_win_rate(dy[decided] > 0, dx[decided])
    lc_wins = np.array([_lc_win_rate(dy[i][decided[i]] > 0, dx[i][decided[i]]) for i in idx])
    share = None
    if gain > 0:
        share = float(np.clip(1 - lc_gain / gain, 0.0, 1.0))
    elif np.isfinite(win) and win > 0.5:
        share = float(np.clip((win - lc_win) / (win - 0.5), 0.0, 1.0))
    return LengthControl(gain, mean_ci(dy, seed), lc_gain, percentile_interval(_ols_intercepts(dy[idx], dx[idx])),
                         win, lc_win, percentile_interval(lc_wins), share,
                         share is not None and share > LENGTH_SHARE_WARNING)


# ------------------------------------------------------------------------------------------ over-optimisation
def standardised_change(now: np.ndarray, then: np.ndarray, seed: int = 0, level: float = LEVEL) -> dict:
    """The paired change ``now - then`` of a score over the same prompts, in standard deviations of that
    score (its per-prompt spread over both evaluations, pooled), with its interval by prompt."""
    now, then = np.asarray(now, dtype=float), np.asarray(then, dtype=float)
    spread = float(np.sqrt((now.var(ddof=1) + then.var(ddof=1)) / 2)) if now.size > 1 else 0.0
    spread = spread if spread > 0 else 1.0
    d = (now - then) / spread
    return {"change_sd": float(d.mean()), "ci95": mean_ci(d, seed, level=level), "spread": spread}


def overoptimisation_test(proxy: list[np.ndarray], reference: list[np.ndarray], seed: int = 0,
                          level: float = LEVEL) -> dict:
    """Whether the last of a run's evaluations shows reward over-optimisation.

    ``proxy[k]`` and ``reference[k]`` are the per-prompt scores of evaluation ``k`` (``0``: the SFT
    policy) on the same held-out prompts in the same order: the proxy is the reward model being
    optimised, the reference the gold reward or a judge. The last evaluation is compared with the
    reference's **best evaluation so far** (not the previous one: a slow drift escapes a step-by-step
    test), each score standardised by its own spread, and it is flagged only when both the proxy's rise
    and the reference's fall exceed their paired intervals by prompt: the interval of the proxy's change
    lies above 0 and that of the reference's below 0.
    """
    if len(proxy) != len(reference) or len(proxy) < 2:
        raise ValueError("needs the proxy and reference scores of at least two evaluations, alike in number")
    peak = int(np.argmax([np.mean(r) for r in reference[:-1]]))
    rise = standardised_change(proxy[-1], proxy[peak], seed, level)
    fall = standardised_change(reference[-1], reference[peak], seed + 1, level)
    flagged = bool(rise["ci95"][0] > 0 and fall["ci95"][1] < 0)
    return {"flagged": flagged, "since_evaluation": peak, "proxy": rise, "reference": fall}
