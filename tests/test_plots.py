"""The reports' figures are built on their own ``Figure`` objects: pyplot's global state stays empty, and
figures drawn from several threads at once (the labeling app renders reports from request threads)
come out exactly as when drawn one by one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import matplotlib.pyplot as plt

from alignment.reports import plots
from alignment.reports.html import figure_html

HISTORY = [{"update": u, "reward/raw": 0.1 * u, "objective/kl": 0.5 * u, "objective/beta": 0.05,
            "policy/entropy": 2.0 - 0.1 * u, "response/length": 20 + u, "response/eos_rate": 0.9} for u in range(1, 9)]
EVALS = [{"update": u, "eval": {"gold_reward_mean": 0.1 * u, "proxy_reward_mean": 0.2 * u}} for u in (4, 8)]
CALIBRATION = [{"gap_lo": 0.0, "gap_hi": 0.5, "n": 10, "accuracy": 0.6},
               {"gap_lo": 0.5, "gap_hi": 1.0, "n": 10, "accuracy": 0.8}]
RATE = {"rate": 0.2, "ci95": [0.1, 0.3]}
POLICIES = [{"dir": d, "safety": {"policy": {"unsafe_rate": RATE, "refusal_rate_harmful": RATE,
                                             "over_refusal_rate_benign": {"rate": None, "ci95": None}}}}
            for d in ("sft", "ppo")]


#: Every figure function of the reports, with inputs.
FIGURES = [
    lambda: plots.loss_figure([[1, 2.0], [2, 1.5]], "loss"),
    lambda: plots.reward_histogram_figure({"chosen_rewards": [0.1, 0.5, 1.0], "rejected_rewards": [-0.2, 0.0, 0.3]}),
    lambda: plots.calibration_figure(CALIBRATION),
    lambda: plots.ppo_curves_figure(HISTORY),
    lambda: plots.heldout_rewards_figure(EVALS),
    lambda: plots.reward_round_figure([[1, 0.7], [2, 0.6]], CALIBRATION),
    lambda: plots.ppo_run_figure({"history": HISTORY, "evals": EVALS, "kl_target": 3.0,
                                  "overoptimisation_updates": [8], "baseline": {"eval": {"gold_reward_mean": 0.0}}}),
    lambda: plots.safety_rates_figure(POLICIES),
]


def draw(figure) -> str:
    return figure_html(figure(), "figure")


def test_figures_leave_pyplot_alone_and_draw_the_same_from_several_threads(monkeypatch) -> None:
    def no_pyplot(*args, **kwargs):
        raise AssertionError("a report figure went through pyplot's global state")

    for name in ("figure", "subplots", "gcf", "gca"):
        monkeypatch.setattr(plt, name, no_pyplot)
    alone = [draw(figure) for figure in FIGURES]
    assert len(set(alone)) == len(alone) and all(page.startswith("<img") for page in alone)
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(draw, FIGURES)) == alone
