"""The labeling web app: a Gradio Blocks UI for people, and a small JSON API for bots.

Security model
--------------
* Login through Gradio's ``auth=`` with a callable that checks the store (scrypt hashes); accounts are
  made by ``align-label add-user``, never in code. Every route but the login page answers 401 without
  the auth cookie. :mod:`labeling_ui.auth` adds session revocation (a password change or deactivation
  ends the account's sessions at once), per-session logout, and a failed-login throttle (HTTP 429).
* Every handler resolves the caller from ``gr.Request.username`` on the server and acts only on that
  annotator's assignments and labels; admin handlers re-check the role on every call (hiding the
  admin tab is cosmetic). A client cannot name another annotator anywhere.
* Model and user text is shown by :mod:`labeling_ui.render`: every character HTML-escaped exactly once
  into a ``white-space: pre-wrap`` block inside a ``gr.HTML`` (no Markdown: what the annotator reads is
  what the model wrote, links stay inert text with their target visible, images are never loaded, and
  ``<script>`` or ``<img onerror=...>`` are text). The only tags are the renderer's own.
* The HTTP layer (:mod:`labeling_ui.http`) turns off the Gradio routes the app does not use (uploads,
  the OpenAPI schema, the queued REST API, media streams, ...) and sets a Content-Security-Policy
  (this origin only, ``frame-ancestors 'self'``), ``X-Frame-Options`` and ``nosniff`` on every response.
* The Reports tab shows a report page the pipeline generated, in a sandboxed ``<iframe srcdoc>``
  (:mod:`labeling_ui.tabs.reports`).
* Who may do what is decided in one place, :mod:`labeling_ui.access`, on every call.

Languages
---------
Every string the page shows is in :mod:`labeling_ui.i18n`, in English and Simplified Chinese. Static text
is a ``gr.I18n`` key that Gradio's front end translates (the catalogue goes to ``launch(i18n=...)``); the
text handlers write (progress, status, errors, the admin tables) is formatted on the server in the
caller's language (:func:`labeling_ui.access.request_language`: the page's switch, a cookie, else ``Accept-Language``),
and the page's script (``static/labeling.js``) applies the same rule to Gradio's locale, so the two
always agree. The bot API (:mod:`labeling_ui.api`) stays English.

The page
--------
A header (who is signed in, the progress line, the language switch, logout) above one tab per job, each
a module of :mod:`labeling_ui.tabs`: ``label`` (everyone), ``review`` (reviewers), ``admin`` (admins)
and ``reports`` (when the caller hands in a :class:`~labeling_ui.tabs.reports.RunReports`). The page's
script and style sheet are files in ``labeling_ui/static/``.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# Gradio enters a matplotlib backend context on every event; an unset backend makes matplotlib probe
# GUI toolkits each time (a large share of a request's CPU). The server never draws on screen.
os.environ.setdefault("MPLBACKEND", "agg")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from labeling_ui.access import Access, Caller  # noqa: E402
from labeling_ui.api import BotAPI  # noqa: E402
from labeling_ui.auth import Auth  # noqa: E402
from labeling_ui.export import export_options, export_preferences  # noqa: E402
from labeling_ui.guidelines import app_i18n, guidelines_by_language, read_guidelines  # noqa: E402
from labeling_ui.http import launch_options  # noqa: E402
from labeling_ui.i18n import AUTONYMS, DEFAULT, LANG_COOKIE, LANGUAGES, script_strings, t  # noqa: E402
from labeling_ui.queue import LabelQueue  # noqa: E402
from labeling_ui.store import LabelStore  # noqa: E402
from labeling_ui.tabs.admin import AdminTab  # noqa: E402
from labeling_ui.tabs.label import LabelTab  # noqa: E402
from labeling_ui.tabs.reports import ReportsTab, RunReports  # noqa: E402
from labeling_ui.tabs.review import ReviewTab  # noqa: E402
from labeling_ui.views import EVENT, UI, safe_markdown  # noqa: E402

#: The page's script and style sheet.
STATIC = Path(__file__).resolve().parent / "static"

#: The language switch in the header: each language named in itself.
LANG_SWITCH = '<div id="lang-switch">' + "".join(
    f'<button type="button" data-lang="{lang}" lang="{lang}">{html.escape(name)}</button>'
    for lang, name in AUTONYMS.items()) + "</div>"

#: System fonts for the whole page, no web fonts: Gradio's default theme loads a bundled subset of
#: Source Sans Pro that lacks many glyphs (bold "A" and "B" fell back to another typeface), and the
#: system's fonts have every glyph the text needs (the Chinese UI: the usual Simplified Chinese fonts of
#: macOS, Windows and Linux before the generic fallback).
THEME = gr.themes.Default(
    font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "Noto Sans", "Liberation Sans", "DejaVu Sans",
          "Arial", "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "Source Han Sans SC",
          "WenQuanYi Micro Hei", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Cascadia Mono", "DejaVu Sans Mono", "Liberation Mono", "Menlo",
               "Consolas", "monospace"])


def head() -> str:
    """The page's ``<head>`` addition: ``static/labeling.js`` after the texts it shows in every language
    and the language cookie's name (``</`` escaped: the JSON sits inside a ``<script>`` element)."""
    config = json.dumps({"strings": script_strings(), "cookie": LANG_COOKIE}, ensure_ascii=False).replace("</", "<\\/")
    script = (STATIC / "labeling.js").read_text(encoding="utf-8")
    return f"<script>\nwindow.labelingConfig = {config};\n{script}</script>\n"


def login_message() -> str:
    """The login page's message in every language, the page's own language shown (Gradio's login page
    knows the browser's locale and sets ``<html lang>``, but not the app's translations)."""
    spans = "".join(f'<span class="login-msg" lang="{lang}">{html.escape(t(lang, "login_message"))}</span>'
                    for lang in LANGUAGES)
    return ("<style>.login-msg { display: none; } html:lang(zh) .login-msg:lang(zh), "
            "html:not(:lang(zh)) .login-msg:lang(en) { display: inline; }</style>" + spans)


def build_app(store: LabelStore, queue: LabelQueue, *, guidelines: str | Mapping[str, str] = "",
              export_fn: Callable[[], dict[str, Any]] | None = None, reports: RunReports | None = None,
              runs_dir: str | Path = "runs", reports_for: str = "admins") -> gr.Blocks:
    """The Blocks app (not launched; its text is in :mod:`labeling_ui.i18n`: launch it with
    ``i18n=app_i18n(guidelines)``). ``export_fn`` runs the export for the admin tab's button; ``reports``
    draws the Reports tab's runs in ``runs_dir`` (no tab without it); ``reports_for`` (``admins`` |
    ``everyone``) says who may read them."""
    access = Access(store, reports_for)
    guidelines_by_language(guidelines)        # bad input fails here, before anything is served
    label = LabelTab(store, queue, access)
    # Every text below is a key of labeling_ui.i18n (UI(key)), shown in the page's language by Gradio.
    with gr.Blocks(title=t(DEFAULT, "title"), analytics_enabled=False) as demo:
        assignment = gr.State(None)
        with gr.Row(equal_height=True, elem_id="header"):
            with gr.Column(scale=1, elem_id="header-text"):
                whoami = gr.Markdown(elem_id="whoami")
                progress = gr.Markdown(elem_id="progress")
            gr.HTML(LANG_SWITCH, js_on_load=None, container=False, min_width=0, elem_id="lang-switch-box")
            gr.Button(UI("logout"), link="/logout", size="sm", scale=0, elem_id="btn-logout")
        with gr.Tabs():
            with gr.Tab(UI("tab_label"), id="label", elem_id="tab-label"):
                label.build(assignment, progress)
            with gr.Tab(UI("tab_admin"), id="admin", visible=False, elem_id="tab-admin") as admin_tab:
                AdminTab(store, queue, access, export_fn).build(admin_tab)
            with gr.Tab(UI("tab_review"), id="review", visible=False, elem_id="tab-review") as review_tab:
                ReviewTab(store, queue, access).build(review_tab)
            # each tab but the Label tab with the rule that shows it (hiding is cosmetic: handlers re-check)
            role_tabs = [(admin_tab, access.may_administer), (review_tab, access.may_review)]
            if reports is not None:
                with gr.Tab(UI("tab_reports"), id="reports", visible=False, elem_id="tab-reports") as reports_tab:
                    ReportsTab(reports, runs_dir, access).build(reports_tab)
                role_tabs.append((reports_tab, access.may_read_reports))

        def on_load(me: Caller):
            """The caller's first item, the tabs their role may see, and who is signed in."""
            return (*label.item_outputs(me, queue.next_item(me.annotator)),
                    *(gr.update(visible=may(me.annotator)) for _, may in role_tabs),
                    t(me.lang, "signed_in_as", name=safe_markdown(me.name), role=t(me.lang, f"role_{me.annotator.role}")))

        demo.load(access.user(on_load), None, [*label.outputs, *(tab for tab, _ in role_tabs), whoami], **EVENT)
        BotAPI(store, queue, access).register()
    return demo


def configured(label: Any, store: LabelStore) -> dict[str, Any]:
    """What :func:`launch` takes from a ``label`` config section (:class:`alignment.config.LabelConfig`),
    alike for ``align-label serve`` and the labels stage's human labeling."""
    return {"host": label.host, "port": label.port, "guidelines": read_guidelines(label.guidelines, label.guidelines_file),
            "export_fn": lambda: export_preferences(store, label.project, label.export.dir, **export_options(label.export)),
            "concurrency_limit": label.concurrency_limit, "max_threads": label.max_threads,
            "runs_dir": label.runs_dir, "reports_for": str(label.reports_for)}


def launch(store: LabelStore, queue: LabelQueue, *, host: str = "127.0.0.1", port: int = 7860,
           guidelines: str | Mapping[str, str] = "", export_fn: Callable[[], dict[str, Any]] | None = None,
           concurrency_limit: int = 32, max_threads: int = 40, block: bool = True,
           reports: RunReports | None = None, runs_dir: str | Path = "runs", reports_for: str = "admins") -> gr.Blocks:
    """Build and start the app; with ``block=False`` return once it listens (tests). ``guidelines``: one
    Markdown text for every language, or one per language (see
    :func:`labeling_ui.guidelines.guidelines_by_language`)."""
    demo = build_app(store, queue, guidelines=guidelines, export_fn=export_fn, reports=reports, runs_dir=runs_dir,
                     reports_for=reports_for)
    demo.queue(default_concurrency_limit=concurrency_limit, api_open=False)
    auth = Auth(store)
    options = launch_options(demo)
    options["app_kwargs"] = auth.app_kwargs(options["app_kwargs"])
    demo.launch(server_name=host, server_port=port, auth=auth.check, auth_message=login_message(),
                max_threads=max_threads, prevent_thread_lock=not block, show_error=True, quiet=True,
                head=head(), css_paths=[STATIC / "labeling.css"], theme=THEME, ssr_mode=False,
                enable_monitoring=False, mcp_server=False, footer_links=[], i18n=app_i18n(guidelines), **options)
    return demo
