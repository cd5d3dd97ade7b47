"""``align-label``'s sub-commands over one config (``conf/label.yaml``).

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

This module runs the sub-commands on a config it is handed; composing that config (the pipeline's
Hydra schema) and the Reports tab's renderer come from the ``align-label`` entry point,
:mod:`alignment.labeling`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alignment.errors import UserError

if TYPE_CHECKING:       # the sub-commands other than serve never import the UI
    from labeling_ui.tabs.reports import RunReports

log = logging.getLogger("align-label")


def parser() -> argparse.ArgumentParser:
    """The sub-commands and their options (Hydra overrides are split off before this parses)."""
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


@dataclass
class Call:
    """One sub-command's inputs: its parsed options, the composed config (``label`` and the run's
    ``seed`` and ``data.world_seed``), and what makes the Reports tab's renderer (``serve``; ``None``: no
    Reports tab)."""

    args: argparse.Namespace
    cfg: Any
    reports: Callable[[], RunReports] | None = None

    def option(self, name: str, default: Any = None) -> Any:
        """A command-line option when given, else ``default`` (the config's value)."""
        return getattr(self.args, name, None) or default


def open_store(cfg: Any):
    from labeling_ui.store import LabelStore
    return LabelStore(cfg.label.db, synchronous=cfg.label.synchronous)


def open_queue(cfg: Any, store: Any, *, create: bool = False):
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


def serve(call: Call) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from labeling_ui.app import configured, launch

    label = call.cfg.label
    store = open_store(call.cfg)
    queue = open_queue(call.cfg, store, create=call.option("create", False))
    if not store.annotators():
        log.warning("no accounts yet: add one with `align-label add-user NAME --role admin label.db=%s`", label.db)
    host, port = call.option("host", label.host), call.option("port", label.port)
    log.info("serving project %s from %s on http://%s:%d/", label.project, label.db, host, port)
    launch(store, queue, **{**configured(label, store), "host": host, "port": port},
           reports=call.reports() if call.reports is not None else None, block=True)
    return 0


def add_user(call: Call) -> int:
    args, label = call.args, call.cfg.label
    if not hasattr(args, "name"):
        raise UserError("add-user needs a name: align-label add-user NAME --role annotator|reviewer|admin")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise UserError("the two passwords differ")
    a = open_store(call.cfg).add_annotator(args.name, password, args.role, update=args.update)
    log.info("%s account %r ready in %s%s", a.role, a.name, label.db,
             "; its open sessions are revoked" if args.update else "")
    return 0


def set_active(active: bool) -> Callable[[Call], int]:
    command = "reactivate" if active else "deactivate"

    def handler(call: Call) -> int:
        if not hasattr(call.args, "name"):
            raise UserError(f"{command} needs a name: align-label {command} NAME")
        store = open_store(call.cfg)
        (store.reactivate_annotator if active else store.deactivate_annotator)(call.args.name)
        return 0
    return handler


def import_pairs(call: Call) -> int:
    from labeling_ui.importer import import_file

    label = call.cfg.label
    path = call.option("file", label.input)
    if not path:
        raise UserError("import: give a FILE (or label.input=PATH)")
    skipped: list[str] = []
    n = import_file(open_store(call.cfg), label.project, path, overlap=label.overlap,
                    as_gold=call.option("gold", label.import_as_gold),
                    skip_invalid=call.option("skip_invalid", label.skip_invalid), skipped=skipped,
                    max_text_chars=label.max_text_chars)
    for msg in skipped[:20]:
        log.warning("skipped %s", msg)
    if len(skipped) > 20:
        log.warning("... and %d more skipped line(s)", len(skipped) - 20)
    log.info("imported %d item(s) into project %s (%s)%s", n, label.project, label.db,
             f"; skipped {len(skipped)} bad line(s)" if skipped else "")
    return 0


def export(call: Call) -> int:
    from labeling_ui.export import export_options, export_preferences

    label = call.cfg.label
    summary = export_preferences(open_store(call.cfg), label.project, call.option("out", label.export.dir),
                                 **export_options(label.export))
    print(json.dumps(summary, indent=2))
    return 0


def stats(call: Call) -> int:
    from labeling_ui.agreement import project_stats

    print(json.dumps(project_stats(open_store(call.cfg), call.cfg.label.project), indent=2))
    return 0


def bots(call: Call) -> int:
    from labeling_ui.bots import run_bots

    b = call.cfg.label.bots
    url = call.option("url", b.url)
    results = run_bots(open_store(call.cfg), url, n=call.option("n", b.n), noise=b.noise,
                       position_bias=b.position_bias, max_labels=call.option("max_labels", b.max_labels),
                       name_prefix=b.name_prefix, world_seed=call.cfg.data.world_seed, seed=call.cfg.seed)
    print(json.dumps(results, indent=2))
    failed = [r.get("name", "?") for r in results["bots"] if "error" in r]
    if failed:
        log.error("%d of %d bot(s) failed (%s): is the server up at %s?", len(failed), len(results["bots"]),
                  ", ".join(failed), url)
        return 1
    return 0


def migrate(call: Call) -> int:
    from labeling_ui.migrate import copy_campaign
    from labeling_ui.store import LabelStore, database_url

    db = call.cfg.label.db
    target_url = call.option("to")
    if not target_url:
        raise UserError("migrate needs a target: align-label migrate --to postgresql://USER@HOST/DB")
    if database_url(target_url)[1] == database_url(db)[1]:
        raise UserError(f"migrate: --to names the source database itself ({db})")
    source = open_store(call.cfg)
    target = LabelStore(target_url)
    try:
        print(json.dumps(copy_campaign(source, target), indent=2))
    finally:
        source.close()
        target.close()
    return 0


#: Each sub-command's handler (``label.command`` names them too).
COMMANDS: dict[str, Callable[[Call], int]] = {
    "serve": serve, "add-user": add_user, "deactivate": set_active(False), "reactivate": set_active(True),
    "import": import_pairs, "export": export, "stats": stats, "bots": bots, "migrate": migrate,
}


def main(argv: list[str] | None, compose: Callable[[list[str]], Any],
         reports: Callable[[], RunReports] | None = None) -> int:
    """Run ``argv`` (sub-command, options, then ``key=value`` overrides) on the config ``compose`` builds
    from the overrides, ``serve`` with the Reports tab ``reports()`` draws; exit status 2 and one line for
    bad input (:class:`UserError`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)      # one line per HTTP request otherwise
    # Split: argparse takes the sub-command and its options; key=value tokens are Hydra overrides.
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    args = parser().parse_args([a for a in argv if a not in overrides])
    try:
        cfg = compose(overrides)
        return COMMANDS[str(args.command or cfg.label.command)](Call(args, cfg, reports))
    except UserError as e:
        log.error("%s", e)
        return 2
    except KeyboardInterrupt:
        return 130
