"""The Admin tab (admins only, :meth:`labeling_ui.access.Access.admin` on every handler): the campaign's
statistics and the export, each annotator's quality, the item browser, the accounts (add, reset a
password, deactivate / reactivate, pause) with the gold-accuracy pause rule, and recent notes.

Deactivating an account or giving it a new password revokes its sessions at once (see
:mod:`labeling_ui.auth`); an admin cannot deactivate themself (that would lock the last admin out). A
password typed here is sent once to the server, hashed there and never shown again (the field is
cleared after each action).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

import gradio as gr

from alignment.errors import UserError
from labeling_ui.access import Access, Caller
from labeling_ui.agreement import project_stats
from labeling_ui.campaign import AGREEMENTS, FLAG_FILTERS, STATUSES, annotator_quality, filter_items
from labeling_ui.i18n import DEFAULT, t
from labeling_ui.queue import LabelQueue
from labeling_ui.review import pause, pause_rule, pause_states, set_pause_rule, unpause
from labeling_ui.store import ROLES, Annotator, LabelStore
from labeling_ui.views import (
    EVENT,
    ITEM_LIST_LIMIT,
    UI,
    category_name,
    choice_name,
    choices_of,
    cols,
    excerpt,
    html_table,
    item_detail_html,
    md_table,
    project_rows,
    safe_markdown,
    when,
)


# ------------------------------------------------------------------------------------------ what it shows
def stats_markdown(stats: dict[str, Any], lang: str = DEFAULT) -> str:
    """The tab's statistics (:func:`labeling_ui.agreement.project_stats`) as Markdown in ``lang``."""
    it, lab, ag = stats["items"], stats["labels"], stats["agreement"]
    choices = ", ".join(f"{choice_name(k, lang)}: {v}" for k, v in sorted(lab["choices"].items()))
    out = [f"### {t(lang, 'stats_project', project=safe_markdown(stats['project']), overlap=stats['overlap'])}",
           md_table(cols(lang, "items", "complete", "in_progress", "untouched", "gold", "active_leases", "skips"),
                    [[it["total"], it["complete"], it["in_progress"], it["untouched"], it["gold"],
                      it["active_leases"], it["skips"]]]),
           "\n" + t(lang, "stats_labels", total=lab["total"], regular=lab["regular"], gold=lab["gold"],
                    choices=choices or "–"),
           f"\n### {t(lang, 'stats_per_annotator')}",
           md_table(cols(lang, "annotator", "labels", "last_hour", "median_time", "gold_accuracy",
                         "picked_first", "ties", "both_bad"),
                    [[n, a["labels"], a["last_hour"], a["median_time_s"],
                      (f"{a['gold_accuracy']:.2f} ({a['gold_labels']})" if a["gold_accuracy"] is not None else None),
                      a["picked_first_shown"], a["ties"], a["both_bad"]]
                     for n, a in stats["per_annotator"].items()]),
           f"\n### {t(lang, 'stats_per_hour')}",
           md_table(cols(lang, "hour", "labels"), [[h, n] for h, n in stats["per_hour"].items()]),
           f"\n### {t(lang, 'stats_agreement')}",
           md_table(cols(lang, "pairs", "raw_with_ties", "pairs_without_ties", "raw_without_ties", "alpha"),
                    [[ag["pairs"], ag["with_ties"], ag["pairs_without_ties"], ag["without_ties"],
                      ag["krippendorff_alpha_ordinal"]]]),
           f"\n**{t(lang, 'stats_kappa')}**",
           md_table(cols(lang, "annotators", "shared_items", "kappa", "raw"),
                    [[" / ".join(k["annotators"]), k["items"], k["kappa"], k["raw"]] for k in ag["cohen_kappa"]]),
           f"\n### {t(lang, 'stats_safety')}",
           t(lang, "stats_flagged", n=stats["safety_flags"]["a_or_b_flagged_labels"]) + "\n",
           md_table(cols(lang, "category", "flagging"),
                    [[category_name(c, lang), n] for c, n in stats["safety_flags"]["by_category"].items() if n])]
    return "\n".join(out)


def notes_markdown(notes: list[dict[str, Any]], lang: str = DEFAULT) -> str:
    """The table of recent notes (every cell escaped by :func:`labeling_ui.views.md_table`)."""
    if not notes:
        return t(lang, "no_notes")
    return md_table(cols(lang, "label", "item", "annotator", "choice", "note", "when"),
                    [[f"#{n['label_id']}" + (t(lang, "withdrawn") if n["withdrawn"] else ""), n["item"],
                      n["annotator"], choice_name(n["choice"], lang), n["note"], when(n["created_at"])]
                     for n in notes])


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
            shown = t(lang, f"state_paused_{state['reason']}", when=when(state["paused_at"]))
        accuracy = (f"{state['gold_accuracy']:.2f} ({state['gold_counted']})"
                    if state["gold_accuracy"] is not None else None)
        rows.append([name, shown, accuracy])
    return (f"#### {t(lang, 'pause_states')}\n{head}\n\n"
            + md_table(cols(lang, "annotator", "account_state", "gold_counted"), rows))


def item_list_html(rows: list[dict[str, Any]], total: int, overlap: int, lang: str) -> str:
    """The item browser's result list (the first ``len(rows)`` of ``total`` matches)."""
    if not total:
        return f"<p>{html.escape(t(lang, 'no_items'))}</p>"
    table = html_table(cols(lang, "item", "status", "labels", "agreement", "flags", "prompt"),
                       [[r["ext_id"], t(lang, f"item_status_{r['status']}"),
                         f"{r['n_labels']}" if r["status"] == "gold" else f"{r['n_labels']}/{overlap}",
                         r["agreement"], ", ".join(category_name(c, lang) for c in r["flags"]) or None,
                         excerpt(r["prompt"])] for r in rows], model_text=5)
    return f"<p>{html.escape(t(lang, 'items_found', total=total, shown=len(rows)))}</p>{table}"


def quality_markdown(quality: dict[str, dict[str, Any]], lang: str) -> str:
    """Each annotator's labels per day and agreement with the others' majority (:mod:`labeling_ui.campaign`)."""
    days = next(iter(quality.values()))["per_day"] if quality else {}
    rows = [[name, q["labels"], *q["per_day"].values(),
             f"{q['majority_agreement']:.2f} ({q['compared']})" if q["majority_agreement"] is not None else None]
            for name, q in quality.items()]
    return (f"#### {t(lang, 'quality')}\n"
            + md_table([t(lang, "col_annotator"), t(lang, "col_labels"), *(d[5:] for d in days),
                        t(lang, "col_majority")], rows))


# ------------------------------------------------------------------------------------------ the tab
class AdminTab:
    """The Admin tab of ``queue``'s project; ``export_fn`` runs the export for its button."""

    def __init__(self, store: LabelStore, queue: LabelQueue, access: Access,
                 export_fn: Callable[[], dict[str, Any]] | None = None) -> None:
        self.store, self.queue, self.access, self.export_fn = store, queue, access, export_fn

    def build(self, tab: gr.Tab) -> None:
        """The tab's components, built in place inside ``tab``, and its events (refreshed when ``tab`` is
        selected)."""
        admin = self.access.admin
        refresh = gr.Button(UI("refresh_stats"), elem_id="btn-refresh")
        btn_export = gr.Button(UI("export"), variant="primary", elem_id="btn-export")
        export_md = gr.Markdown(elem_id="export-result")
        stats_md = gr.Markdown(elem_id="admin-stats")
        quality_md = gr.Markdown(elem_id="admin-quality")
        self._item_browser()
        notes_md, pause_md = self._accounts()
        for handler, output in ((self.on_quality, quality_md), (self.on_notes, notes_md),
                                (self.on_states, pause_md), (self.on_refresh, stats_md)):
            refresh.click(admin(handler), None, [output], **EVENT)
            tab.select(admin(handler), None, [output], **EVENT)
        btn_export.click(admin(self.on_export), None, [export_md], **EVENT)

    def _item_browser(self) -> None:
        """The item browser: search the project's items, read one with every label in force (read-only)."""
        with gr.Accordion(UI("item_browser"), open=False, elem_id="item-browser"):
            with gr.Row():
                project = gr.Dropdown(self.store.project_names(), value=self.queue.project_name, label=UI("project"),
                                      elem_id="items-project", scale=1)
                search = gr.Textbox(label=UI("search_text"), max_lines=1, elem_id="items-search", scale=2)
            with gr.Row():
                status = gr.Dropdown(choices_of(STATUSES, "item_status"), value="", label=UI("item_status"),
                                     elem_id="items-status")
                agreement = gr.Dropdown(choices_of(AGREEMENTS, "agreement"), value="", label=UI("agreement"),
                                        elem_id="items-agreement")
                flagged = gr.Dropdown(choices_of(FLAG_FILTERS, "flags"), value="", label=UI("flags"),
                                      elem_id="items-flags")
                btn_search = gr.Button(UI("search"), variant="primary", scale=0, elem_id="btn-items-search")
            item_list = gr.HTML(elem_id="items-list", js_on_load=None)
            item_pick = gr.Dropdown(choices=[], value=None, label=UI("pick_item"), elem_id="items-pick")
            item_view = gr.HTML(elem_id="item-detail", js_on_load=None)
        filters = [project, search, status, agreement, flagged]
        btn_search.click(self.access.admin(self.on_items), filters, [item_list, item_pick, item_view], **EVENT)
        search.submit(self.access.admin(self.on_items), filters, [item_list, item_pick, item_view], **EVENT)
        item_pick.change(self.access.admin(self.on_item), [project, item_pick], [item_view], **EVENT)

    def _accounts(self) -> tuple[gr.Markdown, gr.Markdown]:
        """The accounts, the pause rule and recent notes; returns the notes and the pause states' views."""
        admin = self.access.admin
        with gr.Accordion(UI("accounts_and_notes"), open=True, elem_id="admin-tools"):
            with gr.Row():
                account = gr.Textbox(label=UI("account_name"), max_lines=1, scale=2, elem_id="account-name")
                password = gr.Textbox(label=UI("new_password"), type="password", max_lines=1, scale=2,
                                      elem_id="account-password")
                role = gr.Dropdown(choices_of(ROLES, "role", any_first=False), value="annotator", label=UI("role"),
                                   scale=1, elem_id="account-role")
            with gr.Row():
                buttons = {key: gr.Button(UI(key), variant=variant, size="sm", scale=0, elem_id=elem_id)
                           for key, variant, elem_id in (
                               ("add_account", "primary", "btn-add-account"),
                               ("reset_password", "secondary", "btn-reset-password"),
                               ("deactivate", "stop", "btn-deactivate"), ("reactivate", "secondary", "btn-reactivate"),
                               ("pause", "stop", "btn-pause"), ("unpause", "secondary", "btn-unpause"))}
            account_md = gr.Markdown(elem_id="account-result")
            with gr.Row(equal_height=True):
                rule = pause_rule(self.store)
                threshold = gr.Number(rule.threshold if rule else None, label=UI("pause_rule"), minimum=0, maximum=1,
                                      step=0.05, elem_id="pause-threshold")
                min_gold = gr.Number(rule.min_gold if rule else 10, label=UI("pause_min_gold"), minimum=1,
                                     precision=0, elem_id="pause-min-gold")
                btn_rule = gr.Button(UI("save_pause_rule"), size="sm", scale=0, elem_id="btn-pause-rule")
            pause_md = gr.Markdown(elem_id="pause-states")
            notes_md = gr.Markdown(elem_id="admin-notes")
        buttons["add_account"].click(admin(self.on_add_account), [account, password, role], [account_md, password],
                                     **EVENT)
        buttons["reset_password"].click(admin(self.on_reset_password), [account, password], [account_md, password],
                                        **EVENT)
        buttons["deactivate"].click(admin(self.set_active(False)), [account], [account_md], **EVENT)
        buttons["reactivate"].click(admin(self.set_active(True)), [account], [account_md], **EVENT)
        buttons["pause"].click(admin(self.on_pause), [account], [account_md, pause_md], **EVENT)
        buttons["unpause"].click(admin(self.on_unpause), [account], [account_md, pause_md], **EVENT)
        btn_rule.click(admin(self.on_rule), [threshold, min_gold], [account_md, pause_md], **EVENT)
        return notes_md, pause_md

    # ------------------------------------------------------------------ statistics, export, items
    def on_refresh(self, me: Caller) -> str:
        return stats_markdown(project_stats(self.store, self.queue.project_name), me.lang)

    def on_export(self, me: Caller) -> str:
        if self.export_fn is None:
            raise gr.Error(t(me.lang, "export_not_configured"))
        summary = self.export_fn()
        return (t(me.lang, "exported", rows=summary["rows"], path=summary.get("path", "?"))
                + f"\n\n```json\n{json.dumps(summary, indent=2)}\n```")

    def on_quality(self, me: Caller) -> str:
        return quality_markdown(annotator_quality(self.store.labels(self.queue.project_name)), me.lang)

    def on_items(self, me: Caller, project, text, status, agreement, flags):
        _, rows, overlap = project_rows(self.store, project, self.queue.project_name)
        found = filter_items(rows, search=text or "", status=status or None, agreement=agreement or None,
                             flags=flags or None)
        shown = found[:ITEM_LIST_LIMIT]
        return (item_list_html(shown, len(found), overlap, me.lang),
                gr.update(choices=[(r["ext_id"], r["id"]) for r in shown], value=None), "")

    def on_item(self, me: Caller, project, item_id):
        _, rows, _ = project_rows(self.store, project, self.queue.project_name)
        row = next((r for r in rows if r["id"] == item_id), None)
        return "" if row is None else item_detail_html(row, me.lang)

    # ------------------------------------------------------------------ accounts
    def accounts(self) -> dict[str, Annotator]:
        return {a.name: a for a in self.store.annotators()}

    def set_active(self, active: bool):
        def handler(me: Caller, name: str) -> str:
            name = (name or "").strip()
            if not active and name == me.name:
                return t(me.lang, "cannot_deactivate_self")
            if name not in self.accounts():
                return t(me.lang, "no_such_account", name=safe_markdown(name))
            try:
                (self.store.reactivate_annotator if active else self.store.deactivate_annotator)(name)
            except UserError:      # removed since we looked
                return t(me.lang, "no_such_account", name=safe_markdown(name))
            return t(me.lang, "reactivated" if active else "deactivated", name=safe_markdown(name))
        handler.__name__ = "on_reactivate" if active else "on_deactivate"
        return handler

    def on_add_account(self, me: Caller, name: str, new_password: str, new_role: str) -> tuple[str, str]:
        name = (name or "").strip()
        if name in self.accounts():
            return t(me.lang, "account_exists", name=safe_markdown(name)), ""
        try:
            self.store.add_annotator(name, new_password or "", new_role)
        except UserError:          # the store's rules for names and passwords (Gradio checks the role)
            return t(me.lang, "bad_account"), ""
        return t(me.lang, "account_added", name=safe_markdown(name), role=t(me.lang, f"role_{new_role}")), ""

    def on_reset_password(self, me: Caller, name: str, new_password: str) -> tuple[str, str]:
        name = (name or "").strip()
        known = self.accounts().get(name)
        if known is None:
            return t(me.lang, "no_such_account", name=safe_markdown(name)), ""
        if not known.active:       # a new password would let a deactivated account back in
            return t(me.lang, "reset_inactive", name=safe_markdown(name)), ""
        try:
            self.store.add_annotator(name, new_password or "", known.role, update=True)
        except UserError:
            return t(me.lang, "bad_account"), ""
        return t(me.lang, "password_reset", name=safe_markdown(name)), ""

    def on_notes(self, me: Caller) -> str:
        return f"#### {t(me.lang, 'recent_notes')}\n" + notes_markdown(self.store.recent_notes(self.queue.project_name),
                                                                     me.lang)

    def on_pause(self, me: Caller, name: str) -> tuple[str, str]:
        name = (name or "").strip()
        if name not in self.accounts():
            return t(me.lang, "no_such_account", name=safe_markdown(name)), gr.skip()
        if self.accounts()[name].paused:
            return t(me.lang, "already_paused", name=safe_markdown(name)), gr.skip()
        leases = pause(self.store, name)
        return (t(me.lang, "paused_account", name=safe_markdown(name), leases=leases),
                pause_markdown(self.store, me.lang))

    def on_unpause(self, me: Caller, name: str) -> tuple[str, str]:
        name = (name or "").strip()
        if name not in self.accounts():
            return t(me.lang, "no_such_account", name=safe_markdown(name)), gr.skip()
        if not unpause(self.store, name):
            return t(me.lang, "not_paused", name=safe_markdown(name)), gr.skip()
        return t(me.lang, "unpaused_account", name=safe_markdown(name)), pause_markdown(self.store, me.lang)

    def on_rule(self, me: Caller, value: float | None, least: float | None) -> tuple[str, str]:
        try:
            whole = int(least) if least is not None and float(least).is_integer() else least
            set_pause_rule(self.store, None if value in (None, 0) else float(value), whole)
        except (UserError, TypeError, ValueError):
            return t(me.lang, "bad_pause_rule"), gr.skip()
        return "", pause_markdown(self.store, me.lang)

    def on_states(self, me: Caller) -> str:
        return pause_markdown(self.store, me.lang)
