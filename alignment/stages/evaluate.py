"""``align-eval``: the safety evaluation of a policy folder or of a preferences dataset, with the gates.

This is the same evaluation every stage runs at its end (:func:`alignment.safety.eval.stage_safety`),
as a command of its own: evaluate any model folder (``eval.policy_path``) against the red-team and
benign eval prompts, or a preferences dataset (``eval.preferences``: how often the chosen response is
flagged compared with the rejected one). Writes ``<run.dir>/eval/safety.json`` and ``report.html``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from alignment.config import Config
from alignment.data.loading import load_source, row_location
from alignment.data.preferences import normalise_row
from alignment.data.prompt_sets import stage_prompt_sets
from alignment.errors import UserError
from alignment.io import write_json_atomic
from alignment.modeling import load_policy
from alignment.reports.html import write_report
from alignment.reports.sections import safety_sections
from alignment.safety import build_filter
from alignment.safety.eval import evaluate_preferences_safety, stage_safety
from alignment.stages.common import save_resolved_config, seed_everything, stage_dir, stage_main

log = logging.getLogger(__name__)
STAGE = "eval"


def write_eval_report(out: Path, report: dict) -> None:
    write_report(out / "report.html", "Safety evaluation", safety_sections(report))


def run(cfg: Config, raw: DictConfig) -> int:
    out = stage_dir(cfg, STAGE)
    seed_everything(cfg.seed)
    if cfg.eval.preferences:
        data, _, where = load_source(cfg.eval.preferences)
        rows = [normalise_row(row, row_location(where, row, i)) for i, row in enumerate(data)]
        safety_filter = build_filter(cfg.safety)
        save_resolved_config(raw, out)
        report = {"stage": STAGE, "filter": cfg.safety.backend, "source": where,
                  "preferences": evaluate_preferences_safety(rows, safety_filter), "gates": {"passed": True, "verdicts": []}}
        write_json_atomic(out / "safety.json", report)
        write_eval_report(out, report)
        return 0
    if not (Path(cfg.eval.policy_path) / "config.json").is_file():
        raise UserError(f"eval.policy_path={cfg.eval.policy_path}: no model there")
    model, tokenizer = load_policy(cfg.policy, path=cfg.eval.policy_path)
    prompt_sets = stage_prompt_sets(cfg, tokenizer, model, "eval", ("redteam", "benign"))
    save_resolved_config(raw, out)
    baseline = Path(cfg.eval.baseline) if cfg.eval.baseline else None
    report, status = stage_safety(cfg, STAGE, model, tokenizer, cfg.eval.generation, out, prompt_sets, baseline)
    write_eval_report(out, report)
    return status


main = stage_main(STAGE, run)

if __name__ == "__main__":
    main()
