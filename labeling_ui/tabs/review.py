"""The Review tab (reviewers and admins, :meth:`labeling_ui.access.Access.reviewer` on every handler):
the items whose labels disagree, every label of the one picked, and the form that records a decision
(:func:`labeling_ui.review.adjudicate`)."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from labeling_ui.access import Access, Caller
from labeling_ui.campaign import filter_items
from labeling_ui.i18n import t
from labeling_ui.queue import LabelQueue
from labeling_ui.review import REVIEW_STATES, ReviewError, adjudicate, adjudications, disagreements
from labeling_ui.store import LabelStore
from labeling_ui.tabs.label import flags_fields
from labeling_ui.views import (
    EVENT,
    ITEM_LIST_LIMIT,
    UI,
    category_name,
    choices_of,
    cols,
    excerpt,
    html_table,
    item_detail_html,
    label_choice_name,
    project_rows,
    safe_markdown,
    when,
)

#: The decisions a reviewer can record, strongest A first (stored order): ``(key, choice, strength)``.
DECISIONS = ([(f"A_{n}", "A", n) for n in (4, 3, 2, 1)] + [("tie", "tie", None), ("both_bad", "both_bad", None)]
             + [(f"B_{n}", "B", n) for n in (1, 2, 3, 4)])


def disagreement_list_html(rows: list[dict[str, Any]], total: int, lang: str) -> str:
    """The tab's list: items whose labels disagree, with their current decision if any."""
    if not total:
        return f"<p>{html.escape(t(lang, 'no_disagreements'))}</p>"
    table = html_table(cols(lang, "item", "labels", "agreement", "decision", "prompt"),
                       [[r["ext_id"], r["n_labels"], r["agreement"],
                         label_choice_name(r["decision"], lang) if r["decision"] else None, excerpt(r["prompt"])]
                        for r in rows], model_text=4)
    return f"<p>{html.escape(t(lang, 'disagreements_found', total=total, shown=len(rows)))}</p>{table}"


def review_detail_html(row: dict[str, Any], lang: str) -> str:
    """One disputed item: its current decision, every label and the texts
    (:func:`labeling_ui.views.item_detail_html`)."""
    d = row["decision"]
    if d is None:
        head = t(lang, "no_decision")
    else:
        head = t(lang, "current_decision", reviewer=d["reviewer"], when=when(d["created_at"]),
                 choice=label_choice_name(d, lang))
        flags = [f"{t(lang, 'col_flags_' + side)}: " + ", ".join(category_name(c, lang) for c in d[f"flags_{side}"])
                 for side in "ab" if d[f"flags_{side}"]]
        head = " · ".join([head, *flags, *([d["note"]] if d["note"] else [])])
    return f'<p class="current-decision">{html.escape(head)}</p>' + item_detail_html(row, lang)


class ReviewTab:
    """The Review tab over the store's projects (``queue``'s first)."""

    def __init__(self, store: LabelStore, queue: LabelQueue, access: Access) -> None:
        self.store, self.queue, self.access = store, queue, access

    def build(self, tab: gr.Tab) -> None:
        """The tab's components, built in place inside ``tab``, and its events (the list is refreshed when
        ``tab`` is selected)."""
        reviewer = self.access.reviewer
        gr.Markdown(UI("review_intro"))
        with gr.Row():
            project = gr.Dropdown(self.store.project_names(), value=self.queue.project_name, label=UI("project"),
                                  elem_id="review-project", scale=1)
            search = gr.Textbox(label=UI("search_text"), max_lines=1, elem_id="review-search", scale=2)
            state = gr.Dropdown(choices_of(REVIEW_STATES, "review_state"), value="open", label=UI("review_state"),
                                elem_id="review-state", scale=1)
            btn_list = gr.Button(UI("list_disagreements"), variant="primary", scale=0, elem_id="btn-review-list")
        review_list = gr.HTML(elem_id="review-list", js_on_load=None)
        pick = gr.Dropdown(choices=[], value=None, label=UI("pick_item"), elem_id="review-pick")
        detail = gr.HTML(elem_id="review-detail", js_on_load=None)
        with gr.Group(elem_id="decision-form"):
            decision = gr.Dropdown(choices_of([key for key, _, _ in DECISIONS], "choice", any_first=False),
                                   value=None, label=UI("decision"), elem_id="decision")
            flags_a, flags_b, note = flags_fields("decision-", "decision_note")
            btn_save = gr.Button(UI("save_decision"), variant="primary", elem_id="btn-adjudicate")
        result = gr.Markdown(elem_id="decision-result")

        listing = [project, search, state]
        for trigger in (btn_list.click, search.submit, tab.select):
            trigger(reviewer(self.on_list), listing, [review_list, pick, detail], **EVENT)
        pick.change(reviewer(self.on_pick), [project, pick], [detail, decision, flags_a, flags_b, note], **EVENT)
        btn_save.click(reviewer(self.on_save), [project, pick, decision, flags_a, flags_b, note], [result, detail],
                       **EVENT)

    def rows(self, project: str | None, state: str | None) -> list[dict[str, Any]]:
        """The disputed items of ``project`` in review ``state`` (``None``: any), each with its decision."""
        name, rows, _ = project_rows(self.store, project, self.queue.project_name)
        decided = {d["item_id"]: d for d in adjudications(self.store, name)}
        return disagreements(rows, decided, state=state or None)

    def row(self, project: str | None, item_id: int | None) -> dict[str, Any] | None:
        """The disputed item ``item_id`` of ``project``: only an item of the list, never an id from elsewhere."""
        return next((r for r in self.rows(project, None) if r["id"] == item_id), None)

    def on_list(self, me: Caller, project, text, state):
        found = filter_items(self.rows(project, state), search=text or "")
        shown = found[:ITEM_LIST_LIMIT]
        return (disagreement_list_html(shown, len(found), me.lang),
                gr.update(choices=[(r["ext_id"], r["id"]) for r in shown], value=None), "")

    def on_pick(self, me: Caller, project, item_id):
        row = self.row(project, item_id)
        if row is None:
            return "", None, [], [], ""
        d = row["decision"]
        if d is None:
            return review_detail_html(row, me.lang), None, [], [], ""
        key = f"{d['choice']}_{d['strength']}" if d["choice"] in ("A", "B") else d["choice"]
        return review_detail_html(row, me.lang), key, d["flags_a"], d["flags_b"], d["note"]

    def on_save(self, me: Caller, project, item_id, key, chosen_a, chosen_b, text):
        if item_id is None:
            return t(me.lang, "pick_item_first"), gr.skip()
        picked = next(((choice, strength) for k, choice, strength in DECISIONS if k == key), None)
        if picked is None:
            return t(me.lang, "pick_decision"), gr.skip()
        if self.row(project, item_id) is None:
            return t(me.lang, "pick_item_first"), gr.skip()
        try:
            decision_id = adjudicate(self.store, item_id, me.annotator, picked[0], picked[1], chosen_a or [],
                                     chosen_b or [], text or "")
        except ReviewError as e:
            return t(me.lang, "decision_refused", error=safe_markdown(str(e))), gr.skip()
        row = self.row(project, item_id)
        return (t(me.lang, "decision_saved", id=decision_id, item=safe_markdown(row["ext_id"]),
                  choice=t(me.lang, f"choice_{key}")), review_detail_html(row, me.lang))
