"""The data of the whole-run alignment eval report: what the stages left in a run directory, as one dict.

Nothing is recomputed from models: every figure comes from the stages' ``metrics.json``,
``safety.json``, ``samples.jsonl`` and ``.hydra/config.yaml``, so the report of a run stopped by a
failed gate, of stages run by hand (no ``pipeline.json``) or of a run still going is as complete as
the run itself: stages that did not run are listed as such, and a failed gate is kept with its
measured value, threshold and message. :mod:`alignment.reports.run_report` renders the dict as HTML.

Layout read (round 1 at the top, round ``r > 1`` under ``round-<r>/``)::

    RUN/pipeline.json                       optional: status, plan, per-stage status / wall time / message
    RUN/{sft,candidates,labels,reward,ppo}/ metrics.json, safety.json, .hydra/config.yaml (+ samples.jsonl)
    RUN/round-2/{candidates,labels,reward,ppo}/ ...

The dict (``RUN/report.json``) holds the run status, the headline figures, every stage's record (its
metrics, safety evaluation, gates and resolved config) and the paired SFT/PPO samples.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from alignment.errors import UserError
from alignment.reports.comparison import comparison_data
from alignment.safety.rates import policy_rate
from alignment.stats import win_rate_ci

#: Round 1's stages in data-flow order; later rounds repeat all but ``sft``.
STAGES = ("sft", "candidates", "labels", "reward", "ppo")
ROUND_STAGES = STAGES[1:]
#: Files whose change makes an existing ``report.html`` stale.
INPUT_FILES = ("metrics.json", "safety.json", "samples.jsonl")
_ROUND_DIR = re.compile(r"^round-(\d+)$")


# ------------------------------------------------------------------------------------------ reading
#: The per-answer scores a PPO stage may record for the SFT and PPO answers (samples.jsonl).
SAMPLE_SCORES = ("gold", "judge", "proxy")

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
    keys = ("split", "prompt", "sft", "ppo", *(f"{score}_{side}" for score in SAMPLE_SCORES for side in ("sft", "ppo")))
    rows = []
    for r in last["samples"]:
        s = start.get((r.get("split"), r.get("prompt")))
        if s is not None:
            rows.append({**{k: r.get(k) for k in keys}, "sft": s.get("sft"),
                         **{f"{score}_sft": s.get(f"{score}_sft") for score in SAMPLE_SCORES}})
    if not rows:  # the rounds sampled different prompts: show the last stage's own comparison
        first = last
        rows = [{k: r.get(k) for k in keys} for r in last["samples"]]
    return {"from": first["dir"], "to": last["dir"], "rows": rows}


def _win_rate(rows: list[dict], score: str = "gold") -> dict:
    """Wins / (wins + losses) of the PPO answer under the ``score`` (gold or judge) reward, as the PPO
    stage counts it, and the variant counting a tie as half a win, each with its paired 95% interval by
    prompt; ``{}`` without scores."""
    scored = np.array([(r[f"{score}_ppo"], r[f"{score}_sft"]) for r in rows
                       if r.get(f"{score}_ppo") is not None and r.get(f"{score}_sft") is not None], dtype=float)
    if not len(scored):
        return {}
    win, half = win_rate_ci(scored[:, 0], scored[:, 1]), win_rate_ci(scored[:, 0], scored[:, 1], ties_half=True)
    return {"rate": win["rate"], "ci95": win["ci95"], "ties_half": half["rate"], "ties_half_ci95": half["ci95"]}


def _headline(pipeline: dict | None, stages: list[dict], samples: dict | None) -> dict:
    """The figures a reviewer (and ``scripts/bench_pipeline.py``) looks at first; ``None`` when unknown."""
    def done(name: str) -> list[dict]:
        return [s for s in stages if s["name"] == name and s["metrics"]]

    sft = next(iter(done("sft")), None)
    ppos, rewards = done("ppo"), done("reward")
    policies = [s for s in stages if s["name"] in ("sft", "ppo") and (s["safety"] or {}).get("policy")]
    last_metrics = ppos[-1]["metrics"] if ppos else {}
    win = (_win_rate(samples["rows"]) if samples else {}) or {
        "rate": last_metrics.get("gold_win_rate"), "ci95": last_metrics.get("gold_win_rate_ci95"),
        "ties_half": last_metrics.get("gold_win_rate_ties_half"),
        "ties_half_ci95": last_metrics.get("gold_win_rate_ties_half_ci95")}
    judge = (_win_rate(samples["rows"], "judge") if samples else {}) or {
        "rate": last_metrics.get("judge_win_rate"), "ci95": last_metrics.get("judge_win_rate_ci95")}
    first, last = (ppos[0]["metrics"], ppos[-1]["metrics"]) if ppos else ({}, {})
    gold = any(s["metrics"].get("gold_reward_mean") is not None or s["metrics"].get("gold_reward_sft") is not None
               for s in stages if s["name"] in ("sft", "ppo") and s["metrics"])
    if ppos:
        unsafe_sft = ppos[0]["metrics"].get("unsafe_rate_sft")
    else:
        unsafe_sft = sft["metrics"].get("unsafe_rate_redteam") if sft else None
    first_policy = next((s for s in policies if s["name"] == "sft"), None)
    last_policy = next((s for s in reversed(policies) if s["name"] == "ppo"), None)
    first_rates = first_policy["safety"]["policy"] if first_policy else None
    last_rates = last_policy["safety"]["policy"] if last_policy else None
    return {
        "gold_win_rate": win["rate"], "gold_win_rate_ci95": win["ci95"],
        "gold_win_rate_ties_half": win["ties_half"], "gold_win_rate_ties_half_ci95": win["ties_half_ci95"],
        "gold_reward_sft": ppos[0]["metrics"].get("gold_reward_sft") if ppos else None,
        "gold_reward_ppo": ppos[-1]["metrics"].get("gold_reward_ppo") if ppos else None,
        "unsafe_rate_sft": unsafe_sft,
        "unsafe_rate_ppo": ppos[-1]["metrics"].get("unsafe_rate_ppo") if ppos else None,
        "unsafe_rate_filter_sft": first_rates.get("unsafe_rate") if first_rates else None,
        "unsafe_rate_filter_ppo": last_rates.get("unsafe_rate") if last_rates else None,
        "over_refusal_sft": policy_rate(first_rates, "over_refusal_rate_benign"),
        "over_refusal_ppo": policy_rate(last_rates, "over_refusal_rate_benign"),
        "refusal_rate_sft": policy_rate(first_rates, "refusal_rate_harmful"),
        "refusal_rate_ppo": policy_rate(last_rates, "refusal_rate_harmful"),
        "rm_score_sft": first.get("rm_score_sft"), "rm_score_ppo": last.get("rm_score_ppo"),
        "rm_score_sft_ci95": first.get("rm_score_sft_ci95"), "rm_score_ppo_ci95": last.get("rm_score_ppo_ci95"),
        "judge_win_rate": judge["rate"], "judge_win_rate_ci95": judge["ci95"],
        "judge_reward_sft": first.get("judge_reward_sft"), "judge_reward_ppo": last.get("judge_reward_ppo"),
        "eos_rate_sft": first.get("eos_rate_sft"), "eos_rate_ppo": last.get("eos_rate_ppo"),
        "mean_tokens_sft": first.get("mean_tokens_sft"), "mean_tokens_ppo": last.get("mean_tokens_ppo"),
        "gold": gold,
        "missing": last.get("missing") or ([] if gold else [
            {"figure": "gold reward, gold win rate, gold unsafe rate",
             "why": "this world has no gold reward (only the demo world does)"}]),
        "rm_eval_accuracy": rewards[-1]["metrics"].get("eval_accuracy") if rewards else None,
        "final_kl": ppos[-1]["metrics"].get("final_kl") if ppos else None,
        "kl_target": last.get("kl_target"),
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
        "comparison": comparison_data(run_dir, pipeline),
        "problems": problems,
    })
