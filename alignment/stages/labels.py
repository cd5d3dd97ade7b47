"""The labels stage: the pairs queued by ``align-candidates`` get labeled in the app, then exported.

With ``labels.annotators=simulated`` (the default, and what ``annotators=simulated`` selects) the real
app is started on a free local port and bots label through its HTTP API, each deciding from the demo
world's gold preference with ``label.bots.noise`` and ``position_bias``: the same path a human takes,
minus the browser. With ``annotators=human`` the app is served on ``label.host:label.port`` and the
stage waits until every item of the project has ``label.overlap`` labels (or ``labels.wait_seconds``
passes: it then exits :data:`EXIT_WAITING`, and ``resume=true`` later picks up from the database).

Then the labels are exported as a TRL preferences dataset (``label.export.dir``), and the stage writes
``<run.dir>/labels/``: ``metrics.json`` (export summary and the admin tab's statistics: counts,
agreement, gold accuracy, safety flags), ``safety.json`` (how often the filter flags the chosen
response compared with the rejected one, with the ``labels.gate``), ``report.html`` and ``.hydra/``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from datasets import load_from_disk
from omegaconf import DictConfig

from alignment.acquisition import project_learning_curve, rerank_while_labelling
from alignment.config import Config, PromptSource, check_annotators
from alignment.data.world import DemoWorld
from alignment.errors import UserError
from alignment.gates import check_max, exit_status, summarise
from alignment.io import write_json_atomic
from alignment.reports.acquisition import acquisition_html
from alignment.reports.html import kv_table, table_html, write_report
from alignment.reports.run_report import RunReports
from alignment.reports.sections import gates_section
from alignment.safety import build_filter
from alignment.safety.eval import evaluate_preferences_safety
from alignment.stages.common import EXIT_WAITING, save_resolved_config, seed_everything, stage_dir, stage_main
from labeling_ui.agreement import project_stats
from labeling_ui.app import configured, launch
from labeling_ui.bots import run_bots
from labeling_ui.export import export_options, export_preferences
from labeling_ui.queue import LabelQueue
from labeling_ui.serving import free_port, wait_until_up
from labeling_ui.store import LabelStore

log = logging.getLogger(__name__)
STAGE = "labels"


def label_with_bots(cfg: Config, store: LabelStore, queue: LabelQueue) -> dict:
    """Serve the app on a free local port and let the bots label every item through its API."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call otherwise
    port = free_port()
    app = launch(store, queue, host="127.0.0.1", port=port, guidelines=cfg.label.guidelines, block=False)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url)
        b = cfg.label.bots
        log.info("%d simulated annotators labeling through %s (noise %.2f, position bias %.2f)",
                 b.n, url, b.noise, b.position_bias)
        return run_bots(store, url, n=b.n, noise=b.noise, position_bias=b.position_bias, max_labels=b.max_labels,
                        name_prefix=b.name_prefix, world_seed=cfg.data.world_seed, seed=cfg.seed)
    finally:
        app.close()


def wait_for_humans(cfg: Config, store: LabelStore, queue: LabelQueue) -> bool:
    """Serve the app for the team and wait until the project is fully labeled; False on timeout."""
    label = cfg.label
    if not store.annotators():
        raise UserError(f"annotators=human but {label.db} has no accounts: add them with "
                        f"`align-label add-user NAME --role annotator label.db={label.db}`")
    app = launch(store, queue, **configured(label, store), reports=RunReports(), block=False)
    deadline = None if cfg.labels.wait_seconds is None else time.monotonic() + cfg.labels.wait_seconds
    try:
        log.info("labeling is open on http://%s:%d/ (project %r): waiting for %d label(s) per item",
                 label.host, label.port, label.project, label.overlap)
        while (left := store.count_pending(label.project)) > 0:  # one count query: cheap to poll
            if deadline is not None and time.monotonic() > deadline:
                log.warning("%d item(s) still need labels; stopped waiting. Rerun with resume=true to go on.", left)
                return False
            log.info("%d item(s) still need labels", left)
            time.sleep(cfg.labels.poll_seconds)
        return True
    finally:
        app.close()


def gold_agreement(rows: list[dict], world: DemoWorld) -> dict:
    """How often the exported preference agrees with the demo world's hidden gold reward.

    Only pairs on demo-world prompts whose two answers differ in gold reward count: on those, a
    perfect annotator scores 1.0 and one with label noise ``p`` about ``1 - p``.
    """
    agree = judged = 0
    for row in rows:
        prompt = world.find(row["prompt"])
        if prompt is None:
            continue
        chosen, rejected = world.gold_reward(prompt, row["chosen"]), world.gold_reward(prompt, row["rejected"])
        if chosen != rejected:
            judged += 1
            agree += chosen > rejected
    return {"pairs": judged, "rate": agree / judged if judged else None}


def write_labels_report(out: Path, metrics: dict, safety: dict) -> None:
    stats, export = metrics["stats"], metrics["export"]
    agreement = {k: v for k, v in stats["agreement"].items() if k != "cohen_kappa"}
    sections = [
        ("Labels", kv_table({"annotators": metrics["annotators"], **stats["items"], **stats["labels"],
                             "agreement_with_gold_preference": metrics["gold_agreement"]["rate"],
                             "exported_pairs": export.get("rows_by_label", {}).get("chosen", 0)})),
        ("Agreement", kv_table(agreement) + table_html(
            ["annotators", "items both labeled", "Cohen's kappa", "raw agreement"],
            [(" & ".join(k["annotators"]), k["items"], k["kappa"], k["raw"]) for k in stats["agreement"]["cohen_kappa"]])),
        ("Annotators", table_html(["annotator", "labels", "gold accuracy", "picked first shown", "ties", "both bad"],
                                  [(name, a["labels"], a["gold_accuracy"], a["picked_first_shown"], a["ties"], a["both_bad"])
                                   for name, a in stats["per_annotator"].items()])),
        ("Safety flags by category", table_html(["category", "labels flagging it"],
                                                stats["safety_flags"]["by_category"].items())),
        ("Filter on the exported pairs", kv_table({k: (v["rate"] if isinstance(v, dict) else v)
                                                   for k, v in safety["preferences"].items()})),
        gates_section(safety["gates"]),
    ]
    candidates = out.parent / "candidates" / "metrics.json"
    acquisition = acquisition_html(json.loads(candidates.read_text()) if candidates.is_file() else None, metrics)
    if acquisition:
        sections.insert(-1, ("Acquisition", acquisition))
    write_report(out / "report.html", "Labels stage", sections)


def run(cfg: Config, raw: DictConfig) -> int:
    out = stage_dir(cfg, STAGE)
    label = cfg.label
    check_annotators(cfg)
    if not Path(label.db).is_file():
        raise UserError(f"label.db: {label.db} does not exist; run align-candidates first to queue pairs")
    store = LabelStore(label.db, synchronous=label.synchronous)
    if store.get_project(label.project) is None or not store.items(label.project):
        raise UserError(f"project {label.project!r} of {label.db} has no items; run align-candidates first")
    seed_everything(cfg.seed)
    save_resolved_config(raw, out)
    queue = LabelQueue(store, label.project, gold_rate=label.gold_rate, lease_seconds=label.lease_seconds)

    bots = None
    with rerank_while_labelling(store, label.project, stage_dir(cfg, "candidates"), cfg.labels.rerank_every,
                                cfg.seed) as reranks:
        if cfg.labels.annotators == "simulated":
            bots = label_with_bots(cfg, store, queue)
            if any("error" in b for b in bots["bots"]):
                raise RuntimeError(f"a simulated annotator failed: {[b for b in bots['bots'] if 'error' in b]}")
        elif not wait_for_humans(cfg, store, queue):
            return EXIT_WAITING

    export = export_preferences(store, label.project, label.export.dir, **export_options(label.export))
    stats = project_stats(store, label.project)
    rows = list(load_from_disk(label.export.dir))
    preferences = evaluate_preferences_safety(rows, build_filter(cfg.safety))
    gates = summarise([check_max("labels.gate.max_chosen_unsafe_rate", preferences["chosen_flagged_rejected_safe"],
                                 cfg.labels.gate.max_chosen_unsafe_rate)] if rows else [])
    safety = {"stage": STAGE, "filter": cfg.safety.backend, "preferences": preferences, "gates": gates}
    metrics = {"stage": STAGE, "annotators": cfg.labels.annotators, "db": label.db, "project": label.project,
               "dataset": label.export.dir, "export": export, "stats": stats, "bots": bots,
               "gold_agreement": gold_agreement(rows, DemoWorld(cfg.data.world_seed)), "reranks": reranks}
    if cfg.labels.learning_curve:
        world = DemoWorld(cfg.data.world_seed) if cfg.prompts.source == PromptSource.demo else None
        metrics["learning_curve"] = project_learning_curve(store, label.project, cfg.candidates.ensemble, cfg.seed,
                                                           world)
    write_json_atomic(out / "safety.json", safety)
    write_json_atomic(out / "metrics.json", metrics)
    write_labels_report(out, metrics, safety)
    log.info("%d labels on %d items; exported %d preference pairs to %s", stats["labels"]["total"],
             stats["items"]["total"], len(rows), label.export.dir)
    if not rows:
        raise UserError(f"the labels of project {label.project!r} gave no preference pairs (all ties or both bad?)")
    return exit_status(gates)


main = stage_main(STAGE, run)

if __name__ == "__main__":
    main()
