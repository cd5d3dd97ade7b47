"""The labeling web app: a Gradio Blocks UI for people, and a small JSON API for bots.

Security model
--------------
* Login through Gradio's ``auth=`` with a callable that checks the store (scrypt hashes); accounts are
  made by ``align-label add-user``, never in code. Every route but the login page answers 401 without
  the auth cookie.
* Every handler resolves the caller from ``gr.Request.username`` on the server and acts only on that
  annotator's assignments and labels; admin handlers re-check the role on every call (hiding the
  admin tab is cosmetic). A client cannot name another annotator anywhere.
* Model and user text is rendered with ``gr.Markdown(sanitize_html=True)`` after HTML-escaping it
  outside code spans, so ``<script>`` or ``<img onerror=...>`` show as text and run nothing; images are
  not loaded (``![..](..)`` is shown as text too). ``gr.HTML`` is used once, for the Reports tab, and
  never with model text in it directly: see :func:`report_frame`.
* The Reports tab (any logged-in user) lists the pipeline runs under ``runs_dir`` and shows the selected
  run's alignment eval report (``alignment.reports.run_report``): a page we generate with every model
  text escaped. It is shown in an ``<iframe sandbox srcdoc=...>`` rather than served by a route: the
  page travels through the same authenticated event channel as everything else (Gradio's file route
  needs ``allowed_paths`` and serves HTML as a download, and a route of our own would need its own
  login check), the handler re-checks the caller and only opens runs it listed itself, and the empty
  ``sandbox`` gives the page no scripts and an opaque origin, so even a missed escape could not run
  code in, or read from, the app.

The bot API (``POST /gradio_api/run/<name>`` with ``{"data": [...]}`` and the login cookie; unqueued
fast paths; ``A`` / ``B`` / ``response_a`` / ``response_b`` are *display* positions, first / second):

* ``next_item()`` -> ``{"assignment", "prompt", "response_a", "response_b", "expires_at"}`` or
  ``{"assignment": null, "done": true}``
* ``submit_label(assignment, choice, strength, flags_a, flags_b, note, time_ms)`` ->
  ``{"ok", "label_id", "next": <next_item>}`` (``choice``: ``A|B|tie|both_bad``; strength 1-4 for A/B)
* ``skip_item(assignment)`` / ``undo_label()`` -> ``{"ok", "next": <item>}``
* ``my_progress()`` -> the caller's own counts.
"""

import html
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Gradio enters a matplotlib backend context on every event; an unset backend makes matplotlib probe
# GUI toolkits each time (a large share of a request's CPU). The server never draws on screen.
os.environ.setdefault("MPLBACKEND", "agg")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import anyio  # noqa: E402
import gradio as gr  # noqa: E402

from alignment.errors import UserError
from alignment.reports.run_data import build_run_report, list_runs, report_is_current
from alignment.reports.run_report import render_run_report
from alignment.safety.categories import CATEGORIES
from labeling_ui.agreement import project_stats
from labeling_ui.queue import LabelQueue, QueueError, Shown
from labeling_ui.store import Annotator, LabelStore

log = logging.getLogger(__name__)

STRENGTHS = [("1 · negligibly better / unsure", 1), ("2 · slightly better", 2), ("3 · better", 3),
             ("4 · significantly better", 4)]

HEAD = """
<script>
(() => {
  // Keyboard shortcuts: 1 A, 2 B, 3 tie, 4 both bad, s skip, u undo; q w e r pick the strength 1-4.
  const buttons = {"1": "btn-a", "2": "btn-b", "3": "btn-tie", "4": "btn-both-bad", "s": "btn-skip", "u": "btn-undo"};
  const strengths = {"q": 0, "w": 1, "e": 2, "r": 3};
  const typing = (el) => el && (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
    (el.tagName === "INPUT" && !["checkbox", "radio", "button", "submit"].includes((el.type || "").toLowerCase())));
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat || typing(ev.target)) return;
    const key = (ev.key || "").toLowerCase();
    if (key in buttons) {
      const el = document.getElementById(buttons[key]);
      if (el && el.offsetParent !== null && !el.disabled) { ev.preventDefault(); el.click(); }
    } else if (key in strengths) {
      const radios = document.querySelectorAll("#strength input[type=radio]");
      const el = radios[strengths[key]];
      if (el) { ev.preventDefault(); el.click(); }
    }
  });
})();
</script>
"""

CSS = """
.response-box { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 12px;
                min-height: 8em; overflow-wrap: anywhere; }
#prompt { border-left: 4px solid var(--color-accent); padding-left: 12px; overflow-wrap: anywhere; }
.run-report { width: 100%; height: 80vh; border: 1px solid var(--border-color-primary); border-radius: 8px; }
"""

_CODE = re.compile(r"(```.*?```|`[^`\n]+`)", re.DOTALL)


def safe_markdown(text: str) -> str:
    """Markdown source that shows ``text`` with any HTML as literal text.

    ``<``, ``>`` and ``&`` are escaped outside code spans/blocks (inside them Markdown already shows text
    verbatim), and ``![alt](url)`` loses its ``!`` so no remote image is fetched. The Markdown component's
    own sanitiser (``sanitize_html=True``) stays on as a second line of defence.
    """
    parts = _CODE.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:          # a code span or block: shown verbatim
            out.append(part)
        else:
            part = html.escape(part, quote=False)
            part = part.replace("![", "!\\[")
            out.append(part)
    return "".join(out)


def render_prompt(prompt: str) -> str:
    """The prompt as Markdown; an HH-RLHF transcript becomes one paragraph per turn."""
    if "\n\nHuman:" in prompt or prompt.lstrip().startswith("Human:"):
        turns = re.split(r"\n\n(?=(?:Human|Assistant):)", prompt.strip())
        rendered = []
        for turn in turns:
            speaker, _, said = turn.partition(":")
            rendered.append(f"**{speaker.strip()}:** {safe_markdown(said.strip())}")
        return "\n\n".join(rendered)
    return safe_markdown(prompt)


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3f}"
        return safe_markdown(str(v)).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def stats_markdown(stats: dict[str, Any]) -> str:
    it, lab, ag = stats["items"], stats["labels"], stats["agreement"]
    out = [f"### Project `{safe_markdown(stats['project'])}` (overlap {stats['overlap']})",
           _md_table(["items", "complete", "in progress", "untouched", "gold", "active leases", "skips"],
                     [[it["total"], it["complete"], it["in_progress"], it["untouched"], it["gold"],
                       it["active_leases"], it["skips"]]]),
           f"\n**Labels:** {lab['total']} ({lab['regular']} regular, {lab['gold']} on gold items); choices "
           + ", ".join(f"{k}: {v}" for k, v in sorted(lab["choices"].items())),
           "\n### Per annotator",
           _md_table(["annotator", "labels", "last hour", "median s/label", "gold accuracy (n)",
                      "picked first shown", "ties", "both bad"],
                     [[n, a["labels"], a["last_hour"], a["median_time_s"],
                       (f"{a['gold_accuracy']:.2f} ({a['gold_labels']})" if a["gold_accuracy"] is not None else None),
                       a["picked_first_shown"], a["ties"], a["both_bad"]]
                      for n, a in stats["per_annotator"].items()]),
           "\n### Labels per hour (last 24 h)",
           _md_table(["hour", "labels"], [[h, n] for h, n in stats["per_hour"].items()]),
           "\n### Agreement",
           _md_table(["label pairs", "raw (with ties)", "pairs without ties", "raw (without ties)",
                      "Krippendorff's α (ordinal strength)"],
                     [[ag["pairs"], ag["with_ties"], ag["pairs_without_ties"], ag["without_ties"],
                       ag["krippendorff_alpha_ordinal"]]]),
           "\n**Cohen's κ per annotator pair**",
           _md_table(["annotators", "shared items", "κ", "raw"],
                     [[" / ".join(k["annotators"]), k["items"], k["kappa"], k["raw"]] for k in ag["cohen_kappa"]]),
           "\n### Safety flags",
           f"Labels with any flag: {stats['safety_flags']['a_or_b_flagged_labels']}\n",
           _md_table(["category", "labels flagging it"],
                     [[c, n] for c, n in stats["safety_flags"]["by_category"].items() if n])]
    return "\n".join(out)


def report_frame(page: str) -> str:
    """A report page (our own, escaped HTML) as a sandboxed ``<iframe>``: the whole page goes into the
    ``srcdoc`` attribute, escaped once more so that it cannot end the attribute, and the empty
    ``sandbox`` runs no script in it and gives it no access to the app's origin."""
    return (f'<iframe class="run-report" title="Alignment eval report" sandbox="" referrerpolicy="no-referrer" '
            f'srcdoc="{html.escape(page, quote=True)}"></iframe>')


def runs_markdown(runs_dir: Path, reports: dict[str, dict[str, Any]]) -> str:
    """The Reports tab's list of runs: status and the headline figures of each."""
    if not reports:
        return f"No pipeline runs under `{safe_markdown(str(runs_dir))}` yet (`label.runs_dir`)."
    rows = []
    for name, r in reports.items():
        h = r["headline"]
        unsafe = f"{_num(h['unsafe_rate_sft'])} → {_num(h['unsafe_rate_ppo'])}"
        rows.append([name, r["status"], h["gold_win_rate"], unsafe, h["rm_eval_accuracy"], h["final_kl"]])
    return _md_table(["run", "status", "gold win rate (PPO vs SFT)", "unsafe rate SFT → PPO", "RM eval accuracy",
                      "final KL"], rows)


def _num(v: Any) -> str:
    return "–" if v is None else f"{v:.3f}"


def build_app(store: LabelStore, queue: LabelQueue, *, guidelines: str = "",
              export_fn: Callable[[], dict[str, Any]] | None = None, runs_dir: str | Path = "runs") -> gr.Blocks:
    """The Blocks app (not launched). ``export_fn`` runs the export for the admin tab's button;
    ``runs_dir`` is the folder whose pipeline runs the Reports tab lists."""
    runs_root = Path(runs_dir)

    def user(request: gr.Request | None) -> Annotator:
        name = getattr(request, "username", None) if request is not None else None
        annotator = store.annotator(name)
        if annotator is None:
            raise gr.Error("Not logged in.", print_exception=False)
        return annotator

    def admin(request: gr.Request | None) -> Annotator:
        annotator = user(request)
        if not annotator.is_admin:
            raise gr.Error("Admins only.", print_exception=False)
        return annotator

    # ------------------------------------------------------------------ UI helpers
    def progress_md(name: str) -> str:
        p = queue.progress(name)
        return (f"**{safe_markdown(name)}** · your labels: **{p['labeled']}** (last 24 h: {p['labeled_24h']}, "
                f"skipped: {p['skipped']}) · project: {p['project_complete']}/{p['project_items']} items complete")

    def item_outputs(name: str, shown: Shown | None, status: str = "") -> tuple:
        if shown is None:
            view = (None, "### All done: nothing left to label for you right now. Thank you!", "", "")
        else:
            view = (shown.assignment_id, render_prompt(shown.prompt), safe_markdown(shown.response_left),
                    safe_markdown(shown.response_right))
        return (*view, gr.update(value=None), [], [], "", progress_md(name), status)

    def keep_outputs(name: str, status: str) -> tuple:
        return (gr.skip(),) * 8 + (progress_md(name), status)

    # ------------------------------------------------------------------ UI handlers
    def on_load(request: gr.Request):
        me = user(request)
        shown = queue.next_item(me.name)
        return (*item_outputs(me.name, shown), gr.update(visible=me.is_admin),
                f"Signed in as **{safe_markdown(me.name)}** ({me.role})")

    def label_handler(choice: str):
        def handler(assignment, strength, flags_left, flags_right, note, request: gr.Request):
            me = user(request)
            if assignment is None:
                return keep_outputs(me.name, "Nothing to label.")
            try:
                label_id, shown = queue.submit(me.name, assignment, choice, strength, flags_left or [],
                                               flags_right or [], note or "")
            except QueueError as e:
                if "strength" in str(e):
                    return keep_outputs(me.name, f"⚠️ {e}")
                return item_outputs(me.name, queue.next_item(me.name), f"⚠️ {e}")
            return item_outputs(me.name, shown, f"Saved label #{label_id} ({choice}).")
        handler.__name__ = f"label_{choice}"
        return handler

    def on_skip(assignment, request: gr.Request):
        me = user(request)
        if assignment is None:
            return keep_outputs(me.name, "Nothing to skip.")
        try:
            shown = queue.skip(me.name, assignment)
        except QueueError as e:
            return item_outputs(me.name, queue.next_item(me.name), f"⚠️ {e}")
        return item_outputs(me.name, shown, "Skipped.")

    def on_undo(request: gr.Request):
        me = user(request)
        return item_outputs(me.name, queue.undo(me.name), "Undid your last label: label this item again.")

    def on_refresh(request: gr.Request):
        admin(request)
        return stats_markdown(project_stats(store, queue.project_name))

    def on_export(request: gr.Request):
        admin(request)
        if export_fn is None:
            raise gr.Error("Export is not configured for this server.")
        summary = export_fn()
        return ("Exported **{}** rows to `{}`.\n\n```json\n{}\n```".format(
            summary["rows"], summary.get("path", "?"), json.dumps(summary, indent=2)))

    def runs_by_name() -> dict[str, Path]:
        return {path.relative_to(runs_root).as_posix(): path for path in list_runs(runs_root)}

    def on_runs(request: gr.Request):
        user(request)
        reports = {}
        for name, path in runs_by_name().items():
            try:
                reports[name] = build_run_report(path)
            except UserError:
                continue  # removed or emptied since it was listed
        return runs_markdown(runs_root, reports), gr.update(choices=list(reports))

    def on_pick_run(name: str | None, request: gr.Request):
        user(request)
        path = runs_by_name().get(name or "")  # only a run we list ourselves: never a path from the client
        if path is None:
            return "", "Pick a run to read its report."
        if report_is_current(path):
            page, note = (path / "report.html").read_text(encoding="utf-8"), "report.html"
        else:
            try:
                page = render_run_report(build_run_report(path))
            except UserError as e:
                return "", f"⚠️ {safe_markdown(str(e))}"
            note = "rendered now (report.html is missing or older than the run's outputs)"
        return report_frame(page), f"Run **{safe_markdown(name)}**: {note}."

    # ------------------------------------------------------------------ bot API (unqueued fast paths)
    # These run on the event loop itself (async def, no thread hop): a call is a few sub-millisecond
    # SQLite statements, and writes are serialised anyway, so a pool of threads fighting over the
    # GIL and the write lock only adds latency. (A long import by another process holding the write
    # lock stalls them until it commits; busy_timeout bounds that.)
    def item_json(shown: Shown | None) -> dict[str, Any]:
        if shown is None:
            return {"assignment": None, "done": True}
        return {"assignment": shown.assignment_id, "prompt": shown.prompt, "response_a": shown.response_left,
                "response_b": shown.response_right, "expires_at": shown.expires_at}

    async def next_item(request: gr.Request) -> dict:
        """The caller's current item (a new lease when needed)."""
        me = user(request)
        return item_json(queue.next_item(me))

    async def submit_label(request: gr.Request, assignment: int, choice: str, strength: int | None = None,
                           flags_a: list[str] | None = None, flags_b: list[str] | None = None, note: str = "",
                           time_ms: int | None = None) -> dict:
        """Label the caller's assignment (A/B = first/second shown); returns the label id and the next item."""
        me = user(request)
        try:
            label_id, shown = queue.submit(me, assignment, choice, strength, flags_a or [], flags_b or [],
                                           note or "", time_ms=time_ms if isinstance(time_ms, int) else None)
        except QueueError as e:
            return {"ok": False, "error": str(e), "next": item_json(queue.next_item(me))}
        return {"ok": True, "label_id": label_id, "next": item_json(shown)}

    async def skip_item(request: gr.Request, assignment: int) -> dict:
        """Skip the caller's assignment; returns the next item."""
        me = user(request)
        try:
            return {"ok": True, "next": item_json(queue.skip(me, assignment))}
        except QueueError as e:
            return {"ok": False, "error": str(e), "next": item_json(queue.next_item(me))}

    async def undo_label(request: gr.Request) -> dict:
        """Undo the caller's last label; its item is returned as the current one."""
        me = user(request)
        return {"ok": True, "next": item_json(queue.undo(me))}

    async def my_progress(request: gr.Request) -> dict:
        """The caller's own progress counts."""
        return queue.progress(user(request))

    # ------------------------------------------------------------------ layout
    with gr.Blocks(title="Preference labeling", analytics_enabled=False) as demo:
        assignment = gr.State(None)
        with gr.Row():
            whoami = gr.Markdown(elem_id="whoami")
            gr.Button("Log out", link="/logout", size="sm", scale=0, elem_id="btn-logout")
        progress = gr.Markdown(elem_id="progress")
        with gr.Tabs():
            with gr.Tab("Label", id="label", elem_id="tab-label"):
                with gr.Accordion("Guidelines", open=False, elem_id="guidelines"):
                    gr.Markdown(guidelines or "No guidelines configured (label.guidelines).")
                gr.Markdown("#### Prompt")
                prompt_md = gr.Markdown(elem_id="prompt", latex_delimiters=[], sanitize_html=True)
                with gr.Row(equal_height=False):
                    with gr.Column():
                        gr.Markdown("#### Response A")
                        left_md = gr.Markdown(elem_id="response-a", elem_classes=["response-box"],
                                              latex_delimiters=[], sanitize_html=True)
                        flags_left = gr.CheckboxGroup(list(CATEGORIES), label="Safety flags for A",
                                                      elem_id="flags-a")
                    with gr.Column():
                        gr.Markdown("#### Response B")
                        right_md = gr.Markdown(elem_id="response-b", elem_classes=["response-box"],
                                               latex_delimiters=[], sanitize_html=True)
                        flags_right = gr.CheckboxGroup(list(CATEGORIES), label="Safety flags for B",
                                                       elem_id="flags-b")
                strength = gr.Radio(STRENGTHS, value=None, label="How much better? (keys q w e r)",
                                    elem_id="strength")
                with gr.Row():
                    btn_a = gr.Button("A is better (1)", variant="primary", elem_id="btn-a")
                    btn_b = gr.Button("B is better (2)", variant="primary", elem_id="btn-b")
                    btn_tie = gr.Button("Tie (3)", elem_id="btn-tie")
                    btn_bad = gr.Button("Both bad (4)", elem_id="btn-both-bad")
                note = gr.Textbox(label="Note (optional)", lines=1, max_lines=4, elem_id="note")
                with gr.Row():
                    btn_skip = gr.Button("Skip (s)", size="sm", elem_id="btn-skip")
                    btn_undo = gr.Button("Undo last label (u)", size="sm", elem_id="btn-undo")
                status = gr.Markdown(elem_id="status")
            with gr.Tab("Admin", id="admin", visible=False, elem_id="tab-admin") as admin_tab:
                btn_refresh = gr.Button("Refresh stats", elem_id="btn-refresh")
                btn_export = gr.Button("Export preferences dataset", variant="primary", elem_id="btn-export")
                export_md = gr.Markdown(elem_id="export-result")
                stats_md = gr.Markdown(elem_id="admin-stats")
            with gr.Tab("Reports", id="reports", elem_id="tab-reports") as reports_tab:
                gr.Markdown("Alignment eval reports of the pipeline runs: pick a run to read its report "
                            "(`align-report RUN_DIR` writes the same page to the run directory).")
                btn_runs = gr.Button("Refresh runs", size="sm", elem_id="btn-runs-refresh")
                runs_md = gr.Markdown(elem_id="runs-list")
                run_pick = gr.Dropdown(choices=[], value=None, label="Run", elem_id="run-pick")
                report_note = gr.Markdown(elem_id="report-note")
                report_view = gr.HTML(elem_id="run-report", js_on_load=None)

        item_out = [assignment, prompt_md, left_md, right_md, strength, flags_left, flags_right, note, progress,
                    status]
        ui = dict(api_visibility="private", show_progress="hidden")
        demo.load(on_load, None, [*item_out, admin_tab, whoami], **ui)
        label_in = [assignment, strength, flags_left, flags_right, note]
        for button, choice in ((btn_a, "A"), (btn_b, "B"), (btn_tie, "tie"), (btn_bad, "both_bad")):
            button.click(label_handler(choice), label_in, item_out, **ui)
        btn_skip.click(on_skip, [assignment], item_out, **ui)
        btn_undo.click(on_undo, None, item_out, **ui)
        btn_refresh.click(on_refresh, None, [stats_md], **ui)
        admin_tab.select(on_refresh, None, [stats_md], **ui)
        btn_export.click(on_export, None, [export_md], **ui)
        reports_tab.select(on_runs, None, [runs_md, run_pick], **ui)
        btn_runs.click(on_runs, None, [runs_md, run_pick], **ui)
        run_pick.change(on_pick_run, [run_pick], [report_view, report_note], api_visibility="private",
                        show_progress="minimal")

        for fn in (next_item, submit_label, skip_item, undo_label, my_progress):
            gr.api(fn, api_name=fn.__name__, queue=False)
    return demo


def make_auth(store: LabelStore) -> Callable:
    """Gradio's ``auth=`` callable: scrypt checks run in a worker thread, not on the event loop."""
    async def auth(username: str, password: str) -> bool:
        return await anyio.to_thread.run_sync(store.check_password, username, password)
    return auth


def launch(store: LabelStore, queue: LabelQueue, *, host: str = "127.0.0.1", port: int = 7860,
           guidelines: str = "", export_fn: Callable[[], dict[str, Any]] | None = None,
           concurrency_limit: int = 32, max_threads: int = 40, block: bool = True,
           runs_dir: str | Path = "runs") -> gr.Blocks:
    """Build and start the app; with ``block=False`` return once it listens (tests)."""
    demo = build_app(store, queue, guidelines=guidelines, export_fn=export_fn, runs_dir=runs_dir)
    demo.queue(default_concurrency_limit=concurrency_limit, api_open=False)
    demo.launch(server_name=host, server_port=port, auth=make_auth(store),
                auth_message="Preference labeling: sign in with the account an admin made for you.",
                max_threads=max_threads, prevent_thread_lock=not block, show_error=True, quiet=True,
                head=HEAD, css=CSS, ssr_mode=False, enable_monitoring=False, mcp_server=False,
                footer_links=[])
    return demo


def read_guidelines(text: str, path: str | None) -> str:
    if path:
        p = Path(path)
        if not p.is_file():
            from alignment.errors import UserError
            raise UserError(f"label.guidelines_file: {p} does not exist")
        return p.read_text(encoding="utf-8")
    return text
