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
* The Reports tab (admins; everyone with ``label.reports_for=everyone``, re-checked on every call) lists
  the pipeline runs under ``runs_dir`` and shows the selected
  run's alignment eval report (``alignment.reports.run_report``): a page we generate with every model
  text escaped. It is shown in an ``<iframe sandbox srcdoc=...>`` rather than served by a route: the
  page travels through the same authenticated event channel as everything else (Gradio's file route
  needs ``allowed_paths`` and serves HTML as a download, and a route of our own would need its own
  login check), the handler re-checks the caller and only opens runs it listed itself, and the empty
  ``sandbox`` gives the page no scripts and an opaque origin, so even a missed escape could not run
  code in, or read from, the app.

Languages
---------
Every string the page shows is in :mod:`labeling_ui.i18n`, in English and Simplified Chinese. Static text
is a ``gr.I18n`` key that Gradio's front end translates (the catalogue goes to ``launch(i18n=...)``); the
text handlers write (progress, status, errors, the admin tables) is formatted on the server in the
caller's language (:func:`request_language`: the page's switch, a cookie, else ``Accept-Language``),
and the page's script applies the same rule to Gradio's locale, so the two always agree. The bot API
stays English.

The bot API (``POST /gradio_api/run/<name>`` with ``{"data": [...]}`` and the login cookie; unqueued
fast paths; ``A`` / ``B`` / ``response_a`` / ``response_b`` are *display* positions, first / second):

* ``next_item()`` -> ``{"assignment", "prompt", "response_a", "response_b", "expires_at"}`` or
  ``{"assignment": null, "done": true}`` (``{"assignment": null, "done": false, "paused": true}`` for a
  paused account, see :mod:`labeling_ui.review`)
* ``submit_label(assignment, choice, strength, flags_a, flags_b, note, time_ms)`` ->
  ``{"ok", "label_id", "next": <next_item>}`` (``choice``: ``A|B|tie|both_bad``; strength 1-4 for A/B)
* ``skip_item(assignment)`` / ``undo_label()`` -> ``{"ok", "next": <item>}``
* ``my_progress()`` -> the caller's own counts.
"""

import html
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any

# Gradio enters a matplotlib backend context on every event; an unset backend makes matplotlib probe
# GUI toolkits each time (a large share of a request's CPU). The server never draws on screen.
os.environ.setdefault("MPLBACKEND", "agg")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from alignment.config import ReportsFor
from alignment.errors import UserError
from alignment.reports.run_data import build_run_report, list_runs, report_is_current
from alignment.reports.run_report import render_run_report
from alignment.safety.categories import CATEGORIES
from labeling_ui.agreement import project_stats
from labeling_ui.auth import Auth
from labeling_ui.campaign import (
    AGREEMENTS,
    FLAG_FILTERS,
    STATUSES,
    annotator_quality,
    filter_items,
    item_rows,
)
from labeling_ui.http import launch_options
from labeling_ui.i18n import (
    AUTONYMS,
    DEFAULT,
    LANG_COOKIE,
    LANGUAGES,
    choose,
    frontend_catalogue,
    has,
    script_strings,
    t,
)
from labeling_ui.queue import PAUSED, LabelQueue, QueueError, Shown
from labeling_ui.render import message_html, prompt_html, text_html
from labeling_ui.review import (
    REVIEW_STATES,
    ReviewError,
    adjudicate,
    adjudications,
    disagreements,
    is_paused,
    pause,
    pause_rule,
    pause_states,
    set_pause_rule,
    unpause,
)
from labeling_ui.store import ROLES, Annotator, LabelStore

log = logging.getLogger(__name__)

#: The choice bar, left to right: A's strengths strongest first, the two neutral choices, then B's
#: strengths weakest first, mirroring the two responses above it. (choice, strength, elem_id, key): the
#: button's text is ``button_<key>`` in :mod:`labeling_ui.i18n` (with its shortcut), ``choice_<key>``
#: names the choice in the status line.
CHOICES = ([("A", s, f"btn-a-{s}", f"A_{s}") for s in (4, 3, 2, 1)]
           + [("tie", None, "btn-tie", "tie"), ("both_bad", None, "btn-both-bad", "both_bad")]
           + [("B", s, f"btn-b-{s}", f"B_{s}") for s in (1, 2, 3, 4)])

#: Static UI text as translation keys: Gradio's front end shows each in the page's language.
UI = gr.I18n(**frontend_catalogue())

#: What a :class:`QueueError` from a UI action means, in the words of the status line (the queue's own
#: messages are for the bot API and the logs).
QUEUE_ERRORS = {
    "no such assignment": "err_not_yours",
    "this item was skipped": "err_was_skipped",
    "the lease on this item expired and it has all its labels now": "err_lease_expired",
    "unknown or deactivated annotator": "err_account",
    PAUSED: "err_paused",
}

HEAD_SCRIPT = r"""
<script>
(() => {
  // The UI language: the one picked with the switch (cookie), else the first of the browser's languages
  // that the UI has (any zh-* reads the Simplified Chinese UI), else English; the server applies the same
  // rule to Accept-Language (labeling_ui.i18n.choose). Gradio's front end picked a locale from
  // navigator.language alone before this script ran: set it to ours when they differ.
  const STRINGS = __STRINGS__;
  const LANGS = Object.keys(STRINGS), COOKIE = "__COOKIE__";
  const langOfTag = (tag) => ({zh: "zh-CN", en: "en"})[(tag || "").split(/[-_]/)[0].toLowerCase()] || null;
  const picked = () => {
    const m = document.cookie.match(new RegExp("(?:^|;\\s*)" + COOKIE + "=([^;]*)"));
    return m && LANGS.includes(decodeURIComponent(m[1])) ? decodeURIComponent(m[1]) : null;
  };
  const wanted = picked() || (navigator.languages || [navigator.language]).map(langOfTag).find(Boolean) || "en";
  const lang = () => langOfTag(document.documentElement.lang) || "en";
  const tr = (key, fields = {}) => (STRINGS[lang()] || STRINGS.en)[key].replace(/\{(\w+)\}/g, (m, k) => fields[k]);
  const setLocale = async (target) => {
    // Gradio's changeLocale lives in its core module; importing the loaded module again returns it.
    const url = performance.getEntriesByType("resource").map((e) => e.name)
      .find((name) => /\/assets\/core-[\w-]+\.js$/.test(name));
    if (!url) { console.warn("labeling: Gradio's core module not found; the page keeps its language"); return; }
    const core = await import(url);
    if (typeof core.changeLocale === "function") core.changeLocale(target);
  };
  if (document.documentElement.lang !== wanted) setLocale(wanted);
  const showLanguage = () => {
    document.title = tr("title");
    document.querySelectorAll("#lang-switch [data-lang]").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.lang === lang()));
    });
  };
  new MutationObserver(showLanguage).observe(document.documentElement, {attributes: true, attributeFilter: ["lang"]});
  // The switch: remember the choice (the server reads it too) and reload, so that every text the server
  // wrote comes back in the new language.
  document.addEventListener("click", (ev) => {
    const el = ev.target.closest ? ev.target.closest("#lang-switch [data-lang]") : null;
    if (!el || !LANGS.includes(el.dataset.lang)) return;
    ev.preventDefault();
    document.cookie = `${COOKIE}=${encodeURIComponent(el.dataset.lang)}; path=/; max-age=31536000; samesite=lax`;
    location.reload();
  });

  // Keyboard shortcuts, on the Label tab only and never while typing (the note, a dropdown):
  //   1 / 2 pick A / B and q w e r the strength 1-4, in either order: the second key labels;
  //   3 tie, 4 both bad, s skip, u undo, Escape forgets a half-typed choice.
  // The pending half is highlighted on the choice bar and named in #key-hint, beside the buttons.
  const direct = {"3": "btn-tie", "4": "btn-both-bad", "s": "btn-skip", "u": "btn-undo"};
  const sides = {"1": "a", "2": "b"};
  const strengths = {"q": 1, "w": 2, "e": 3, "r": 4};
  let side = null, strength = null;
  const typing = (el) => el && (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
    (el.tagName === "INPUT" && !["checkbox", "radio", "button", "submit"].includes((el.type || "").toLowerCase())));
  const shown = (el) => el && el.offsetParent !== null && !el.disabled;
  const hint = (text) => { const el = document.getElementById("key-hint"); if (el) el.textContent = text; };
  const mark = () => {
    document.querySelectorAll(".choice-bar button").forEach((b) => {
      const m = /^btn-([ab])-([1-4])$/.exec(b.id || "");
      b.classList.toggle("pending", !!m && (side !== null || strength !== null) &&
        (side === null || m[1] === side) && (strength === null || Number(m[2]) === strength));
    });
  };
  const forget = () => { side = null; strength = null; mark(); hint(""); };
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat || typing(ev.target)) return;
    if (!shown(document.getElementById("choice-bar"))) return;          // another tab is showing
    const key = (ev.key || "").toLowerCase();
    if (key === "escape") { forget(); return; }
    if (key in direct) {
      const el = document.getElementById(direct[key]);
      if (shown(el)) { ev.preventDefault(); forget(); el.click(); }
      return;
    }
    if (key in sides) side = sides[key];
    else if (key in strengths) strength = strengths[key];
    else return;
    ev.preventDefault();
    if (side !== null && strength !== null) {
      const el = document.getElementById(`btn-${side}-${strength}`);
      forget();
      if (shown(el)) el.click();
      return;
    }
    mark();
    hint(side !== null ? tr("hint_side", {side: side.toUpperCase()})
                       : tr("hint_strength", {strength: tr(`strength_${strength}`)}));
  });
  // A new item: forget a half-typed choice, show its first lines and bring it into view. (Also marks the
  // language switch whenever it is drawn.)
  let lastKey = null;
  new MutationObserver(() => {
    if (document.querySelector("#lang-switch [data-lang]:not([aria-pressed])")) showLanguage();
    // Gradio gives each checkbox its value as a tooltip: show the category's name in the page's language.
    document.querySelectorAll(".flags-group input[type=checkbox]").forEach((box) => {
      const shownName = box.nextElementSibling ? box.nextElementSibling.textContent.trim() : "";
      if (shownName && box.title !== shownName) box.title = shownName;
    });
    const text = document.querySelector("#prompt .model-text");
    const key = text ? (text.dataset.key || text.textContent) : null;
    if (key === lastKey) return;
    lastKey = key;
    forget();
    document.querySelectorAll("#response-a, #response-b, #prompt").forEach((el) => { el.scrollTop = 0; });
    const top = document.getElementById("prompt-label") || document.getElementById("prompt");
    if (top && top.getBoundingClientRect().top < 0) top.scrollIntoView({block: "start"});
  }).observe(document.documentElement, {childList: true, subtree: true});
  showLanguage();
})();
</script>
"""

#: The page's script with its strings (``</`` escaped: the JSON sits inside a ``<script>`` element).
HEAD = (HEAD_SCRIPT.replace("__STRINGS__", json.dumps(script_strings(), ensure_ascii=False).replace("</", "<\\/"))
        .replace("__COOKIE__", LANG_COOKIE))

#: The language switch in the header: each language named in itself.
LANG_SWITCH = '<div id="lang-switch">' + "".join(
    f'<button type="button" data-lang="{lang}" lang="{lang}">{html.escape(name)}</button>'
    for lang, name in AUTONYMS.items()) + "</div>"


def login_message() -> str:
    """The login page's message in every language, the page's own language shown (Gradio's login page
    knows the browser's locale and sets ``<html lang>``, but not the app's translations)."""
    spans = "".join(f'<span class="login-msg" lang="{lang}">{html.escape(t(lang, "login_message"))}</span>'
                    for lang in LANGUAGES)
    return ("<style>.login-msg { display: none; } html:lang(zh) .login-msg:lang(zh), "
            "html:not(:lang(zh)) .login-msg:lang(en) { display: inline; }</style>" + spans)


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

CSS = """
.gradio-container { max-width: 1600px !important; padding-top: 6px !important; padding-bottom: 6px !important; }
/* (Gradio scopes rules inside @media to its content, so the page margin narrows on phones here.) */
.main.fillable.app { padding-left: clamp(8px, calc(100vw - 660px), 32px) !important;
                     padding-right: clamp(8px, calc(100vw - 660px), 32px) !important; }
#header { align-items: center; font-size: 14px; }
#header-text { gap: 2px !important; min-width: 0 !important; }
#btn-logout { min-width: 0 !important; flex: 0 0 auto !important; padding: 4px 14px !important; }
#lang-switch-box { flex: 0 0 auto !important; width: auto !important; }
#lang-switch { display: flex; gap: 2px; }
#lang-switch button { border: 1px solid var(--border-color-primary); border-radius: 4px; background: none;
                      color: var(--body-text-color); padding: 2px 8px; font-size: 13px; cursor: pointer; }
#lang-switch button[aria-pressed="true"] { background: var(--background-fill-secondary); font-weight: 700; }
#whoami, #progress { padding: 0 !important; }
#header p { margin: 0; }
#label-tab { gap: 8px !important; }
.tabitem { padding: 8px 0 0 0 !important; }
.section-label { font-weight: 700; font-size: 13px; color: var(--body-text-color-subdued); margin: 0 0 2px 0; }
.section-label.sticky { position: sticky; top: -8px; background: var(--background-fill-primary);
                        padding: 2px 0; z-index: 1; }
.model-text { white-space: pre-wrap; overflow-wrap: anywhere; word-break: normal; font-family: var(--font);
              font-size: 15px; line-height: 1.45; margin: 0; color: var(--body-text-color); }
.model-text code { font-family: var(--font-mono); font-size: 0.92em; background: var(--background-fill-secondary);
                   border-radius: 3px; -webkit-box-decoration-break: clone; box-decoration-break: clone; }
.model-text .empty, .model-text.app-message { color: var(--body-text-color-subdued); font-style: italic; }
.model-text .speaker { font-weight: 700; }
#prompt { border-left: 4px solid var(--color-accent) !important; padding: 4px 10px !important;
          max-height: 8.5em; overflow-y: auto !important; background: var(--background-fill-secondary);
          border-radius: 4px; }
/* The two answers side by side, each in its own scroll box of the same height: as tall as the window
   leaves room for (header, prompt, choice bar and status stay on screen at 1366x768). */
#responses { gap: 10px !important; }
#response-a, #response-b { border: 1px solid var(--border-color-primary) !important; border-radius: 8px;
                           padding: 8px 12px !important; height: max(10em, calc(100vh - 370px));
                           overflow-y: auto !important; }
#response-a .prose, #response-b .prose, #prompt .prose { max-width: none; }
#choice-bar { gap: 6px !important; align-items: stretch !important; flex-wrap: wrap; }
#choice-bar button { min-width: 0 !important; padding: 4px 2px !important; font-size: 14px !important;
                     line-height: 1.2; white-space: pre-line; min-height: 2.9em; }
/* A scale: the stronger the preference, the stronger the colour. */
#btn-a-3, #btn-b-3 { background: color-mix(in srgb, var(--button-primary-background-fill) 80%, white) !important; }
#btn-a-2, #btn-b-2 { background: color-mix(in srgb, var(--button-primary-background-fill) 55%, white) !important;
                     color: var(--body-text-color) !important; }
#btn-a-1, #btn-b-1 { background: color-mix(in srgb, var(--button-primary-background-fill) 30%, white) !important;
                     color: var(--body-text-color) !important; }
#choice-bar button.pending { outline: 3px solid var(--body-text-color); outline-offset: 1px; }
#status-row { align-items: center !important; gap: 8px !important; min-height: 2em; }
#status, #status-row > div { border: none !important; padding: 0 !important; }
#status p, #key-hint, #status .prose { margin: 0; font-size: 15px; }
#status { flex-grow: 3 !important; min-height: 1.5em; }
#key-hint { color: var(--color-accent); font-weight: 600; }
.keys p { color: var(--body-text-color-subdued); font-size: 13px; margin: 0; }
.admin-table { border-collapse: collapse; font-size: 13px; margin: 4px 0; }
.admin-table th, .admin-table td { border: 1px solid var(--border-color-primary); padding: 2px 6px; text-align: left;
                                   vertical-align: top; white-space: pre-wrap; overflow-wrap: anywhere; }
.item-detail .model-text { max-height: 14em; overflow-y: auto; border: 1px solid var(--border-color-primary);
                           border-radius: 4px; padding: 4px 8px; }
.run-report { width: 100%; height: 80vh; border: 1px solid var(--border-color-primary); border-radius: 8px; }
@media (max-width: 700px) {
  /* Phone: the answers stacked, each short enough that both starts and the whole choice bar fit one
     screen; the bar wraps into A's strengths, B's strengths, then tie and both bad. */
  #header { flex-wrap: nowrap !important; gap: 2px 8px !important; font-size: 13px; }
  .keys { display: none !important; }
  #lang-switch button { padding: 1px 5px; font-size: 12px; }
  #responses { flex-direction: column !important; gap: 6px !important; }
  #response-a, #response-b { flex: 0 0 auto !important; height: 23vh; padding: 4px 8px !important; }
  #prompt { max-height: 5.5em; }
  .model-text { font-size: 14px; }
  #choice-bar { gap: 4px !important; }
  #choice-bar button { flex: 1 1 22% !important; font-size: 12px !important; min-height: 3.6em; }
  #btn-b-1, #btn-b-2, #btn-b-3, #btn-b-4 { order: 1; }
  #btn-tie, #btn-both-bad { order: 2; flex-basis: 40% !important; min-height: 2.4em; }
}
"""


def safe_markdown(text: str) -> str:
    """Markdown source that shows ``text`` (a name, a path, an error: never model text, see
    :mod:`labeling_ui.render`) with any HTML as literal text: ``<``, ``>`` and ``&`` are escaped,
    ``![alt](url)`` loses its ``!`` so no remote image is fetched. The Markdown component's own
    sanitiser (``sanitize_html=True``) stays on as a second line of defence."""
    return html.escape(text, quote=False).replace("![", "!\\[")


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


def _choice_name(choice: str, lang: str) -> str:
    """A stored choice (``A``, ``B``, ``tie``, ``both_bad``) in the admin tables' words."""
    return {"tie": t(lang, "col_ties"), "both_bad": t(lang, "col_both_bad")}.get(choice, choice)


def _cols(lang: str, *keys: str) -> list[str]:
    return [t(lang, f"col_{key}") for key in keys]


def category_name(category: str, lang: str) -> str:
    """A safety category in ``lang`` (a category the catalogue lacks shows its own name)."""
    key = f"category_{category}"
    return t(lang, key) if has(key) else category


def stats_markdown(stats: dict[str, Any], lang: str = DEFAULT) -> str:
    """The admin tab's statistics (``agreement.project_stats``) as Markdown in ``lang``."""
    it, lab, ag = stats["items"], stats["labels"], stats["agreement"]
    choices = ", ".join(f"{_choice_name(k, lang)}: {v}" for k, v in sorted(lab["choices"].items()))
    out = [f"### {t(lang, 'stats_project', project=safe_markdown(stats['project']), overlap=stats['overlap'])}",
           _md_table(_cols(lang, "items", "complete", "in_progress", "untouched", "gold", "active_leases", "skips"),
                     [[it["total"], it["complete"], it["in_progress"], it["untouched"], it["gold"],
                       it["active_leases"], it["skips"]]]),
           "\n" + t(lang, "stats_labels", total=lab["total"], regular=lab["regular"], gold=lab["gold"],
                    choices=choices or "–"),
           f"\n### {t(lang, 'stats_per_annotator')}",
           _md_table(_cols(lang, "annotator", "labels", "last_hour", "median_time", "gold_accuracy",
                           "picked_first", "ties", "both_bad"),
                     [[n, a["labels"], a["last_hour"], a["median_time_s"],
                       (f"{a['gold_accuracy']:.2f} ({a['gold_labels']})" if a["gold_accuracy"] is not None else None),
                       a["picked_first_shown"], a["ties"], a["both_bad"]]
                      for n, a in stats["per_annotator"].items()]),
           f"\n### {t(lang, 'stats_per_hour')}",
           _md_table(_cols(lang, "hour", "labels"), [[h, n] for h, n in stats["per_hour"].items()]),
           f"\n### {t(lang, 'stats_agreement')}",
           _md_table(_cols(lang, "pairs", "raw_with_ties", "pairs_without_ties", "raw_without_ties", "alpha"),
                     [[ag["pairs"], ag["with_ties"], ag["pairs_without_ties"], ag["without_ties"],
                       ag["krippendorff_alpha_ordinal"]]]),
           f"\n**{t(lang, 'stats_kappa')}**",
           _md_table(_cols(lang, "annotators", "shared_items", "kappa", "raw"),
                     [[" / ".join(k["annotators"]), k["items"], k["kappa"], k["raw"]] for k in ag["cohen_kappa"]]),
           f"\n### {t(lang, 'stats_safety')}",
           t(lang, "stats_flagged", n=stats["safety_flags"]["a_or_b_flagged_labels"]) + "\n",
           _md_table(_cols(lang, "category", "flagging"),
                     [[category_name(c, lang), n] for c, n in stats["safety_flags"]["by_category"].items() if n])]
    return "\n".join(out)


def report_frame(page: str, lang: str = DEFAULT) -> str:
    """A report page (our own, escaped HTML) as a sandboxed ``<iframe>``: the whole page goes into the
    ``srcdoc`` attribute, escaped once more so that it cannot end the attribute, and the empty
    ``sandbox`` runs no script in it and gives it no access to the app's origin."""
    title = html.escape(t(lang, "report_frame_title"), quote=True)
    return (f'<iframe class="run-report" title="{title}" sandbox="" referrerpolicy="no-referrer" '
            f'srcdoc="{html.escape(page, quote=True)}"></iframe>')


def run_status_name(status: str, lang: str) -> str:
    key = f"status_{status}"
    return t(lang, key) if has(key) else status


def runs_markdown(runs_dir: Path, reports: dict[str, dict[str, Any]], lang: str = DEFAULT) -> str:
    """The Reports tab's list of runs: status and the headline figures of each."""
    if not reports:
        return t(lang, "no_runs", path=safe_markdown(str(runs_dir)))
    rows = []
    for name, r in reports.items():
        h = r["headline"]
        unsafe = f"{_num(h['unsafe_rate_sft'])} → {_num(h['unsafe_rate_ppo'])}"
        rows.append([name, run_status_name(r["status"], lang), h["gold_win_rate"], unsafe, h["rm_eval_accuracy"],
                     h["final_kl"]])
    return _md_table(_cols(lang, "run", "status", "gold_win_rate", "unsafe_rate", "rm_accuracy", "final_kl"), rows)


def _num(v: Any) -> str:
    return "–" if v is None else f"{v:.3f}"


def notes_markdown(notes: list[dict[str, Any]], lang: str = DEFAULT) -> str:
    """The admin tab's table of recent notes (every cell escaped by :func:`_md_table`)."""
    if not notes:
        return t(lang, "no_notes")
    return _md_table(_cols(lang, "label", "item", "annotator", "choice", "note", "when"),
                     [[f"#{n['label_id']}" + (t(lang, "withdrawn") if n["withdrawn"] else ""), n["item"],
                       n["annotator"], _choice_name(n["choice"], lang), n["note"],
                       time.strftime("%Y-%m-%d %H:%M", time.localtime(n["created_at"]))]
                      for n in notes])


def request_language(request: gr.Request | None) -> str:
    """The caller's UI language (:func:`labeling_ui.i18n.choose`): the page's switch (a cookie), else the
    browser's ``Accept-Language``; English for a client that sends neither (the bot API)."""
    headers = getattr(request, "headers", None) if request is not None else None
    if headers is None:
        return DEFAULT
    jar = SimpleCookie()
    try:
        jar.load(headers.get("cookie") or "")
    except CookieError:
        jar = SimpleCookie()
    picked = jar[LANG_COOKIE].value if LANG_COOKIE in jar else None
    return choose(picked, headers.get("accept-language"))


def admin_tools(store: LabelStore, queue: LabelQueue, admin: Callable[[gr.Request | None], Annotator],
                refresh: gr.Button, tab: gr.Tab) -> None:
    """The admin tab's accounts (add, reset a password, deactivate / reactivate) and recent notes, built
    in place.

    Deactivating an account or giving it a new password revokes its sessions at once (see
    :mod:`labeling_ui.auth`); an admin cannot deactivate themself (that would lock the last admin out).
    A password typed here is sent once to the server, hashed there and never shown again (the field is
    cleared after each action).
    """
    with gr.Accordion(UI("accounts_and_notes"), open=True, elem_id="admin-tools"):
        with gr.Row():
            account = gr.Textbox(label=UI("account_name"), max_lines=1, scale=2, elem_id="account-name")
            password = gr.Textbox(label=UI("new_password"), type="password", max_lines=1, scale=2,
                                  elem_id="account-password")
            role = gr.Dropdown([(str(UI(f"role_{r}")), r) for r in ROLES], value="annotator", label=UI("role"),
                               scale=1, elem_id="account-role")
        with gr.Row():
            btn_add = gr.Button(UI("add_account"), variant="primary", size="sm", scale=0, elem_id="btn-add-account")
            btn_reset = gr.Button(UI("reset_password"), size="sm", scale=0, elem_id="btn-reset-password")
            btn_off = gr.Button(UI("deactivate"), variant="stop", size="sm", scale=0, elem_id="btn-deactivate")
            btn_on = gr.Button(UI("reactivate"), size="sm", scale=0, elem_id="btn-reactivate")
            btn_pause = gr.Button(UI("pause"), variant="stop", size="sm", scale=0, elem_id="btn-pause")
            btn_unpause = gr.Button(UI("unpause"), size="sm", scale=0, elem_id="btn-unpause")
        account_md = gr.Markdown(elem_id="account-result")
        with gr.Row(equal_height=True):
            rule = pause_rule(store)
            threshold = gr.Number(rule.threshold if rule else None, label=UI("pause_rule"), minimum=0, maximum=1,
                                  step=0.05, elem_id="pause-threshold")
            min_gold = gr.Number(rule.min_gold if rule else 10, label=UI("pause_min_gold"), minimum=1, precision=0,
                                 elem_id="pause-min-gold")
            btn_rule = gr.Button(UI("save_pause_rule"), size="sm", scale=0, elem_id="btn-pause-rule")
        pause_md = gr.Markdown(elem_id="pause-states")
        notes_md = gr.Markdown(elem_id="admin-notes")

    def accounts() -> dict[str, Annotator]:
        return {a.name: a for a in store.annotators()}

    def set_active(active: bool):
        def handler(name: str, request: gr.Request) -> str:
            me, lang = admin(request), request_language(request)
            name = (name or "").strip()
            if not active and name == me.name:
                return t(lang, "cannot_deactivate_self")
            if name not in accounts():
                return t(lang, "no_such_account", name=safe_markdown(name))
            try:
                (store.reactivate_annotator if active else store.deactivate_annotator)(name)
            except UserError:      # removed since we looked
                return t(lang, "no_such_account", name=safe_markdown(name))
            return t(lang, "reactivated" if active else "deactivated", name=safe_markdown(name))
        handler.__name__ = "on_reactivate" if active else "on_deactivate"
        return handler

    def on_add_account(name: str, new_password: str, new_role: str, request: gr.Request) -> tuple[str, str]:
        admin(request)
        lang, name = request_language(request), (name or "").strip()
        if name in accounts():
            return t(lang, "account_exists", name=safe_markdown(name)), ""
        try:
            store.add_annotator(name, new_password or "", new_role)
        except UserError:          # the store's rules for names and passwords (Gradio checks the role)
            return t(lang, "bad_account"), ""
        return t(lang, "account_added", name=safe_markdown(name), role=t(lang, f"role_{new_role}")), ""

    def on_reset_password(name: str, new_password: str, request: gr.Request) -> tuple[str, str]:
        admin(request)
        lang, name = request_language(request), (name or "").strip()
        known = accounts().get(name)
        if known is None:
            return t(lang, "no_such_account", name=safe_markdown(name)), ""
        if not known.active:       # a new password would let a deactivated account back in
            return t(lang, "reset_inactive", name=safe_markdown(name)), ""
        try:
            store.add_annotator(name, new_password or "", known.role, update=True)
        except UserError:
            return t(lang, "bad_account"), ""
        return t(lang, "password_reset", name=safe_markdown(name)), ""

    def on_notes(request: gr.Request) -> str:
        admin(request)
        lang = request_language(request)
        return f"#### {t(lang, 'recent_notes')}\n" + notes_markdown(store.recent_notes(queue.project_name), lang)

    def on_pause(name: str, request: gr.Request) -> tuple[str, str]:
        admin(request)
        lang, name = request_language(request), (name or "").strip()
        if name not in accounts():
            return t(lang, "no_such_account", name=safe_markdown(name)), gr.skip()
        if accounts()[name].paused:
            return t(lang, "already_paused", name=safe_markdown(name)), gr.skip()
        leases = pause(store, name)
        return t(lang, "paused_account", name=safe_markdown(name), leases=leases), pause_markdown(store, lang)

    def on_unpause(name: str, request: gr.Request) -> tuple[str, str]:
        admin(request)
        lang, name = request_language(request), (name or "").strip()
        if name not in accounts():
            return t(lang, "no_such_account", name=safe_markdown(name)), gr.skip()
        if not unpause(store, name):
            return t(lang, "not_paused", name=safe_markdown(name)), gr.skip()
        return t(lang, "unpaused_account", name=safe_markdown(name)), pause_markdown(store, lang)

    def on_rule(value: float | None, least: float | None, request: gr.Request) -> tuple[str, str]:
        admin(request)
        lang = request_language(request)
        try:
            whole = int(least) if least is not None and float(least).is_integer() else least
            set_pause_rule(store, None if value in (None, 0) else float(value), whole)
        except (UserError, TypeError, ValueError):
            return t(lang, "bad_pause_rule"), gr.skip()
        return "", pause_markdown(store, lang)

    def on_states(request: gr.Request) -> str:
        admin(request)
        return pause_markdown(store, request_language(request))

    ui = dict(api_visibility="private", show_progress="hidden")
    btn_add.click(on_add_account, [account, password, role], [account_md, password], **ui)
    btn_reset.click(on_reset_password, [account, password], [account_md, password], **ui)
    btn_off.click(set_active(False), [account], [account_md], **ui)
    btn_on.click(set_active(True), [account], [account_md], **ui)
    btn_pause.click(on_pause, [account], [account_md, pause_md], **ui)
    btn_unpause.click(on_unpause, [account], [account_md, pause_md], **ui)
    btn_rule.click(on_rule, [threshold, min_gold], [account_md, pause_md], **ui)
    refresh.click(on_notes, None, [notes_md], **ui)
    tab.select(on_notes, None, [notes_md], **ui)
    refresh.click(on_states, None, [pause_md], **ui)
    tab.select(on_states, None, [pause_md], **ui)


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def pause_markdown(store: LabelStore, lang: str) -> str:
    """The campaign's pause rule and every account's state and gold accuracy as the rule counts it."""
    rule = pause_rule(store)
    head = (t(lang, "pause_rule_saved", threshold=f"{rule.threshold:.2f}", min_gold=rule.min_gold) if rule
            else t(lang, "pause_rule_off"))
    rows = []
    for name, state in pause_states(store).items():
        if state["paused_at"] is None:
            shown = t(lang, "state_active")
        else:
            shown = t(lang, f"state_paused_{state['reason']}", when=_when(state["paused_at"]))
        accuracy = (f"{state['gold_accuracy']:.2f} ({state['gold_counted']})"
                    if state["gold_accuracy"] is not None else None)
        rows.append([name, shown, accuracy])
    return (f"#### {t(lang, 'pause_states')}\n{head}\n\n"
            + _md_table(_cols(lang, "annotator", "account_state", "gold_counted"), rows))


def _html_table(header: list[str], rows: list[list[Any]], model_text: int | None = None) -> str:
    """An HTML table of our own: every cell (model text, notes and names included) escaped once; the
    cells of column ``model_text`` are marked as the model's words (``model-excerpt``)."""
    def cell(v: Any, column: int) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.2f}"
        text = html.escape(str(v), quote=True)
        return f'<span class="model-excerpt">{text}</span>' if column == model_text else text
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v, i)}</td>" for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f'<table class="admin-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _excerpt(text: str, n: int = 90) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= n else one_line[:n - 1] + "…"


def label_choice_name(label: dict[str, Any], lang: str) -> str:
    """A stored label's choice in the UI's words (A and B in stored order, with the strength)."""
    if label["choice"] in ("A", "B"):
        return t(lang, f"choice_{label['choice']}_{label['strength']}")
    return t(lang, f"choice_{label['choice']}")


def item_list_html(rows: list[dict[str, Any]], total: int, overlap: int, lang: str) -> str:
    """The item browser's result list (the first ``len(rows)`` of ``total`` matches)."""
    if not total:
        return f"<p>{html.escape(t(lang, 'no_items'))}</p>"
    table = _html_table(_cols(lang, "item", "status", "labels", "agreement", "flags", "prompt"),
                        [[r["ext_id"], t(lang, f"item_status_{r['status']}"),
                          f"{r['n_labels']}" if r["status"] == "gold" else f"{r['n_labels']}/{overlap}",
                          r["agreement"], ", ".join(category_name(c, lang) for c in r["flags"]) or None,
                          _excerpt(r["prompt"])] for r in rows], model_text=5)
    return f"<p>{html.escape(t(lang, 'items_found', total=total, shown=len(rows)))}</p>{table}"


def item_detail_html(row: dict[str, Any], lang: str) -> str:
    """One item as the annotators saw it (A and B in stored order, model text shown by
    :mod:`labeling_ui.render`) and every label in force on it."""
    def flags(names: list[str]) -> str | None:
        return ", ".join(category_name(c, lang) for c in names) or None
    labels = _html_table(_cols(lang, "annotator", "choice", "flags_a", "flags_b", "note", "when", "time_spent"),
                         [[lab["annotator"], label_choice_name(lab, lang), flags(lab["flags_a"]), flags(lab["flags_b"]),
                           lab["note"] or None, _when(lab["created_at"]),
                           None if lab["time_ms"] is None else f"{lab['time_ms'] / 1000:.1f}"]
                          for lab in row["labels"]]) if row["labels"] else html.escape(t(lang, "no_labels"))
    heading = t(lang, "item_heading", item=row["ext_id"], status=t(lang, f"item_status_{row['status']}"),
                labels=row["n_labels"])
    return (f'<div class="item-detail"><h4>{html.escape(heading)}</h4>{labels}'
            f'<div class="section-label">{html.escape(t(lang, "prompt"))}</div>{prompt_html(row["prompt"])}'
            f'<div class="section-label">{html.escape(t(lang, "response_a"))}</div>{text_html(row["response_a"])}'
            f'<div class="section-label">{html.escape(t(lang, "response_b"))}</div>{text_html(row["response_b"])}'
            "</div>")


def quality_markdown(quality: dict[str, dict[str, Any]], lang: str) -> str:
    """Each annotator's labels per day and agreement with the others' majority (:mod:`labeling_ui.campaign`)."""
    days = next(iter(quality.values()))["per_day"] if quality else {}
    rows = [[name, q["labels"], *q["per_day"].values(),
             f"{q['majority_agreement']:.2f} ({q['compared']})" if q["majority_agreement"] is not None else None]
            for name, q in quality.items()]
    return (f"#### {t(lang, 'quality')}\n"
            + _md_table([t(lang, "col_annotator"), t(lang, "col_labels"), *(d[5:] for d in days),
                         t(lang, "col_majority")], rows))


#: The most items the item browser lists at once.
ITEM_LIST_LIMIT = 100


def campaign_tools(store: LabelStore, queue: LabelQueue, admin: Callable[[gr.Request | None], Annotator],
                   refresh: gr.Button, tab: gr.Tab) -> None:
    """The admin tab's item browser and annotator quality table, built in place (admins only, re-checked
    on every call; read-only)."""
    quality_md = gr.Markdown(elem_id="admin-quality")
    with gr.Accordion(UI("item_browser"), open=False, elem_id="item-browser"):
        with gr.Row():
            project = gr.Dropdown(store.project_names(), value=queue.project_name, label=UI("project"),
                                  elem_id="items-project", scale=1)
            search = gr.Textbox(label=UI("search_text"), max_lines=1, elem_id="items-search", scale=2)
        with gr.Row():
            status = gr.Dropdown([(str(UI("any")), "")] + [(str(UI(f"item_status_{s}")), s) for s in STATUSES],
                                 value="", label=UI("item_status"), elem_id="items-status")
            agreement = gr.Dropdown([(str(UI("any")), "")] + [(str(UI(f"agreement_{a}")), a) for a in AGREEMENTS],
                                    value="", label=UI("agreement"), elem_id="items-agreement")
            flagged = gr.Dropdown([(str(UI("any")), "")] + [(str(UI(f"flags_{f}")), f) for f in FLAG_FILTERS],
                                  value="", label=UI("flags"), elem_id="items-flags")
            btn_search = gr.Button(UI("search"), variant="primary", scale=0, elem_id="btn-items-search")
        item_list = gr.HTML(elem_id="items-list", js_on_load=None)
        item_pick = gr.Dropdown(choices=[], value=None, label=UI("pick_item"), elem_id="items-pick")
        item_view = gr.HTML(elem_id="item-detail", js_on_load=None)

    def rows_of(project_name: str | None) -> tuple[list[dict[str, Any]], int]:
        name = project_name if project_name in store.project_names() else queue.project_name
        overlap = store.project(name).overlap
        return item_rows(store.items(name), store.labels(name), overlap), overlap

    def on_items(project_name, text, status_value, agreement_value, flags_value, request: gr.Request):
        admin(request)
        lang = request_language(request)
        rows, overlap = rows_of(project_name)
        found = filter_items(rows, search=text or "", status=status_value or None,
                             agreement=agreement_value or None, flags=flags_value or None)
        shown = found[:ITEM_LIST_LIMIT]
        return (item_list_html(shown, len(found), overlap, lang),
                gr.update(choices=[(r["ext_id"], r["id"]) for r in shown], value=None), "")

    def on_item(project_name, item_id, request: gr.Request):
        admin(request)
        rows, _ = rows_of(project_name)
        row = next((r for r in rows if r["id"] == item_id), None)
        return "" if row is None else item_detail_html(row, request_language(request))

    def on_quality(request: gr.Request) -> str:
        admin(request)
        return quality_markdown(annotator_quality(store.labels(queue.project_name)), request_language(request))

    ui = dict(api_visibility="private", show_progress="hidden")
    filters = [project, search, status, agreement, flagged]
    btn_search.click(on_items, filters, [item_list, item_pick, item_view], **ui)
    search.submit(on_items, filters, [item_list, item_pick, item_view], **ui)
    item_pick.change(on_item, [project, item_pick], [item_view], **ui)
    refresh.click(on_quality, None, [quality_md], **ui)
    tab.select(on_quality, None, [quality_md], **ui)


#: The decisions a reviewer can record, strongest A first (stored order): ``(key, choice, strength)``.
DECISIONS = ([(f"A_{n}", "A", n) for n in (4, 3, 2, 1)] + [("tie", "tie", None), ("both_bad", "both_bad", None)]
             + [(f"B_{n}", "B", n) for n in (1, 2, 3, 4)])


def decision_name(decision: dict[str, Any], lang: str) -> str:
    """A recorded decision's choice in the UI's words (the same words as a label's)."""
    return label_choice_name(decision, lang)


def disagreement_list_html(rows: list[dict[str, Any]], total: int, lang: str) -> str:
    """The review tab's list: items whose labels disagree, with their current decision if any."""
    if not total:
        return f"<p>{html.escape(t(lang, 'no_disagreements'))}</p>"
    table = _html_table(_cols(lang, "item", "labels", "agreement", "decision", "prompt"),
                        [[r["ext_id"], r["n_labels"], r["agreement"],
                          decision_name(r["decision"], lang) if r["decision"] else None, _excerpt(r["prompt"])]
                         for r in rows], model_text=4)
    return f"<p>{html.escape(t(lang, 'disagreements_found', total=total, shown=len(rows)))}</p>{table}"


def review_detail_html(row: dict[str, Any], lang: str) -> str:
    """One disputed item: its current decision, every label and the texts (:func:`item_detail_html`)."""
    d = row["decision"]
    if d is None:
        head = t(lang, "no_decision")
    else:
        head = t(lang, "current_decision", reviewer=d["reviewer"], when=_when(d["created_at"]),
                 choice=decision_name(d, lang))
        flags = [f"{t(lang, 'col_flags_' + side)}: " + ", ".join(category_name(c, lang) for c in d[f"flags_{side}"])
                 for side in "ab" if d[f"flags_{side}"]]
        head = " · ".join([head, *flags, *([d["note"]] if d["note"] else [])])
    return f'<p class="current-decision">{html.escape(head)}</p>' + item_detail_html(row, lang)


def flags_fields(elem_prefix: str, note_key: str) -> tuple[gr.CheckboxGroup, gr.CheckboxGroup, gr.Textbox]:
    """The safety flags of each response and a note, built in place (the Label tab's fold, a reviewer's
    decision); ids ``{elem_prefix}flags-a``, ``...flags-b``, ``...note``."""
    categories = [(str(UI(f"category_{c}")), c) for c in CATEGORIES]     # (shown, value)
    with gr.Row():
        flags_a = gr.CheckboxGroup(categories, label=UI("flags_a"), elem_id=f"{elem_prefix}flags-a",
                                   elem_classes=["flags-group"])
        flags_b = gr.CheckboxGroup(categories, label=UI("flags_b"), elem_id=f"{elem_prefix}flags-b",
                                   elem_classes=["flags-group"])
    note = gr.Textbox(label=UI(note_key), lines=1, max_lines=4, elem_id=f"{elem_prefix}note")
    return flags_a, flags_b, note


def review_tools(store: LabelStore, queue: LabelQueue, reviewer: Callable[[gr.Request | None], Annotator],
                 tab: gr.Tab) -> None:
    """The Review tab, built in place (reviewers and admins, re-checked on every call): the items whose
    labels disagree, every label of the one picked, and the form that records a decision
    (:func:`labeling_ui.review.adjudicate`)."""
    gr.Markdown(UI("review_intro"))
    with gr.Row():
        project = gr.Dropdown(store.project_names(), value=queue.project_name, label=UI("project"),
                              elem_id="review-project", scale=1)
        search = gr.Textbox(label=UI("search_text"), max_lines=1, elem_id="review-search", scale=2)
        state = gr.Dropdown([(str(UI("any")), "")] + [(str(UI(f"review_state_{s}")), s) for s in REVIEW_STATES],
                            value="open", label=UI("review_state"), elem_id="review-state", scale=1)
        btn_list = gr.Button(UI("list_disagreements"), variant="primary", scale=0, elem_id="btn-review-list")
    review_list = gr.HTML(elem_id="review-list", js_on_load=None)
    pick = gr.Dropdown(choices=[], value=None, label=UI("pick_item"), elem_id="review-pick")
    detail = gr.HTML(elem_id="review-detail", js_on_load=None)
    with gr.Group(elem_id="decision-form"):
        decision = gr.Dropdown([(str(UI(f"choice_{key}")), key) for key, _, _ in DECISIONS], value=None,
                               label=UI("decision"), elem_id="decision")
        flags_a, flags_b, note = flags_fields("decision-", "decision_note")
        btn_save = gr.Button(UI("save_decision"), variant="primary", elem_id="btn-adjudicate")
    result = gr.Markdown(elem_id="decision-result")

    def rows_of(project_name: str | None, state_value: str | None) -> list[dict[str, Any]]:
        name = project_name if project_name in store.project_names() else queue.project_name
        rows = item_rows(store.items(name), store.labels(name), store.project(name).overlap)
        decided = {d["item_id"]: d for d in adjudications(store, name)}
        return disagreements(rows, decided, state=state_value or None)

    def on_list(project_name, text, state_value, request: gr.Request):
        reviewer(request)
        lang = request_language(request)
        found = filter_items(rows_of(project_name, state_value), search=text or "")
        shown = found[:ITEM_LIST_LIMIT]
        return (disagreement_list_html(shown, len(found), lang),
                gr.update(choices=[(r["ext_id"], r["id"]) for r in shown], value=None), "")

    def on_pick(project_name, item_id, request: gr.Request):
        reviewer(request)
        row = next((r for r in rows_of(project_name, None) if r["id"] == item_id), None)
        if row is None:
            return "", None, [], [], ""
        d = row["decision"]
        if d is None:
            return review_detail_html(row, request_language(request)), None, [], [], ""
        key = f"{d['choice']}_{d['strength']}" if d["choice"] in ("A", "B") else d["choice"]
        return review_detail_html(row, request_language(request)), key, d["flags_a"], d["flags_b"], d["note"]

    def on_save(project_name, item_id, key, chosen_a, chosen_b, text, request: gr.Request):
        me, lang = reviewer(request), request_language(request)
        if item_id is None:
            return t(lang, "pick_item_first"), gr.skip()
        picked = next(((choice, strength) for k, choice, strength in DECISIONS if k == key), None)
        if picked is None:
            return t(lang, "pick_decision"), gr.skip()
        row = next((r for r in rows_of(project_name, None) if r["id"] == item_id), None)
        if row is None:                          # only an item of the list: never an id from elsewhere
            return t(lang, "pick_item_first"), gr.skip()
        try:
            decision_id = adjudicate(store, item_id, me, picked[0], picked[1], chosen_a or [], chosen_b or [],
                                     text or "")
        except ReviewError as e:
            return t(lang, "decision_refused", error=safe_markdown(str(e))), gr.skip()
        row = next(r for r in rows_of(project_name, None) if r["id"] == item_id)
        return (t(lang, "decision_saved", id=decision_id, item=safe_markdown(row["ext_id"]),
                  choice=t(lang, f"choice_{key}")), review_detail_html(row, lang))

    ui = dict(api_visibility="private", show_progress="hidden")
    listing = [project, search, state]
    btn_list.click(on_list, listing, [review_list, pick, detail], **ui)
    search.submit(on_list, listing, [review_list, pick, detail], **ui)
    tab.select(on_list, listing, [review_list, pick, detail], **ui)
    pick.change(on_pick, [project, pick], [detail, decision, flags_a, flags_b, note], **ui)
    btn_save.click(on_save, [project, pick, decision, flags_a, flags_b, note], [result, detail], **ui)


def guidelines_by_language(guidelines: str | Mapping[str, str]) -> dict[str, str]:
    """The guidelines (Markdown) for each UI language. One text serves every language; a map gives each
    language its own (keys from :data:`labeling_ui.i18n.LANGUAGES`), and a language it leaves out is
    shown the English text (or, without one, the first given). No text at all: a note saying so."""
    if isinstance(guidelines, str):
        given = {lang: guidelines for lang in LANGUAGES} if guidelines.strip() else {}
    else:
        unknown = sorted(set(guidelines) - set(LANGUAGES))
        if unknown:
            raise UserError(f"label.guidelines: unknown language(s) {unknown}; expected some of {list(LANGUAGES)}")
        bad = sorted(lang for lang, text in guidelines.items() if not isinstance(text, str))
        if bad:
            raise UserError(f"label.guidelines.{bad[0]}: expected Markdown text, got {type(guidelines[bad[0]]).__name__}")
        given = {lang: text for lang, text in guidelines.items() if text.strip()}
    if not given:
        return {lang: t(lang, "no_guidelines") for lang in LANGUAGES}
    fallback = given.get(DEFAULT) or next(iter(given.values()))
    return {lang: given.get(lang, fallback) for lang in LANGUAGES}


def app_i18n(guidelines: str | Mapping[str, str]) -> gr.I18n:
    """The ``gr.I18n`` for ``launch()``: the UI catalogue plus this campaign's guidelines."""
    texts = guidelines_by_language(guidelines)
    return gr.I18n(**frontend_catalogue({lang: {"guidelines_text": text} for lang, text in texts.items()}))


def build_app(store: LabelStore, queue: LabelQueue, *, guidelines: str | Mapping[str, str] = "",
              export_fn: Callable[[], dict[str, Any]] | None = None, runs_dir: str | Path = "runs",
              reports_for: str = "admins") -> gr.Blocks:
    """The Blocks app (not launched; its text is in :mod:`labeling_ui.i18n`: launch it with
    ``i18n=app_i18n(guidelines)``). ``export_fn`` runs the export for the admin tab's button;
    ``runs_dir`` is the folder whose pipeline runs the Reports tab lists; ``reports_for``
    (``admins`` | ``everyone``) who may read them."""
    reports_for = ReportsFor.parse(reports_for, "label.reports_for")
    runs_root = Path(runs_dir)
    guidelines_by_language(guidelines)        # bad input fails here, before anything is served

    def user(request: gr.Request | None) -> Annotator:
        name = getattr(request, "username", None) if request is not None else None
        annotator = store.annotator(name)
        if annotator is None:
            raise gr.Error(t(request_language(request), "not_logged_in"), print_exception=False)
        return annotator

    def admin(request: gr.Request | None) -> Annotator:
        annotator = user(request)
        if not annotator.is_admin:
            raise gr.Error(t(request_language(request), "admins_only"), print_exception=False)
        return annotator

    def reviewer(request: gr.Request | None) -> Annotator:
        annotator = user(request)
        if not annotator.is_reviewer:
            raise gr.Error(t(request_language(request), "reviewers_only"), print_exception=False)
        return annotator

    def may_read_reports(annotator: Annotator) -> bool:
        return annotator.is_admin or reports_for == "everyone"

    def reader(request: gr.Request | None) -> Annotator:
        annotator = user(request)
        if not may_read_reports(annotator):
            raise gr.Error(t(request_language(request), "reports_admins_only"), print_exception=False)
        return annotator

    # ------------------------------------------------------------------ UI helpers
    def progress_md(name: str, lang: str) -> str:
        p = queue.progress(name)
        return t(lang, "progress", complete=p["project_complete"], total=p["project_items"], labeled=p["labeled"],
                 last_24h=p["labeled_24h"], skipped=p["skipped"])

    def item_outputs(name: str, lang: str, shown: Shown | None, status: str = "") -> tuple:
        if shown is None:
            view = (None, message_html(t(lang, "paused" if is_paused(store, name) else "all_done")), "", "")
        else:
            key = shown.assignment_id
            view = (key, prompt_html(shown.prompt, key=key), text_html(shown.response_left, key=key),
                    text_html(shown.response_right, key=key))
        return (*view, [], [], "", progress_md(name, lang), status)

    def keep_outputs(name: str, lang: str, status: str) -> tuple:
        return (gr.skip(),) * 7 + (progress_md(name, lang), status)

    def refused(name: str, lang: str, error: QueueError) -> tuple:
        """The next item, with what the queue's refusal means for the annotator."""
        key = QUEUE_ERRORS.get(str(error))
        if key is None:
            log.warning("a label by %s was refused: %s", name, error)
        return item_outputs(name, lang, queue.next_item(name), t(lang, key or "err_refused"))

    # ------------------------------------------------------------------ UI handlers
    def on_load(request: gr.Request):
        me, lang = user(request), request_language(request)
        shown = queue.next_item(me.name)
        return (*item_outputs(me.name, lang, shown), gr.update(visible=me.is_admin),
                gr.update(visible=me.is_reviewer), gr.update(visible=may_read_reports(me)),
                t(lang, "signed_in_as", name=safe_markdown(me.name), role=t(lang, f"role_{me.role}")))

    def label_handler(choice: str, strength: int | None, key: str):
        def handler(assignment, flags_left, flags_right, note, request: gr.Request):
            me, lang = user(request), request_language(request)
            if assignment is None:
                return keep_outputs(me.name, lang, t(lang, "nothing_to_label"))
            try:
                label_id, shown = queue.submit(me.name, assignment, choice, strength, flags_left or [],
                                               flags_right or [], note or "")
            except QueueError as e:
                return refused(me.name, lang, e)
            return item_outputs(me.name, lang, shown, t(lang, "saved", label_id=label_id,
                                                          choice=t(lang, f"choice_{key}")))
        handler.__name__ = f"label_{choice}" + (f"_{strength}" if strength else "")
        return handler

    def on_skip(assignment, request: gr.Request):
        me, lang = user(request), request_language(request)
        if assignment is None:
            return keep_outputs(me.name, lang, t(lang, "nothing_to_skip"))
        try:
            shown = queue.skip(me.name, assignment)
        except QueueError as e:
            return refused(me.name, lang, e)
        return item_outputs(me.name, lang, shown, t(lang, "skipped"))

    def on_undo(request: gr.Request):
        me, lang = user(request), request_language(request)
        return item_outputs(me.name, lang, queue.undo(me.name), t(lang, "undone"))

    def on_refresh(request: gr.Request):
        admin(request)
        return stats_markdown(project_stats(store, queue.project_name), request_language(request))

    def on_export(request: gr.Request):
        admin(request)
        lang = request_language(request)
        if export_fn is None:
            raise gr.Error(t(lang, "export_not_configured"))
        summary = export_fn()
        return (t(lang, "exported", rows=summary["rows"], path=summary.get("path", "?"))
                + f"\n\n```json\n{json.dumps(summary, indent=2)}\n```")

    def runs_by_name() -> dict[str, Path]:
        return {path.relative_to(runs_root).as_posix(): path for path in list_runs(runs_root)}

    def on_runs(request: gr.Request):
        reader(request)
        reports = {}
        for name, path in runs_by_name().items():
            try:
                reports[name] = build_run_report(path)
            except UserError:
                continue  # removed or emptied since it was listed
        return runs_markdown(runs_root, reports, request_language(request)), gr.update(choices=list(reports))

    def on_pick_run(name: str | None, request: gr.Request):
        reader(request)
        lang = request_language(request)
        path = runs_by_name().get(name or "")  # only a run we list ourselves: never a path from the client
        if path is None:
            return "", t(lang, "pick_run")
        if report_is_current(path):
            page, note = (path / "report.html").read_text(encoding="utf-8"), "run_report_file"
        else:
            try:
                page = render_run_report(build_run_report(path))
            except UserError as e:
                return "", t(lang, "report_error", error=safe_markdown(str(e)))
            note = "run_report_rendered"
        return report_frame(page, lang), t(lang, note, name=safe_markdown(name))

    # ------------------------------------------------------------------ bot API (unqueued fast paths)
    # These run on the event loop itself (async def, no thread hop): a call is a few sub-millisecond
    # SQLite statements, and writes are serialised anyway, so a pool of threads fighting over the
    # GIL and the write lock only adds latency. (A long import by another process holding the write
    # lock stalls them until it commits; busy_timeout bounds that.)
    def item_json(shown: Shown | None, me: Annotator) -> dict[str, Any]:
        if shown is None:
            if is_paused(store, me):
                return {"assignment": None, "done": False, "paused": True}
            return {"assignment": None, "done": True}
        return {"assignment": shown.assignment_id, "prompt": shown.prompt, "response_a": shown.response_left,
                "response_b": shown.response_right, "expires_at": shown.expires_at}

    async def next_item(request: gr.Request) -> dict:
        """The caller's current item (a new lease when needed)."""
        me = user(request)
        return item_json(queue.next_item(me), me)

    async def submit_label(request: gr.Request, assignment: int, choice: str, strength: int | None = None,
                           flags_a: list[str] | None = None, flags_b: list[str] | None = None, note: str = "",
                           time_ms: int | None = None) -> dict:
        """Label the caller's assignment (A/B = first/second shown); returns the label id and the next item."""
        me = user(request)
        try:
            label_id, shown = queue.submit(me, assignment, choice, strength, flags_a or [], flags_b or [],
                                           note or "", time_ms=time_ms if isinstance(time_ms, int) else None)
        except QueueError as e:
            return {"ok": False, "error": str(e), "next": item_json(queue.next_item(me), me)}
        return {"ok": True, "label_id": label_id, "next": item_json(shown, me)}

    async def skip_item(request: gr.Request, assignment: int) -> dict:
        """Skip the caller's assignment; returns the next item."""
        me = user(request)
        try:
            return {"ok": True, "next": item_json(queue.skip(me, assignment), me)}
        except QueueError as e:
            return {"ok": False, "error": str(e), "next": item_json(queue.next_item(me), me)}

    async def undo_label(request: gr.Request) -> dict:
        """Undo the caller's last label; its item is returned as the current one."""
        me = user(request)
        return {"ok": True, "next": item_json(queue.undo(me), me)}

    async def my_progress(request: gr.Request) -> dict:
        """The caller's own progress counts."""
        return queue.progress(user(request))

    # ------------------------------------------------------------------ layout
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
                with gr.Column(elem_id="label-tab"):
                    # Each text box carries its own heading (our template: the heading is the component's
                    # label, which Gradio translates, and the text goes into ${value}).
                    prompt_view = gr.HTML(elem_id="prompt", js_on_load=None, label=UI("prompt"), html_template=(
                        '<div class="section-label" id="prompt-label">${label}</div>${value}'))
                    with gr.Row(equal_height=True, elem_id="responses"):
                        left_view = gr.HTML(elem_id="response-a", js_on_load=None, min_width=300,
                                            label=UI("response_a"),
                                            html_template='<div class="section-label sticky">${label}</div>${value}')
                        right_view = gr.HTML(elem_id="response-b", js_on_load=None, min_width=300,
                                             label=UI("response_b"),
                                             html_template='<div class="section-label sticky">${label}</div>${value}')
                    with gr.Row(elem_id="choice-bar", elem_classes=["choice-bar"]):
                        choice_buttons = [
                            (gr.Button(UI(f"button_{key}"), elem_id=elem_id, min_width=0,
                                       variant="primary" if strength else "secondary"), choice, strength, key)
                            for choice, strength, elem_id, key in CHOICES]
                    with gr.Row(elem_id="status-row", equal_height=True):
                        status = gr.Markdown(elem_id="status")
                        gr.HTML('<div id="key-hint" aria-live="polite"></div>', js_on_load=None)
                        btn_skip = gr.Button(UI("skip"), size="sm", scale=0, min_width=90, elem_id="btn-skip")
                        btn_undo = gr.Button(UI("undo"), size="sm", scale=0, min_width=90, elem_id="btn-undo")
                    gr.Markdown(UI("keys_help"), elem_classes=["keys"])
                    with gr.Accordion(UI("flags_and_note"), open=False, elem_id="flags"):
                        flags_left, flags_right, note = flags_fields("", "note")
                    with gr.Accordion(UI("guidelines"), open=False, elem_id="guidelines"):
                        gr.Markdown(UI("guidelines_text"), elem_id="guidelines-text")
            with gr.Tab(UI("tab_admin"), id="admin", visible=False, elem_id="tab-admin") as admin_tab:
                btn_refresh = gr.Button(UI("refresh_stats"), elem_id="btn-refresh")
                btn_export = gr.Button(UI("export"), variant="primary", elem_id="btn-export")
                export_md = gr.Markdown(elem_id="export-result")
                stats_md = gr.Markdown(elem_id="admin-stats")
                campaign_tools(store, queue, admin, btn_refresh, admin_tab)
                admin_tools(store, queue, admin, btn_refresh, admin_tab)
            with gr.Tab(UI("tab_review"), id="review", visible=False, elem_id="tab-review") as review_tab:
                review_tools(store, queue, reviewer, review_tab)
            with gr.Tab(UI("tab_reports"), id="reports", visible=False, elem_id="tab-reports") as reports_tab:
                gr.Markdown(UI("reports_intro"))
                btn_runs = gr.Button(UI("refresh_runs"), size="sm", elem_id="btn-runs-refresh")
                runs_md = gr.Markdown(elem_id="runs-list")
                run_pick = gr.Dropdown(choices=[], value=None, label=UI("run"), elem_id="run-pick")
                report_note = gr.Markdown(elem_id="report-note")
                report_view = gr.HTML(elem_id="run-report", js_on_load=None)

        item_out = [assignment, prompt_view, left_view, right_view, flags_left, flags_right, note, progress, status]
        ui = dict(api_visibility="private", show_progress="hidden")
        demo.load(on_load, None, [*item_out, admin_tab, review_tab, reports_tab, whoami], **ui)
        label_in = [assignment, flags_left, flags_right, note]
        for button, choice, strength, key in choice_buttons:
            button.click(label_handler(choice, strength, key), label_in, item_out, **ui)
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


def launch(store: LabelStore, queue: LabelQueue, *, host: str = "127.0.0.1", port: int = 7860,
           guidelines: str | Mapping[str, str] = "", export_fn: Callable[[], dict[str, Any]] | None = None,
           concurrency_limit: int = 32, max_threads: int = 40, block: bool = True,
           runs_dir: str | Path = "runs", reports_for: str = "admins") -> gr.Blocks:
    """Build and start the app; with ``block=False`` return once it listens (tests). ``guidelines``: one
    Markdown text for every language, or one per language (see :func:`guidelines_by_language`)."""
    demo = build_app(store, queue, guidelines=guidelines, export_fn=export_fn, runs_dir=runs_dir,
                     reports_for=reports_for)
    demo.queue(default_concurrency_limit=concurrency_limit, api_open=False)
    auth = Auth(store)
    options = launch_options(demo)
    options["app_kwargs"] = auth.app_kwargs(options["app_kwargs"])
    demo.launch(server_name=host, server_port=port, auth=auth.check, auth_message=login_message(),
                max_threads=max_threads, prevent_thread_lock=not block, show_error=True, quiet=True,
                head=HEAD, css=CSS, theme=THEME, ssr_mode=False, enable_monitoring=False, mcp_server=False,
                footer_links=[], i18n=app_i18n(guidelines), **options)
    return demo


def read_guidelines(text: str | Mapping[str, str], path: str | None) -> str | dict[str, str]:
    """The guidelines to serve: ``label.guidelines`` (a text, or a map language -> text), or the file
    ``label.guidelines_file`` when set. A file name with ``{lang}`` in it names one file per language
    (``guidelines.{lang}.md``: ``guidelines.en.md``, ``guidelines.zh-CN.md``), and each must exist."""
    if not path:
        return text if isinstance(text, str) else dict(text)
    if "{lang}" not in path:
        return _read_text(Path(path))
    return {lang: _read_text(Path(path.replace("{lang}", lang))) for lang in LANGUAGES}


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"label.guidelines_file: {path} does not exist")
    return path.read_text(encoding="utf-8")
