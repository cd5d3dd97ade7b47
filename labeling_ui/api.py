"""The bot API: ``POST /gradio_api/run/<name>`` with ``{"data": [...]}`` and the login cookie (unqueued
fast paths; ``A`` / ``B`` / ``response_a`` / ``response_b`` are *display* positions, first / second):

* ``next_item()`` -> ``{"assignment", "prompt", "response_a", "response_b", "expires_at"}`` or
  ``{"assignment": null, "done": true}`` (``{"assignment": null, "done": false, "paused": true}`` for a
  paused account, see :mod:`labeling_ui.review`)
* ``submit_label(assignment, choice, strength, flags_a, flags_b, note, time_ms)`` ->
  ``{"ok", "label_id", "next": <next_item>}`` (``choice``: ``A|B|tie|both_bad``; strength 1-4 for A/B)
* ``skip_item(assignment)`` / ``undo_label()`` -> ``{"ok", "next": <item>}``
* ``my_progress()`` -> the caller's own counts.

Every call acts as the logged-in caller (:meth:`labeling_ui.access.Access.annotator`) on its own
assignments only. The handlers run on the event loop itself (``async def``, no thread hop): a call is a
few sub-millisecond statements, and writes are serialised anyway, so a pool of threads fighting over
the GIL and the write lock only adds latency. (A long import by another process holding SQLite's write
lock stalls them until it commits; busy_timeout bounds that.) The API speaks English.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from labeling_ui.access import Access
from labeling_ui.queue import LabelQueue, QueueError, Shown
from labeling_ui.review import is_paused
from labeling_ui.store import Annotator, LabelStore


class BotAPI:
    """The bot API of ``queue``'s project."""

    def __init__(self, store: LabelStore, queue: LabelQueue, access: Access) -> None:
        self.store, self.queue, self.access = store, queue, access

    def register(self) -> None:
        """Add the API's functions to the Blocks being built."""
        for fn in (self.next_item, self.submit_label, self.skip_item, self.undo_label, self.my_progress):
            gr.api(fn, api_name=fn.__name__, queue=False)

    def item_json(self, shown: Shown | None, me: Annotator) -> dict[str, Any]:
        if shown is None:
            if is_paused(self.store, me):
                return {"assignment": None, "done": False, "paused": True}
            return {"assignment": None, "done": True}
        return {"assignment": shown.assignment_id, "prompt": shown.prompt, "response_a": shown.response_left,
                "response_b": shown.response_right, "expires_at": shown.expires_at}

    async def next_item(self, request: gr.Request) -> dict:
        """The caller's current item (a new lease when needed)."""
        me = self.access.annotator(request)
        return self.item_json(self.queue.next_item(me), me)

    async def submit_label(self, request: gr.Request, assignment: int, choice: str, strength: int | None = None,
                           flags_a: list[str] | None = None, flags_b: list[str] | None = None, note: str = "",
                           time_ms: int | None = None) -> dict:
        """Label the caller's assignment (A/B = first/second shown); returns the label id and the next item."""
        me = self.access.annotator(request)
        try:
            label_id, shown = self.queue.submit(me, assignment, choice, strength, flags_a or [], flags_b or [],
                                                note or "", time_ms=time_ms if isinstance(time_ms, int) else None)
        except QueueError as e:
            return {"ok": False, "error": str(e), "next": self.item_json(self.queue.next_item(me), me)}
        return {"ok": True, "label_id": label_id, "next": self.item_json(shown, me)}

    async def skip_item(self, request: gr.Request, assignment: int) -> dict:
        """Skip the caller's assignment; returns the next item."""
        me = self.access.annotator(request)
        try:
            return {"ok": True, "next": self.item_json(self.queue.skip(me, assignment), me)}
        except QueueError as e:
            return {"ok": False, "error": str(e), "next": self.item_json(self.queue.next_item(me), me)}

    async def undo_label(self, request: gr.Request) -> dict:
        """Undo the caller's last label; its item is returned as the current one."""
        me = self.access.annotator(request)
        return {"ok": True, "next": self.item_json(self.queue.undo(me), me)}

    async def my_progress(self, request: gr.Request) -> dict:
        """The caller's own progress counts."""
        return self.queue.progress(self.access.annotator(request))
