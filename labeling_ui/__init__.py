"""The labeling app: people (browser) and bots (HTTP API) compare two responses to a prompt.

A package of its own: from the pipeline it imports only what a labeling tool needs by itself (errors,
the safety categories, the demo world for the bots, the data formats it reads); the pipeline imports
it, never the reverse, and hands it what it needs of the pipeline (the config, the run reports).

Where things are:

* data: :mod:`~labeling_ui.db` (the SQLite and PostgreSQL engines), :mod:`~labeling_ui.store` (projects,
  items, annotators, labels, sessions), :mod:`~labeling_ui.schema` and ``migrations/`` (the schema),
  :mod:`~labeling_ui.passwords`, :mod:`~labeling_ui.queue` (overlap, leases, gold items, A/B order, skip,
  undo), :mod:`~labeling_ui.review` (adjudication, pausing annotators);
* in and out: :mod:`~labeling_ui.importer` (JSONL pairs and HH-RLHF transcripts), :mod:`~labeling_ui.export`
  (TRL preferences dataset + summary), :mod:`~labeling_ui.migrate` (SQLite into PostgreSQL);
* figures: :mod:`~labeling_ui.agreement` (statistics, agreement), :mod:`~labeling_ui.campaign` (item
  browser, annotator quality);
* the web app: :mod:`~labeling_ui.app` (assembles the page and serves it), :mod:`~labeling_ui.access` (who
  may do what), :mod:`~labeling_ui.tabs` (one module per tab: label, review, admin, reports),
  :mod:`~labeling_ui.views` (tables and item views), :mod:`~labeling_ui.render` (model text),
  :mod:`~labeling_ui.i18n` (every string, English and Chinese), :mod:`~labeling_ui.guidelines`,
  ``static/`` (the page's script and style sheet), :mod:`~labeling_ui.api` (the bot API),
  :mod:`~labeling_ui.auth` (sessions, logout, login throttle), :mod:`~labeling_ui.http` (routes and headers);
* bots and commands: :mod:`~labeling_ui.bots` (simulated annotators), :mod:`~labeling_ui.cli` (the
  sub-commands of ``align-label``, whose entry point :mod:`alignment.labeling` composes the config).

The candidates stage hands pairs over with::

    LabelStore(cfg.label.db).add_items(cfg.label.project, items, overlap=cfg.label.overlap,
                                       source="candidates", skip_existing=True)
"""
