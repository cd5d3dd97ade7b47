"""The labels section's account of how the pairs were chosen: the acquisition rule, the queued pairs'
uncertainty against the pool's, the re-rankings during labelling, and the learning curve (accuracy
against labelled pairs). Built from the candidates and labels stages' ``metrics.json``; figures come
from :mod:`alignment.reports.plots`."""

from __future__ import annotations

from alignment.reports.html import esc, figure_html, fmt_figure, table_html
from alignment.reports.plots import learning_curve_figure, uncertainty_figure


def acquisition_rule(acq: dict | None) -> str:
    """One sentence naming the rule that chose the pairs."""
    if not acq or acq.get("rule") != "uncertainty":
        pairing = (acq or {}).get("pairing")
        return "At random" + (f" (pairing: {pairing})." if pairing else ".")
    ens, model = acq.get("ensemble") or {}, acq.get("model")
    rest = (f"{acq.get('random_share', 0):.0%} of the queue drawn at random from the pool of {acq.get('pool_pairs')} "
            f"pairs; at most {acq.get('max_pairs_per_prompt')} pairs per prompt.")
    if model is None:
        return (f"By uncertainty, but without a reward model yet (fewer than {ens.get('min_pairs')} labelled "
                f"pairs): at random. {rest}")
    heads = f"{ens.get('hidden')} hidden units" if ens.get("hidden") else "linear"
    return (f"By uncertainty: the disagreement (BALD) of {model.get('members')} Bradley-Terry heads ({heads}, each "
            f"from its own random start and bootstrap resample) on frozen {model.get('encoder')} features, trained "
            f"on {model.get('pairs')} labelled pairs. {rest}")


def acquisition_html(candidates: dict | None, labels: dict | None) -> str:
    """The part of the labels section on acquisition (empty when neither stage recorded anything)."""
    acq = (candidates or {}).get("acquisition")
    parts = [f"<h4>How the pairs were chosen</h4><p>{esc(acquisition_rule(acq))}</p>"] if candidates else []
    unc = (acq or {}).get("uncertainty")
    if unc:
        rows = [(name, s.get("n"), s.get("mean"), s.get("median"), s.get("p75")) for name, s in (
            ("pool", unc["pool"]), ("queued", unc["queued"]), ("queued at random", unc["queued_random"]),
            ("queued by uncertainty", unc["queued_by_uncertainty"]))]
        parts.append(table_html(["pairs", "n", "mean uncertainty", "median", "75th percentile"], rows,
                                text_cols=(0,), fmt=fmt_figure))
        parts.append(figure_html(uncertainty_figure(unc["histogram"]), "queued pairs' uncertainty against the pool's"))
    reranks = (labels or {}).get("reranks") or []
    if reranks:
        parts.append("<h4>Re-rankings during labelling</h4>" + table_html(
            ["labels so far", "labelled pairs", "untouched items that could move", "replaced", "seconds"],
            [(r["labels"], r["pairs"], r["replaceable"], r["replaced"], r["seconds"]) for r in reranks], fmt=fmt_figure))
    curve = (labels or {}).get("learning_curve")
    if curve and curve.get("points"):
        points = [(p["labels"], p["accuracy"]) for p in curve["points"]]
        parts.append(f"<h4>Learning curve</h4><p>The ensemble's accuracy against the number of labelled pairs "
                     f"it learnt from (in labelling order), on {curve['heldout_pairs']} held-out pairs: "
                     f"{esc(curve['heldout'])}.</p>")
        parts.append(figure_html(learning_curve_figure({"ensemble": points}, "Accuracy against labelled pairs"),
                                 "learning curve"))
        parts.append(table_html(["labelled pairs", "accuracy"], points, fmt=fmt_figure))
    elif curve:
        parts.append(f"<p>No learning curve: {esc(curve.get('skipped', 'no points'))}.</p>")
    return "".join(parts)
