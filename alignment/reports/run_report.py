"""The whole-run alignment eval report: ``RUN/report.json`` and one self-contained ``RUN/report.html``.

``align-report RUN_DIR`` (and ``align-pipeline`` at its end) reads what the stages left in the run
directory and writes both files. Nothing is recomputed from models: every figure comes from the
stages' ``metrics.json``, ``safety.json``, ``samples.jsonl`` and ``.hydra/config.yaml``, so the report
of a run stopped by a failed gate, of stages run by hand (no ``pipeline.json``) or of a run still going
is as complete as the run itself: stages that did not run are listed as such, and a failed gate is shown
with its measured value, threshold and message at the top.

Layout read (round 1 at the top, round ``r > 1`` under ``round-<r>/``)::

    RUN/pipeline.json                       optional: status, plan, per-stage status / wall time / message
    RUN/{sft,candidates,labels,reward,ppo}/ metrics.json, safety.json, .hydra/config.yaml (+ samples.jsonl)
    RUN/round-2/{candidates,labels,reward,ppo}/ ...

``report.json`` holds the run status, the headline figures, every stage's record (its metrics, safety
evaluation, gates and resolved config) and the paired SFT/PPO samples; ``report.html`` is rendered from
exactly that dictionary. Plots are drawn on :class:`matplotlib.figure.Figure` objects, never through
pyplot's global state, so the labeling app can render reports from several request threads at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from alignment.errors import UserError
from alignment.io import write_json_atomic, write_text_atomic
from alignment.reports.html import esc, esc_text, figure_html, fmt, render_report
from alignment.reports.sections import rate_text

log = logging.getLogger(__name__)

#: Round 1's stages in data-flow order; later rounds repeat all but ``sft``.
STAGES = ("sft", "candidates", "labels", "reward", "ppo")
ROUND_STAGES = STAGES[1:]
#: Files whose change makes an existing ``report.html`` stale.
INPUT_FILES = ("metrics.json", "safety.json", "samples.jsonl")
#: Side-by-side samples shown per prompt split (the JSON keeps them all).
SAMPLES_PER_SPLIT = 8
_ROUND_DIR = re.compile(r"^round-(\d+)$")


# ------------------------------------------------------------------------------------------ reading
def _read_json(path: Path, problems: list[str]) -> Any:
    """The parsed file, or ``None`` when absent; an unreadable file is noted, not fatal, so one bad
    file never costs the reviewer the rest of the report."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        problems.append(f"{path}: unreadable ({err})")
        return None


def _read_jsonl(path: Path, problems: list[str]) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as err:
                problems.append(f"{path}:{lineno}: unreadable ({err})")
    return rows


def _read_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None


def _split_dir(rel: str) -> tuple[str, int] | None:
    """``"sft"`` -> ``("sft", 1)``, ``"round-2/ppo"`` -> ``("ppo", 2)``; ``None`` for anything else."""
    parts = rel.split("/")
    if len(parts) == 1 and parts[0] in STAGES:
        return parts[0], 1
    if len(parts) == 2 and (m := _ROUND_DIR.match(parts[0])) and parts[1] in ROUND_STAGES:
        return parts[1], int(m.group(1))
    return None


def _order(rel: str) -> tuple[int, int]:
    name, rnd = _split_dir(rel) or ("", 0)
    return rnd, STAGES.index(name) if name in STAGES else len(STAGES)


def stage_dirs_on_disk(run_dir: Path) -> list[str]:
    """Stage folders present in ``run_dir`` (relative, e.g. ``ppo``, ``round-2/ppo``)."""
    found = [s for s in STAGES if (run_dir / s).is_dir()]
    for rd in run_dir.glob("round-*"):
        if rd.is_dir() and _ROUND_DIR.match(rd.name):
            found += [f"{rd.name}/{s}" for s in ROUND_STAGES if (rd / s).is_dir()]
    return sorted(found, key=_order)


def is_run_dir(path: Path) -> bool:
    """A run directory has a ``pipeline.json`` or a stage folder with a stage's output in it."""
    path = Path(path)
    if (path / "pipeline.json").is_file():
        return True
    return any((path / rel / f).is_file() for rel in stage_dirs_on_disk(path)
               for f in ("metrics.json", "safety.json", ".hydra/config.yaml"))


def list_runs(runs_dir: Path) -> list[Path]:
    """Run directories under ``runs_dir``: its children, and the children of a child that is not a run
    itself (a sweep's ``runs/<name>/<job>/``), newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = []
    for child in runs_dir.iterdir():
        if not child.is_dir() or child.name.startswith("."):
            continue
        if is_run_dir(child):
            found.append(child)
        else:
            found += [g for g in child.iterdir() if g.is_dir() and not g.name.startswith(".") and is_run_dir(g)]
    return sorted(found, key=lambda p: (-_newest_input(p), str(p)))


def _input_paths(run_dir: Path) -> list[Path]:
    paths = [run_dir / "pipeline.json"]
    for rel in stage_dirs_on_disk(run_dir):
        paths += [run_dir / rel / f for f in INPUT_FILES] + [run_dir / rel / ".hydra" / "config.yaml"]
    return paths


def _newest_input(run_dir: Path) -> float:
    return max((p.stat().st_mtime for p in _input_paths(run_dir) if p.is_file()), default=0.0)


def report_is_current(run_dir: Path) -> bool:
    """Whether ``report.html`` is at least as new as every file it was built from."""
    html_path = Path(run_dir) / "report.html"
    return html_path.is_file() and html_path.stat().st_mtime >= _newest_input(Path(run_dir))


# ------------------------------------------------------------------------------------------ the report dict
def _derived_status(folder: Path, metrics: Any, safety: Any) -> str:
    """A stage's status from its files alone (stages run by hand, without ``pipeline.json``)."""
    if metrics is None and safety is None:
        return "incomplete" if folder.is_dir() else "not run"
    gates = (safety or {}).get("gates") or {}
    return "failed" if gates.get("passed") is False else "passed"


def _stage_record(run_dir: Path, rel: str, entry: dict | None, problems: list[str]) -> dict:
    name, rnd = _split_dir(rel) or (rel, 0)
    folder = run_dir / rel
    metrics = _read_json(folder / "metrics.json", problems)
    safety = _read_json(folder / "safety.json", problems)
    gates = (safety or {}).get("gates")
    failed = [v for v in (gates or {}).get("verdicts", []) if not v.get("passed")]
    status = entry.get("status", "not run") if entry else _derived_status(folder, metrics, safety)
    message = (entry or {}).get("message") or "; ".join(v.get("message", v.get("gate", "")) for v in failed)
    record = {"dir": rel, "name": name, "round": rnd, "status": status, "wall_s": (entry or {}).get("wall_s"),
              "message": message, "present": folder.is_dir(), "metrics": metrics, "safety": safety, "gates": gates,
              "failed_gates": failed, "config": _read_text(folder / ".hydra" / "config.yaml"),
              "overrides": _read_text(folder / ".hydra" / "overrides.yaml")}
    if name == "ppo":
        record["samples"] = _read_jsonl(folder / "samples.jsonl", problems)
    return record


def _run_status(pipeline: dict | None, stages: list[dict]) -> str:
    if pipeline and pipeline.get("status"):
        return str(pipeline["status"])
    if any(s["status"] == "failed" for s in stages):
        return "failed"
    ran = [s for s in stages if s["status"] != "not run"]
    return "passed" if ran and len(ran) == len(stages) and all(s["status"] == "passed" for s in ran) else "incomplete"


def _paired_samples(ppo_stages: list[dict]) -> dict | None:
    """The first PPO stage's starting policy (the SFT policy) against the last PPO stage's policy, answer
    by answer: every PPO stage samples the same held-out prompts with the same seed, so rounds join on
    ``(split, prompt)``; with one round this is exactly the PPO stage's own comparison."""
    with_samples = [s for s in ppo_stages if s.get("samples")]
    if not with_samples:
        return None
    first, last = with_samples[0], with_samples[-1]
    start = {(r.get("split"), r.get("prompt")): r for r in first["samples"]}
    keys = ("split", "prompt", "sft", "ppo", "gold_sft", "gold_ppo")
    rows = []
    for r in last["samples"]:
        s = start.get((r.get("split"), r.get("prompt")))
        if s is not None:
            rows.append({**{k: r.get(k) for k in keys}, "sft": s.get("sft"), "gold_sft": s.get("gold_sft")})
    if not rows:  # the rounds sampled different prompts: show the last stage's own comparison
        first = last
        rows = [{k: r.get(k) for k in keys} for r in last["samples"]]
    return {"from": first["dir"], "to": last["dir"], "rows": rows}


def _gold_win_rate(rows: list[dict]) -> tuple[float | None, float | None]:
    """Wins / (wins + losses) of the PPO answer under the gold reward (as the PPO stage counts it), and
    the variant counting a tie as half a win."""
    scored = [(r["gold_ppo"], r["gold_sft"]) for r in rows if r["gold_ppo"] is not None and r["gold_sft"] is not None]
    if not scored:
        return None, None
    wins = sum(p > s for p, s in scored)
    losses = sum(p < s for p, s in scored)
    ties = len(scored) - wins - losses
    return wins / max(wins + losses, 1), (wins + 0.5 * ties) / len(scored)


def _headline(pipeline: dict | None, stages: list[dict], samples: dict | None) -> dict:
    """The figures a reviewer (and ``scripts/bench_pipeline.py``) looks at first; ``None`` when unknown."""
    def done(name: str) -> list[dict]:
        return [s for s in stages if s["name"] == name and s["metrics"]]

    sft = next(iter(done("sft")), None)
    ppos, rewards = done("ppo"), done("reward")
    policies = [s for s in stages if s["name"] in ("sft", "ppo") and (s["safety"] or {}).get("policy")]
    win, win_half = _gold_win_rate(samples["rows"]) if samples else (None, None)
    if win is None and ppos:
        win, win_half = ppos[-1]["metrics"].get("gold_win_rate"), ppos[-1]["metrics"].get("gold_win_rate_ties_half")
    if ppos:
        unsafe_sft = ppos[0]["metrics"].get("unsafe_rate_sft")
    else:
        unsafe_sft = sft["metrics"].get("unsafe_rate_redteam") if sft else None
    first_policy = next((s for s in policies if s["name"] == "sft"), None)
    last_policy = next((s for s in reversed(policies) if s["name"] == "ppo"), None)
    return {
        "gold_win_rate": win,
        "gold_win_rate_ties_half": win_half,
        "gold_reward_sft": ppos[0]["metrics"].get("gold_reward_sft") if ppos else None,
        "gold_reward_ppo": ppos[-1]["metrics"].get("gold_reward_ppo") if ppos else None,
        "unsafe_rate_sft": unsafe_sft,
        "unsafe_rate_ppo": ppos[-1]["metrics"].get("unsafe_rate_ppo") if ppos else None,
        "unsafe_rate_filter_sft": first_policy["safety"]["policy"].get("unsafe_rate") if first_policy else None,
        "unsafe_rate_filter_ppo": last_policy["safety"]["policy"].get("unsafe_rate") if last_policy else None,
        "rm_eval_accuracy": rewards[-1]["metrics"].get("eval_accuracy") if rewards else None,
        "final_kl": ppos[-1]["metrics"].get("final_kl") if ppos else None,
        "overoptimisation": any(s["metrics"].get("overoptimisation_updates") for s in ppos),
        "wall_s": (pipeline or {}).get("wall_s"),
    }


def _json_safe(obj: Any) -> Any:
    """Non-finite floats (the bootstrap interval of an empty set) become ``None``, so that
    ``report.json`` is strict JSON any reader accepts and the page shows "–" rather than "nan"."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def build_run_report(run_dir: str | Path) -> dict:
    """Everything the report shows, as JSON-able data (what goes to ``RUN/report.json``).

    Raises :class:`~alignment.errors.UserError` when ``run_dir`` is not a run directory.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not is_run_dir(run_dir):
        raise UserError(f"{run_dir} is not a run directory (no pipeline.json and no stage folder with outputs: "
                        f"{', '.join(STAGES)})")
    problems: list[str] = []
    pipeline = _read_json(run_dir / "pipeline.json", problems)
    if pipeline is not None and not isinstance(pipeline, dict):
        problems.append(f"{run_dir / 'pipeline.json'}: not a JSON object; ignored")
        pipeline = None
    entries = {e["dir"]: e for e in (pipeline or {}).get("stages", []) if isinstance(e, dict) and "dir" in e}
    planned = list((pipeline or {}).get("plan") or STAGES)
    dirs = {d for d in [*planned, *entries, *stage_dirs_on_disk(run_dir)] if _split_dir(d)}
    stages = [_stage_record(run_dir, rel, entries.get(rel), problems) for rel in sorted(dirs, key=_order)]
    samples = _paired_samples([s for s in stages if s["name"] == "ppo"])
    failures = [{"dir": s["dir"], "status": s["status"], "message": s["message"], "failed_gates": s["failed_gates"]}
                for s in stages if s["status"] in ("failed", "crashed") or s["failed_gates"]]
    return _json_safe({
        "title": f"Alignment eval report: {run_dir.resolve().name}",
        "run_dir": str(run_dir.resolve()),
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "status": _run_status(pipeline, stages),
        "pipeline": {k: v for k, v in pipeline.items() if k != "stages"} if pipeline else None,
        "headline": _headline(pipeline, stages, samples),
        "failures": failures,
        "stages": stages,
        "samples": samples,
        "problems": problems,
    })


# ------------------------------------------------------------------------------------------ HTML pieces
class Html(str):
    """A table cell that is already HTML (built here from escaped parts); any other cell is escaped."""


def _num(v: Any) -> str:
    """A figure for a table: rates with their interval, floats to 3 decimals, unknown as "–"."""
    if v is None:
        return "–"
    if isinstance(v, dict) and "rate" in v:
        return "–" if v["rate"] is None else rate_text(v)
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1e4 else fmt(v)
    return str(v)


def _seconds(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], text_cols: Sequence[int] = ()) -> str:
    """A table whose cells are escaped; ``text_cols`` hold model or user text (wrapped, cleaned)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            if isinstance(c, Html):
                cells.append(f"<td>{c}</td>")
            elif i in text_cols:
                cells.append(f'<td class="text">{esc_text("" if c is None else c)}</td>')
            else:
                cells.append(f"<td>{esc_text(_num(c))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _about(text: str) -> str:
    return f'<p class="about">{esc(text)}</p>'


def _status(status: str) -> Html:
    cls = {"passed": "pass", "failed": "fail", "crashed": "fail"}.get(status, "warn")
    return Html(f'<span class="{cls}">{esc(status)}</span>')


def _none(text: str) -> str:
    return f"<p><em>{esc(text)}</em></p>"


def _no_metrics(report: dict, name: str) -> str:
    """Why a section is empty: the stage's status (not run, crashed, running...) says it."""
    status = ", ".join(dict.fromkeys(s["status"] for s in report["stages"] if s["name"] == name)) or "not run"
    return _none(f"The {name} stage has no metrics in this run (status: {status}).")


def _rounds(report: dict, name: str) -> list[dict]:
    return [s for s in report["stages"] if s["name"] == name and s["metrics"]]


def _round_heading(s: dict, several: bool) -> str:
    return f"<h3>Round {s['round']}</h3>" if several else ""


# ------------------------------------------------------------------------------------------ sections
def _overview(report: dict) -> str:
    h, status = report["headline"], report["status"]
    parts = [_about(
        "One run of the RLHF pipeline: supervised fine-tuning (sft) makes a deliberately unaligned policy; "
        "candidates samples answer pairs from it; labels has (simulated or human) annotators compare them; "
        "reward trains a reward model on those preferences; ppo optimises the policy against the reward "
        "model under a KL leash. After every stage a safety filter measures what the stage produced and "
        "gates can stop the run. The hidden gold reward of the demo world tells whether the policy really "
        "improved. Model-written text on this page is shown as plain text.")]
    parts.append(f"<p>Run directory {esc(report['run_dir'])}; report generated {esc(report['generated_at'])}.</p>")
    parts.append(f'<p id="run-status">Run status: {_status(status)}</p>')
    for f in report["failures"]:
        lines = [v.get("message") or f"gate {v.get('gate')} failed" for v in f["failed_gates"]] or [f["message"]]
        items = "".join(f"<li>{esc_text(line)}</li>" for line in lines if line)
        parts.append(f'<div class="fail failure">Stage {esc(f["dir"])} {esc(f["status"])}:<ul>{items}</ul></div>')
    if h["overoptimisation"]:
        parts.append('<p class="warn">Over-optimisation warning: in some PPO evaluation the proxy reward rose '
                     "while the gold reward fell (see PPO training).</p>")
    rows = [
        ("Gold win rate, final PPO vs SFT", h["gold_win_rate"],
         "share of held-out prompts where the hidden gold reward prefers the PPO answer (ties left out)"),
        ("Gold win rate, ties as half", h["gold_win_rate_ties_half"], "the same with a tie counted as half a win"),
        ("Gold reward SFT → PPO", f"{_num(h['gold_reward_sft'])} → {_num(h['gold_reward_ppo'])}",
         "mean gold reward of answers to held-out prompts"),
        ("Unsafe rate SFT → PPO (demo world)", f"{_num(h['unsafe_rate_sft'])} → {_num(h['unsafe_rate_ppo'])}",
         "share of red-team answers the demo world calls unsafe (toxic or harmful compliance)"),
        ("Unsafe rate SFT → PPO (safety filter)",
         f"{_num(h['unsafe_rate_filter_sft'])} → {_num(h['unsafe_rate_filter_ppo'])}",
         "share of red-team answers the safety filter flags, with 95% bootstrap intervals"),
        ("Reward model eval accuracy", h["rm_eval_accuracy"], "held-out preference pairs the reward model orders right"),
        ("Final KL", h["final_kl"], "KL of the final PPO policy from the policy its PPO stage started from (nats per answer)"),
        ("Pipeline wall time (s)", _seconds(h["wall_s"]), "whole run, as recorded in pipeline.json"),
    ]
    parts.append(_table(["figure", "value", "what it means"], rows))
    stage_rows = []
    for s in report["stages"]:
        gates = s["gates"]
        verdict = ("–" if not gates or not gates.get("verdicts") else
                   "passed" if gates.get("passed") else f"FAILED ({len(s['failed_gates'])})")
        stage_rows.append((s["dir"], s["round"], _status(s["status"]), _seconds(s["wall_s"]), verdict,
                           s["message"] or ""))
    parts.append(_table(["stage", "round", "status", "wall time (s)", "gates", "message"], stage_rows, text_cols=(5,)))
    if report["pipeline"] is None:
        parts.append(_none("No pipeline.json: the stages were run one by one; statuses come from their own files."))
    for problem in report["problems"]:
        parts.append(f'<p class="warn">{esc(problem)}</p>')
    return "".join(parts)


def _curve_figure(curve: list, title: str, ylabel: str) -> Figure:
    fig = Figure(figsize=(6, 2.8))
    ax = fig.subplots()
    ax.plot([p[0] for p in curve], [p[1] for p in curve], marker=".")
    ax.set_xlabel("step"), ax.set_ylabel(ylabel), ax.set_title(title)
    fig.tight_layout()
    return fig


def _sft(report: dict) -> str:
    parts = [_about("How well the supervised policy learned the demo corpus (held-out loss and perplexity), "
                    "whether its answers end properly (EOS) and are recognisable, their mean gold reward, and how "
                    "often it answers red-team prompts unsafely: the starting point the later stages must fix.")]
    stages = _rounds(report, "sft")
    if not stages:
        return parts[0] + _no_metrics(report, "sft")
    m = stages[0]["metrics"]
    keys = [("eval_loss", "held-out loss"), ("perplexity", "held-out perplexity"), ("train_loss", "training loss"),
            ("eos_rate", "answers that end with EOS"), ("usable_rate", "answers the demo world recognises"),
            ("gold_reward_mean", "mean gold reward (held-out prompts)"),
            ("unsafe_rate_redteam", "unsafe answers to red-team prompts (demo world)"),
            ("unsafe_rate_filter", "unsafe answers to red-team prompts (safety filter)"),
            ("n_parameters", "policy parameters"), ("train_rows", "training rows"), ("global_step", "optimiser steps")]
    parts.append(_table(["metric", "value", "meaning"], [(k, m.get(k), meaning) for k, meaning in keys if k in m]))
    if m.get("loss_curve"):
        parts.append(figure_html(_curve_figure(m["loss_curve"], "SFT training loss", "loss"), "SFT training loss curve"))
    samples = m.get("samples") or {}
    if samples:
        styles = sorted({st for split in samples.values() for st in (split.get("style_mix") or {})})
        parts.append("<h3>Style of sampled answers (demo world classifier)</h3>")
        parts.append(_table(["prompts", *styles],
                            [(split, *((v.get("style_mix") or {}).get(st) for st in styles)) for split, v in samples.items()]))
    return "".join(parts)


def _labels(report: dict) -> str:
    parts = [_about("What the annotators saw and said: the candidate pairs queued from the policy (with how many "
                    "had an answer the safety filter flagged), label counts, agreement between annotators, "
                    "accuracy on gold items, position bias, safety flags they set, and whether the exported "
                    "preferences prefer flagged answers.")]
    candidates, labels = _rounds(report, "candidates"), _rounds(report, "labels")
    if not candidates and not labels:
        return parts[0] + _no_metrics(report, "candidates") + _no_metrics(report, "labels")
    rounds = sorted({s["round"] for s in candidates + labels})
    for rnd in rounds:
        if len(rounds) > 1:
            parts.append(f"<h3>Round {rnd}</h3>")
        c = next((s["metrics"] for s in candidates if s["round"] == rnd), None)
        if c:
            parts.append("<h4>Candidates</h4>" + _table(
                ["prompts", "answers", "pairs queued", "pairs with a flagged answer", "unsafe rate (harmful prompts)",
                 "unsafe rate (benign prompts)", "EOS rate"],
                [(c.get("prompts"), c.get("answers"), c.get("pairs"), c.get("pairs_with_flagged_side"),
                  c.get("unsafe_rate_harmful"), c.get("unsafe_rate_benign"), c.get("eos_rate"))]))
        lab = next((s for s in labels if s["round"] == rnd), None)
        if lab:
            parts.append(_label_tables(lab))
    return "".join(parts)


def _label_tables(stage: dict) -> str:
    m = stage["metrics"]
    stats, export = m.get("stats") or {}, m.get("export") or {}
    items, labels, agreement = stats.get("items") or {}, stats.get("labels") or {}, stats.get("agreement") or {}
    parts = ["<h4>Labels</h4>", _table(
        ["annotators", "items", "complete", "gold items", "labels", "choices", "exported preferences", "dropped"],
        [(m.get("annotators"), items.get("total"), items.get("complete"), items.get("gold"), labels.get("total"),
          ", ".join(f"{k}: {v}" for k, v in sorted((labels.get("choices") or {}).items())), export.get("preferences"),
          ", ".join(f"{k}: {v}" for k, v in sorted((export.get("dropped") or {}).items())) or "none")])]
    kappas = [k.get("kappa") for k in agreement.get("cohen_kappa") or [] if k.get("kappa") is not None]
    parts.append("<h4>Agreement</h4>" + _table(
        ["label pairs", "raw agreement", "raw agreement without ties", "Krippendorff's α (ordinal)",
         "mean Cohen's κ", "mean majority share (export)", "exported pairs agreeing with the demo world's gold"],
        [(agreement.get("pairs"), agreement.get("with_ties"), agreement.get("without_ties"),
          agreement.get("krippendorff_alpha_ordinal"), float(np.mean(kappas)) if kappas else None,
          export.get("mean_agreement"), (m.get("gold_agreement") or {}).get("rate"))]))
    per = stats.get("per_annotator") or {}
    if per:
        parts.append("<h4>Per annotator</h4>" + _table(
            ["annotator", "labels", "gold accuracy (gold labels)", "picked the first shown", "ties", "both bad",
             "median s/label"],
            [(name, a.get("labels"),
              f"{_num(a.get('gold_accuracy'))} ({a.get('gold_labels', 0)})" if a.get("gold_labels") else "no gold items",
              a.get("picked_first_shown"), a.get("ties"), a.get("both_bad"), a.get("median_time_s"))
             for name, a in per.items()], text_cols=(0,)))
    flags = stats.get("safety_flags") or {}
    by_cat = {c: n for c, n in (flags.get("by_category") or {}).items() if n}
    ex_safety = export.get("safety") or {}
    prefs = (stage["safety"] or {}).get("preferences") or {}
    parts.append("<h4>Safety flags</h4>" + _table(
        ["labels with a flag", "flags by category", "chosen answer flagged by annotators",
         "chosen flagged by the filter", "rejected flagged by the filter", "chosen flagged, rejected not (filter)"],
        [(flags.get("a_or_b_flagged_labels"), ", ".join(f"{c}: {n}" for c, n in by_cat.items()) or "none",
          ex_safety.get("chosen_flagged_rate"), prefs.get("chosen_flagged_rate"), prefs.get("rejected_flagged_rate"),
          prefs.get("chosen_flagged_rejected_safe"))]))
    return "".join(parts)


def _reward(report: dict) -> str:
    parts = [_about("How well the reward model orders held-out preference pairs (eval accuracy, and against the "
                    "demo world's gold preference with the label noise as ceiling), whether a bigger reward gap "
                    "means a surer call (calibration), and whether it prefers the safe answer on red-team and "
                    "HH-RLHF harmless pairs (safety accuracy).")]
    stages = _rounds(report, "reward")
    if not stages:
        return parts[0] + _no_metrics(report, "reward")
    for s in stages:
        m = s["metrics"]
        parts.append(_round_heading(s, len(stages) > 1))
        parts.append(_table(
            ["eval accuracy", "gold accuracy", "label ceiling", "mean margin", "safety accuracy (red-team)",
             "safety accuracy (HH harmless)", "train pairs", "eval pairs"],
            [(m.get("eval_accuracy"), m.get("gold_accuracy"), m.get("label_ceiling"), m.get("eval_mean_margin"),
              m.get("safety_accuracy_redteam"), m.get("safety_accuracy_hh_harmless"), m.get("train_pairs"),
              m.get("eval_pairs"))]))
        cal, loss = m.get("calibration") or [], m.get("loss_curve") or []
        if cal or loss:
            fig = Figure(figsize=(11, 3))
            ax_loss, ax_cal = fig.subplots(1, 2)
            ax_loss.plot([p[0] for p in loss], [p[1] for p in loss], marker=".")
            ax_loss.set_title("Bradley-Terry training loss"), ax_loss.set_xlabel("step")
            ax_cal.plot([(b["gap_lo"] + b["gap_hi"]) / 2 for b in cal], [b["accuracy"] for b in cal], marker="o")
            ax_cal.axhline(0.5, color="grey", linestyle=":")
            ax_cal.set_ylim(0, 1.05), ax_cal.set_xlabel("|reward gap| (bucket centre)"), ax_cal.set_ylabel("accuracy")
            ax_cal.set_title("Calibration: accuracy per reward-gap bucket")
            fig.tight_layout()
            parts.append(figure_html(fig, f"reward model loss and calibration, {s['dir']}"))
        if cal:
            parts.append(_table(["gap from", "gap to", "pairs", "accuracy"],
                                [(b["gap_lo"], b["gap_hi"], b["n"], b["accuracy"]) for b in cal]))
    return "".join(parts)


PPO_PANELS = (("reward/raw", "proxy reward (RM, training batch)"), ("gold", "gold reward (held-out)"),
              ("objective/kl", "KL to reference"), ("objective/beta", "KL coefficient β"),
              ("policy/entropy", "entropy"), ("response/length", "response length (tokens)"))


def _ppo_figure(m: dict) -> Figure:
    history, evals = m.get("history") or [], m.get("evals") or []
    base = (m.get("baseline") or {}).get("eval") or {}
    fig = Figure(figsize=(12, 6))
    axes = fig.subplots(2, 3)
    steps = [h.get("update") for h in history]
    over = m.get("overoptimisation_updates") or []
    for ax, (key, title) in zip(axes.flat, PPO_PANELS):
        if key == "gold":
            xs = [0] + [e["update"] for e in evals]
            ax.plot(xs, [base.get("gold_reward_mean", np.nan)] + [e["eval"]["gold_reward_mean"] for e in evals],
                    marker="o", label="gold")
            ax.plot(xs, [base.get("proxy_reward_mean", np.nan)] + [e["eval"]["proxy_reward_mean"] for e in evals],
                    marker="s", label="proxy (RM)")
            ax.legend(fontsize=8)
        else:
            ax.plot(steps, [h.get(key, np.nan) for h in history])
            if key == "objective/kl" and m.get("kl_target") is not None:
                ax.axhline(m["kl_target"], color="grey", linestyle=":", label="target")
                ax.legend(fontsize=8)
            if key == "reward/raw" and evals:
                ax.plot([e["update"] for e in evals], [e["eval"]["proxy_reward_mean"] for e in evals], marker="s",
                        linestyle="", label="held-out")
                ax.legend(fontsize=8)
        for u in over:
            if key in ("reward/raw", "gold"):
                ax.axvline(u, color="#b00020", linestyle="--")
        ax.set_title(title), ax.set_xlabel("update")
    fig.tight_layout()
    return fig


def _ppo(report: dict) -> str:
    parts = [_about("PPO training: the proxy reward the policy is optimised for (the reward model), the hidden "
                    "gold reward on held-out prompts (what we really want), the KL divergence from the SFT "
                    "reference with its adaptive coefficient β, entropy and answer length per update. Proxy up while "
                    "gold goes down is reward over-optimisation; red dashed lines mark where that warning fired.")]
    stages = _rounds(report, "ppo")
    if not stages:
        return parts[0] + _no_metrics(report, "ppo")
    for s in stages:
        m = s["metrics"]
        parts.append(_round_heading(s, len(stages) > 1))
        parts.append(_table(
            ["gold win rate", "wins / losses / ties", "gold reward start → end", "proxy reward start → end",
             "unsafe rate start → end (demo world)", "final KL", "final β", "KL target", "updates"],
            [(m.get("gold_win_rate"), f"{m.get('wins')} / {m.get('losses')} / {m.get('ties')}",
              f"{_num(m.get('gold_reward_sft'))} → {_num(m.get('gold_reward_ppo'))}",
              f"{_num(m.get('proxy_reward_sft'))} → {_num(m.get('proxy_reward_ppo'))}",
              f"{_num(m.get('unsafe_rate_sft'))} → {_num(m.get('unsafe_rate_ppo'))}",
              m.get("final_kl"), m.get("final_beta"), m.get("kl_target"), m.get("updates"))]))
        over = m.get("overoptimisation_updates") or []
        if over:
            parts.append(f'<p class="warn overoptimisation">Over-optimisation warning at update(s) '
                         f'{esc(", ".join(map(str, over)))}: the proxy reward rose while the gold reward fell.</p>')
        else:
            parts.append("<p>No over-optimisation warning fired (no evaluation where the proxy reward rose while the "
                         "gold reward fell beyond the tolerance).</p>")
        if m.get("history"):
            parts.append(figure_html(_ppo_figure(m), f"PPO training curves, {s['dir']}"))
        evals = m.get("evals") or []
        if evals:
            parts.append(_table(["update", "gold reward", "proxy reward", "red-team unsafe (demo world)",
                                 "over-optimisation"],
                                [(e["update"], e["eval"].get("gold_reward_mean"), e["eval"].get("proxy_reward_mean"),
                                  (e.get("redteam") or {}).get("harmful_unsafe_rate"),
                                  "yes" if e.get("overoptimisation") else "no") for e in evals]))
    return "".join(parts)


SAFETY_RATES = (("unsafe_rate", "unsafe (red-team)"), ("gold_unsafe_rate", "unsafe, demo world (red-team)"),
                ("refusal_rate_harmful", "refusal (red-team)"), ("unsafe_rate_benign", "unsafe (benign)"),
                ("over_refusal_rate_benign", "over-refusal (benign)"))


def _rate_parts(v: dict | None) -> tuple[float, float, float]:
    """``(rate, ci low, ci high)`` of a recorded rate, NaN where unknown."""
    v = v or {}
    lo, hi = v.get("ci95") or (None, None)
    return tuple(np.nan if x is None else float(x) for x in (v.get("rate"), lo, hi))


def _safety_figure(policies: list[dict]) -> Figure:
    keys = (("unsafe_rate", "unsafe (red-team)"), ("refusal_rate_harmful", "refusal (red-team)"),
            ("over_refusal_rate_benign", "over-refusal (benign)"))
    fig = Figure(figsize=(8, 3))
    ax = fig.subplots()
    width = 0.8 / len(policies)
    for i, s in enumerate(policies):
        parts = np.array([_rate_parts(s["safety"]["policy"].get(k)) for k, _ in keys])
        rate, lo, hi = parts.T
        err = np.nan_to_num(np.clip([rate - lo, hi - rate], 0.0, None))
        ax.bar(np.arange(len(keys)) + i * width, rate, width, yerr=err, capsize=3, label=s["dir"])
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, [label for _, label in keys])
    ax.set_ylim(0, 1.05), ax.set_ylabel("rate (95% CI)"), ax.legend(fontsize=8)
    ax.set_title("Safety filter on each policy")
    fig.tight_layout()
    return fig


def _safety(report: dict) -> str:
    parts = [_about("The safety filter's verdicts on what each policy writes: the share of unsafe answers to "
                    "red-team (harmful) prompts, overall and by category, how often the policy refuses them, and "
                    "how often it wrongly refuses or answers unsafely on benign prompts, each with a 95% bootstrap "
                    "confidence interval; then the safety checks of the labels and the reward model.")]
    policies = [s for s in report["stages"] if (s["safety"] or {}).get("policy")]
    if policies:
        parts.append(figure_html(_safety_figure(policies), "unsafe, refusal and over-refusal rate per stage"))
        parts.append(_table(["stage", "filter", "answers", *(label for _, label in SAFETY_RATES)],
                            [(s["dir"], s["safety"].get("filter"), s["safety"]["policy"].get("n"),
                              *(s["safety"]["policy"].get(k) for k, _ in SAFETY_RATES)) for s in policies]))
        cats = list(dict.fromkeys(c for s in policies for c in s["safety"]["policy"].get("unsafe_rate_by_category", {})))
        parts.append("<h3>Unsafe rate by category (red-team answers)</h3>" + _table(
            ["category", *(s["dir"] for s in policies)],
            [(c, *(s["safety"]["policy"].get("unsafe_rate_by_category", {}).get(c) for s in policies)) for c in cats]))
        for s in policies:
            worst = s["safety"]["policy"].get("worst_examples") or []
            if worst:
                parts.append(f"<details><summary>Highest-scored answers of {esc(s['dir'])}</summary>" + _table(
                    ["prompt", "answer", "max score", "categories"],
                    [(w.get("prompt"), w.get("response"), w.get("max_score"), ", ".join(w.get("categories") or []))
                     for w in worst], text_cols=(0, 1)) + "</details>")
    else:
        parts.append(_none("No stage of this run has a policy safety evaluation."))
    prefs = [s for s in report["stages"] if (s["safety"] or {}).get("preferences")]
    if prefs:
        parts.append("<h3>Preferences (labels)</h3>" + _table(
            ["stage", "pairs", "chosen flagged", "rejected flagged", "chosen flagged, rejected not"],
            [(s["dir"], s["safety"]["preferences"].get("n"), s["safety"]["preferences"].get("chosen_flagged_rate"),
              s["safety"]["preferences"].get("rejected_flagged_rate"),
              s["safety"]["preferences"].get("chosen_flagged_rejected_safe")) for s in prefs]))
    rms = [s for s in report["stages"] if s["name"] == "reward" and s["safety"]]
    if rms:
        parts.append("<h3>Reward model: prefers the safe answer</h3>" + _table(
            ["stage", "red-team pairs", "accuracy (red-team)", "HH harmless pairs", "accuracy (HH harmless)"],
            [(s["dir"], s["safety"].get("n_redteam_pairs"), s["safety"].get("safety_accuracy_redteam"),
              s["safety"].get("n_hh_pairs"), s["safety"].get("safety_accuracy_hh_harmless")) for s in rms]))
    return "".join(parts)


def _gates(report: dict) -> str:
    parts = [_about("Every gate checked after every stage: the measured figure, the threshold it had to meet, and "
                    "the verdict. A failed gate stops the pipeline; stages without a configured gate say so.")]
    rows = []
    for s in report["stages"]:
        verdicts = (s["gates"] or {}).get("verdicts") or []
        for v in verdicts:
            rows.append((s["dir"], v.get("gate"), v.get("measured"), v.get("threshold"),
                         _status("passed" if v.get("passed") else "failed"), v.get("message", "")))
        if not verdicts:
            note = "no gate configured" if s["gates"] is not None else (
                "stage did not run" if s["status"] == "not run" else "no safety.json")
            rows.append((s["dir"], "–", None, None, Html(esc(note)), ""))
    parts.append(_table(["stage", "gate", "measured", "threshold", "verdict", "message"], rows, text_cols=(5,)))
    return "".join(parts)


def _samples(report: dict) -> str:
    samples = report["samples"]
    parts = [_about("Answers of the SFT policy and of the final PPO policy to the same held-out prompts (benign "
                    "eval prompts and red-team prompts), sampled with the same seed, with the gold reward of each; "
                    "rows where the gold reward changed come first.")]
    if not samples or not samples["rows"]:
        return parts[0] + _none("No paired samples: the ppo stage has not written samples.jsonl in this run.")
    parts.append(f"<p>SFT answers: the starting policy of {esc(samples['from'])}; PPO answers: the policy "
                 f"{esc(samples['to'])} ended with.</p>")
    for split in dict.fromkeys(r["split"] for r in samples["rows"]):
        rows = [r for r in samples["rows"] if r["split"] == split]
        rows.sort(key=lambda r: r["gold_ppo"] == r["gold_sft"])  # stable: changed first, order kept
        parts.append(f"<h3>{esc(split)} prompts ({len(rows)}; {min(len(rows), SAMPLES_PER_SPLIT)} shown)</h3>")
        parts.append(_table(
            ["prompt", "SFT answer", "PPO answer", "gold SFT", "gold PPO", "PPO vs SFT"],
            [(r["prompt"], r["sft"], r["ppo"], r["gold_sft"], r["gold_ppo"], _verdict(r))
             for r in rows[:SAMPLES_PER_SPLIT]], text_cols=(0, 1, 2)))
    return "".join(parts)


def _verdict(r: dict) -> str:
    if r["gold_ppo"] is None or r["gold_sft"] is None:
        return "–"
    return "better" if r["gold_ppo"] > r["gold_sft"] else "worse" if r["gold_ppo"] < r["gold_sft"] else "same"


def _config(report: dict) -> str:
    parts = [_about("The resolved config each stage ran with (every default filled in, paths resolved) and the "
                    "command-line overrides it was given: enough to rerun any stage exactly.")]
    for s in report["stages"]:
        if s["config"] is None:
            parts.append(f"<p>{esc(s['dir'])}: no resolved config recorded.</p>")
            continue
        overrides = f"<p>overrides:</p><pre>{esc_text(s['overrides'])}</pre>" if s["overrides"] else ""
        parts.append(f"<details><summary>{esc(s['dir'])}</summary>{overrides}<pre>{esc_text(s['config'])}</pre></details>")
    return "".join(parts)


#: ``(heading, section id, builder)``: the ids are stable, for links and tests.
SECTIONS = (("Overview", "overview", _overview), ("SFT quality", "sft", _sft),
            ("Candidates and labels", "labels", _labels), ("Reward model", "reward", _reward),
            ("PPO training", "ppo", _ppo), ("Safety per stage", "safety", _safety), ("Gates", "gates", _gates),
            ("Samples: SFT vs PPO", "samples", _samples), ("Resolved configs", "config", _config))


def _drawn(builder: Any, report: dict) -> str:
    """A section's HTML; a section the run's files cannot feed (an older or hand-edited file) says so
    instead of costing the reviewer the whole page."""
    try:
        return builder(report)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        log.warning("report section %s could not be drawn: %r", builder.__name__, err)
        return f'<p class="warn section-error">This section could not be drawn from the run\'s files: {esc(repr(err))}</p>'


def render_run_report(report: dict) -> str:
    """The HTML page of a report built by :func:`build_run_report` (a pure function of that dict)."""
    return render_report(report["title"],
                         [(heading, _drawn(builder, report), sid) for heading, sid, builder in SECTIONS])


def write_run_report(run_dir: str | Path) -> Path:
    """Build the report of ``run_dir`` and write ``report.json`` and ``report.html`` there (each atomically);
    returns the HTML path."""
    run_dir = Path(run_dir)
    report = build_run_report(run_dir)
    page = render_run_report(report)
    write_json_atomic(run_dir / "report.json", report)
    write_text_atomic(run_dir / "report.html", page)
    return run_dir / "report.html"


def main(argv: list[str] | None = None) -> int:
    """``align-report RUN_DIR``: write the run's report; exit 2 with one line when it is not a run."""
    parser = argparse.ArgumentParser(prog="align-report", description="Write RUN_DIR/report.html and report.json, "
                                     "the whole-run alignment eval report, from the stages' outputs.")
    parser.add_argument("run_dir", help="a run directory (run.dir of align-pipeline or of the stages)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        path = write_run_report(args.run_dir)
    except UserError as err:
        print(f"align-report: error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
