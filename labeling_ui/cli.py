"""``align-label``: sub-commands over one Hydra config (``conf/label.yaml``).

    align-label SUB-COMMAND [options] [hydra.overrides ...]

A sub-command and its options are parsed by argparse; every ``key=value`` after them is a Hydra
override composed onto ``conf/label.yaml`` (so typos fail before any work, naming the key, like every
other stage). Without a positional sub-command, ``label.command`` decides (``align-label
label.command=serve`` works too).

    serve [--create]      start the web app for label.project (label.host, label.port; --host/--port
                          override them). The project must exist (import creates it); a name that
                          does not is an error listing the projects there are, unless --create
                          (an empty project with label.overlap)
    add-user NAME --role annotator|reviewer|admin [--password-stdin] [--update]
                          --update resets the password / role and ends the account's open sessions
    deactivate NAME       cut an account off: no login, its open sessions end at once
    reactivate NAME       let a deactivated account log in again
    import FILE [--gold] [--skip-invalid]     JSONL pairs or HH-RLHF transcripts (label.input); UTF-8,
                          texts up to label.max_text_chars characters
    export [--out DIR]    the TRL preferences dataset + summary.json (label.export.*); DIR may only be
                          a previous export's folder (or new, or empty): anything else is refused
    stats                 the admin tab's figures as JSON
    bots [--n N] [--url URL] [--max-labels K]  simulated annotators through the HTTP API (exit 1 when
                          a bot failed)
    migrate --to URL      copy the campaign of label.db (e.g. a SQLite file) into the empty database URL
                          (e.g. postgresql://user@host/db), checked by row counts and content hashes

label.db is a SQLite file (a path or sqlite:///PATH) or a PostgreSQL database (postgresql://USER@HOST/DB):
several ``serve`` processes on one PostgreSQL database serve one campaign (docs/labeling.md).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from typing import Any

from alignment.errors import UserError, config_error_line

log = logging.getLogger("align-label")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="align-label", description="The labeling app: serve, add-user, deactivate, reactivate, import, export, "
        "stats, bots, migrate. "
        "Hydra overrides (key=value, e.g. label.db=... run.dir=...) go after the sub-command.")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("serve", help="start the web app")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--create", action="store_true",
                   help="create label.project (empty, with label.overlap) when it does not exist")
    p = sub.add_parser("add-user", help="create an annotator or admin account")
    p.add_argument("name")
    p.add_argument("--role", choices=["annotator", "reviewer", "admin"], default="annotator")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.add_argument("--update", action="store_true",
                   help="reset the password / role of an existing account (ends its open sessions)")
    p = sub.add_parser("deactivate", help="cut an account off (no login; its open sessions end at once)")
    p.add_argument("name")
    p = sub.add_parser("reactivate", help="let a deactivated account log in again")
    p.add_argument("name")
    p = sub.add_parser("import", help="import pairs (JSONL) into label.project")
    p.add_argument("file", nargs="?")
    p.add_argument("--gold", action="store_true", help="the pairs are gold items (HH: the chosen is the answer)")
    p.add_argument("--skip-invalid", action="store_true", help="leave out bad lines instead of failing")
    p = sub.add_parser("export", help="write the preferences dataset")
    p.add_argument("--out")
    sub.add_parser("stats", help="print the admin figures as JSON")
    p = sub.add_parser("bots", help="run simulated annotators against a running server")
    p.add_argument("--n", type=int)
    p.add_argument("--url")
    p.add_argument("--max-labels", type=int)
    p = sub.add_parser("migrate", help="copy the campaign of label.db into another (empty) database")
    p.add_argument("--to", required=True, metavar="URL", help="the target database, e.g. postgresql://user@host/db")
    return parser


def compose(overrides: list[str]) -> Any:
    """``conf/label.yaml`` with overrides, as the schema's dataclasses: a bad key, type or choice fails
    naming the key, and so does a value out of range (the dataclasses' ``__post_init__``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from alignment import CONF_DIR
    from alignment.config import register_configs

    register_configs()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="align-label"):
            cfg = hydra_compose(config_name="label", overrides=overrides)
        return OmegaConf.to_object(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(f"config error: {config_error_line(e)}") from None


def _store(cfg: Any):
    from labeling_ui.store import LabelStore
    return LabelStore(cfg.label.db, synchronous=cfg.label.synchronous)


def _queue(cfg: Any, store: Any, *, create: bool = False):
    """The queue of ``label.project``; a project that does not exist is an error naming those that do
    (a typo must not serve an empty project), unless ``create``."""
    from labeling_ui.queue import LabelQueue
    if create:
        store.ensure_project(cfg.label.project, cfg.label.overlap)
    elif store.get_project(cfg.label.project) is None:
        known = store.project_names()
        raise UserError(f"label.project: no project named {cfg.label.project!r} in {cfg.label.db} "
                        f"(projects there: {', '.join(map(repr, known)) if known else 'none'}); pick one with "
                        "label.project=NAME, import items into a new one, or pass --create to serve it empty")
    return LabelQueue(store, cfg.label.project, gold_rate=cfg.label.gold_rate,
                      lease_seconds=cfg.label.lease_seconds, seed=cfg.seed)


def export_options(cfg: Any) -> dict[str, Any]:
    e = cfg.label.export
    return dict(keep_ties=e.keep_ties, keep_both_bad=e.keep_both_bad, min_labels=e.min_labels,
                include_gold=e.include_gold, margins=list(e.margins))


def run(command: str, args: argparse.Namespace, cfg: Any) -> int:
    label = cfg.label
    if command == "serve":
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        from labeling_ui.app import launch, read_guidelines
        from labeling_ui.export import export_preferences
        store = _store(cfg)
        queue = _queue(cfg, store, create=getattr(args, "create", False))
        if not store.annotators():
            log.warning("no accounts yet: add one with `align-label add-user NAME --role admin label.db=%s`", label.db)
        host = getattr(args, "host", None) or label.host
        port = getattr(args, "port", None) or label.port
        log.info("serving project %s from %s on http://%s:%d/", label.project, label.db, host, port)
        launch(store, queue, host=host, port=port,
               guidelines=read_guidelines(label.guidelines, label.guidelines_file),
               export_fn=lambda: export_preferences(store, label.project, label.export.dir, **export_options(cfg)),
               concurrency_limit=label.concurrency_limit, max_threads=label.max_threads, runs_dir=label.runs_dir,
               reports_for=label.reports_for.value,
               block=True)
        return 0
    if command == "add-user":
        if not hasattr(args, "name"):
            raise UserError("add-user needs a name: align-label add-user NAME --role annotator|reviewer|admin")
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass(f"password for {args.name}: ")
            if getpass.getpass("again: ") != password:
                raise UserError("the two passwords differ")
        store = _store(cfg)
        a = store.add_annotator(args.name, password, args.role, update=args.update)
        log.info("%s account %r ready in %s%s", a.role, a.name, label.db,
                 "; its open sessions are revoked" if args.update else "")
        return 0
    if command in ("deactivate", "reactivate"):
        if not hasattr(args, "name"):
            raise UserError(f"{command} needs a name: align-label {command} NAME")
        store = _store(cfg)
        (store.deactivate_annotator if command == "deactivate" else store.reactivate_annotator)(args.name)
        return 0
    if command == "import":
        from labeling_ui.importer import import_file
        path = getattr(args, "file", None) or label.input
        if not path:
            raise UserError("import: give a FILE (or label.input=PATH)")
        skipped: list[str] = []
        store = _store(cfg)
        n = import_file(store, label.project, path, overlap=label.overlap,
                        as_gold=getattr(args, "gold", False) or label.import_as_gold,
                        skip_invalid=getattr(args, "skip_invalid", False) or label.skip_invalid, skipped=skipped,
                        max_text_chars=label.max_text_chars)
        for msg in skipped[:20]:
            log.warning("skipped %s", msg)
        if len(skipped) > 20:
            log.warning("... and %d more skipped line(s)", len(skipped) - 20)
        log.info("imported %d item(s) into project %s (%s)%s", n, label.project, label.db,
                 f"; skipped {len(skipped)} bad line(s)" if skipped else "")
        return 0
    if command == "export":
        from labeling_ui.export import export_preferences
        out = getattr(args, "out", None) or label.export.dir
        summary = export_preferences(_store(cfg), label.project, out, **export_options(cfg))
        print(json.dumps(summary, indent=2))
        return 0
    if command == "stats":
        from labeling_ui.agreement import project_stats
        print(json.dumps(project_stats(_store(cfg), label.project), indent=2))
        return 0
    if command == "bots":
        from labeling_ui.bots import run_bots
        b = label.bots
        n = getattr(args, "n", None) or b.n
        url = getattr(args, "url", None) or b.url
        max_labels = getattr(args, "max_labels", None) or b.max_labels
        results = run_bots(_store(cfg), url, n=n, noise=b.noise, position_bias=b.position_bias,
                           max_labels=max_labels, name_prefix=b.name_prefix, world_seed=cfg.data.world_seed,
                           seed=cfg.seed)
        print(json.dumps(results, indent=2))
        failed = [r.get("name", "?") for r in results["bots"] if "error" in r]
        if failed:
            log.error("%d of %d bot(s) failed (%s): is the server up at %s?", len(failed), len(results["bots"]),
                      ", ".join(failed), url)
            return 1
        return 0
    if command == "migrate":
        from labeling_ui.migrate import copy_campaign
        from labeling_ui.store import LabelStore, database_url
        target_url = getattr(args, "to", None)
        if not target_url:
            raise UserError("migrate needs a target: align-label migrate --to postgresql://USER@HOST/DB")
        if database_url(target_url)[1] == database_url(label.db)[1]:
            raise UserError(f"migrate: --to names the source database itself ({label.db})")
        source = _store(cfg)
        target = LabelStore(target_url)
        try:
            print(json.dumps(copy_campaign(source, target), indent=2))
        finally:
            source.close()
            target.close()
        return 0
    raise AssertionError(f"align-label: sub-command {command!r} has no handler")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)      # one line per HTTP request otherwise
    # Split: argparse takes the sub-command and its options; key=value tokens are Hydra overrides.
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    rest = [a for a in argv if a not in overrides]
    args = _parser().parse_args(rest)
    try:
        cfg = compose(overrides)
        command = args.command or cfg.label.command
        code = run(command, args, cfg)
    except UserError as e:
        log.error("%s", e)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
