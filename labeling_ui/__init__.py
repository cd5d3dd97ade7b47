"""The labeling app: people (browser) and bots (HTTP API) compare two responses to a prompt.

Modules: :mod:`~labeling_ui.store` (SQLite: projects, items, annotators, assignments, labels),
:mod:`~labeling_ui.queue` (overlap, leases, gold items, A/B order, skip, undo),
:mod:`~labeling_ui.importer` (JSONL pairs and HH-RLHF transcripts), :mod:`~labeling_ui.export`
(TRL preferences dataset + summary), :mod:`~labeling_ui.agreement` (admin figures),
:mod:`~labeling_ui.app` (Gradio UI and bot API), :mod:`~labeling_ui.auth` (session revocation,
per-session logout, login throttle), :mod:`~labeling_ui.bots` (simulated annotators),
:mod:`~labeling_ui.cli` (``align-label``).

The candidates stage hands pairs over with::

    LabelStore(cfg.label.db).add_items(cfg.label.project, items, overlap=cfg.label.overlap,
                                       source="candidates", skip_existing=True)
"""
