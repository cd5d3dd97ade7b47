"""The Label tab: one item at a time (the prompt, the two responses side by side), the choice bar, skip and
undo, the safety flags and a note, and the guidelines one click away. The keyboard shortcuts live in
``labeling_ui/static/labeling.js``."""

from __future__ import annotations

import logging

import gradio as gr

from alignment.safety.categories import CATEGORIES
from labeling_ui.access import Access, Caller
from labeling_ui.i18n import t
from labeling_ui.queue import PAUSED, LabelQueue, QueueError, Shown
from labeling_ui.render import message_html, prompt_html, text_html
from labeling_ui.review import is_paused
from labeling_ui.store import Annotator, LabelStore
from labeling_ui.views import EVENT, UI

log = logging.getLogger(__name__)

#: The choice bar, left to right: A's strengths strongest first, the two neutral choices, then B's
#: strengths weakest first, mirroring the two responses above it. (choice, strength, elem_id, key): the
#: button's text is ``button_<key>`` in :mod:`labeling_ui.i18n` (with its shortcut), ``choice_<key>``
#: names the choice in the status line.
CHOICES = ([("A", s, f"btn-a-{s}", f"A_{s}") for s in (4, 3, 2, 1)]
           + [("tie", None, "btn-tie", "tie"), ("both_bad", None, "btn-both-bad", "both_bad")]
           + [("B", s, f"btn-b-{s}", f"B_{s}") for s in (1, 2, 3, 4)])

#: What a :class:`QueueError` from a UI action means, in the words of the status line (the queue's own
#: messages are for the bot API and the logs).
QUEUE_ERRORS = {
    "no such assignment": "err_not_yours",
    "this item was skipped": "err_was_skipped",
    "the lease on this item expired and it has all its labels now": "err_lease_expired",
    "unknown or deactivated annotator": "err_account",
    PAUSED: "err_paused",
}

#: A text box's heading is its (translated) label; the text goes into ``${value}``.
_HEADED = '<div class="section-label{extra}"{attrs}>${{label}}</div>${{value}}'


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


class LabelTab:
    """The Label tab of ``queue``'s project, for every logged-in account (:meth:`Access.user`)."""

    def __init__(self, store: LabelStore, queue: LabelQueue, access: Access) -> None:
        self.store, self.queue, self.access = store, queue, access

    def build(self, assignment: gr.State, progress: gr.Markdown) -> None:
        """The tab's components, built in place, and its events. ``assignment`` holds the shown item's
        assignment, ``progress`` is the header's progress line. :attr:`outputs` are what showing an item
        writes (:meth:`item_outputs`)."""
        with gr.Column(elem_id="label-tab"):
            prompt_view = gr.HTML(elem_id="prompt", js_on_load=None, label=UI("prompt"),
                                  html_template=_HEADED.format(extra="", attrs=' id="prompt-label"'))
            with gr.Row(equal_height=True, elem_id="responses"):
                left_view, right_view = (
                    gr.HTML(elem_id=elem_id, js_on_load=None, min_width=300, label=UI(key),
                            html_template=_HEADED.format(extra=" sticky", attrs=""))
                    for elem_id, key in (("response-a", "response_a"), ("response-b", "response_b")))
            with gr.Row(elem_id="choice-bar", elem_classes=["choice-bar"]):
                buttons = [(gr.Button(UI(f"button_{key}"), elem_id=elem_id, min_width=0,
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
        self.outputs = [assignment, prompt_view, left_view, right_view, flags_left, flags_right, note, progress,
                        status]
        label_in = [assignment, flags_left, flags_right, note]
        for button, choice, strength, key in buttons:
            button.click(self.access.user(self.label_handler(choice, strength, key)), label_in, self.outputs,
                         **EVENT)
        btn_skip.click(self.access.user(self.on_skip), [assignment], self.outputs, **EVENT)
        btn_undo.click(self.access.user(self.on_undo), None, self.outputs, **EVENT)

    # ------------------------------------------------------------------ what the tab shows
    def progress_md(self, annotator: Annotator, lang: str) -> str:
        p = self.queue.progress(annotator)
        return t(lang, "progress", complete=p["project_complete"], total=p["project_items"], labeled=p["labeled"],
                 last_24h=p["labeled_24h"], skipped=p["skipped"])

    def item_outputs(self, me: Caller, shown: Shown | None, status: str = "") -> tuple:
        """The values of :attr:`outputs` for ``shown`` (``None``: the caller is done, or paused)."""
        if shown is None:
            view = (None, message_html(t(me.lang, "paused" if is_paused(self.store, me.annotator) else "all_done")), "", "")
        else:
            key = shown.assignment_id
            view = (key, prompt_html(shown.prompt, key=key), text_html(shown.response_left, key=key),
                    text_html(shown.response_right, key=key))
        return (*view, [], [], "", self.progress_md(me.annotator, me.lang), status)

    def keep_outputs(self, me: Caller, status: str) -> tuple:
        return (gr.skip(),) * 7 + (self.progress_md(me.annotator, me.lang), status)

    def refused(self, me: Caller, error: QueueError) -> tuple:
        """The next item, with what the queue's refusal means for the annotator."""
        key = QUEUE_ERRORS.get(str(error))
        if key is None:
            log.warning("a label by %s was refused: %s", me.name, error)
        return self.item_outputs(me, self.queue.next_item(me.annotator), t(me.lang, key or "err_refused"))

    # ------------------------------------------------------------------ handlers
    def label_handler(self, choice: str, strength: int | None, key: str):
        def handler(me: Caller, assignment, flags_left, flags_right, note):
            if assignment is None:
                return self.keep_outputs(me, t(me.lang, "nothing_to_label"))
            try:
                label_id, shown = self.queue.submit(me.annotator, assignment, choice, strength, flags_left or [],
                                                    flags_right or [], note or "")
            except QueueError as e:
                return self.refused(me, e)
            return self.item_outputs(me, shown, t(me.lang, "saved", label_id=label_id,
                                                  choice=t(me.lang, f"choice_{key}")))
        handler.__name__ = f"label_{choice}" + (f"_{strength}" if strength else "")
        return handler

    def on_skip(self, me: Caller, assignment):
        if assignment is None:
            return self.keep_outputs(me, t(me.lang, "nothing_to_skip"))
        try:
            shown = self.queue.skip(me.annotator, assignment)
        except QueueError as e:
            return self.refused(me, e)
        return self.item_outputs(me, shown, t(me.lang, "skipped"))

    def on_undo(self, me: Caller):
        return self.item_outputs(me, self.queue.undo(me.annotator), t(me.lang, "undone"))
