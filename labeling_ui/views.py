"""What the tabs share: the UI's translated text, the one set of event options, and the tables and item
views the server writes (every cell escaped once; model text shown by :mod:`labeling_ui.render`)."""

from __future__ import annotations

import html
import time
from typing import Any

import gradio as gr

from labeling_ui.campaign import item_rows
from labeling_ui.i18n import frontend_catalogue, has, t
from labeling_ui.render import prompt_html, text_html
from labeling_ui.store import LabelStore

#: Static UI text as translation keys: Gradio's front end shows each in the page's language.
UI = gr.I18n(**frontend_catalogue())

#: How every UI event is registered: kept out of the public API, no progress overlay (the app answers
#: in milliseconds; an overlay would flash on every label).
EVENT = {"api_visibility": "private", "show_progress": "hidden"}

#: The most items the item browser and the review list show at once.
ITEM_LIST_LIMIT = 100


def safe_markdown(text: str) -> str:
    """Markdown source that shows ``text`` (a name, a path, an error: never model text, see
    :mod:`labeling_ui.render`) with any HTML as literal text: ``<``, ``>`` and ``&`` are escaped,
    ``![alt](url)`` loses its ``!`` so no remote image is fetched. The Markdown component's own
    sanitiser (``sanitize_html=True``) stays on as a second line of defence."""
    return html.escape(text, quote=False).replace("![", "!\\[")


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; every cell escaped by :func:`safe_markdown`, floats to 3 decimals."""
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3f}"
        return safe_markdown(str(v)).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list[Any]], model_text: int | None = None) -> str:
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


def cols(lang: str, *keys: str) -> list[str]:
    """Column headings ``col_<key>`` in ``lang``."""
    return [t(lang, f"col_{key}") for key in keys]


def when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def excerpt(text: str, n: int = 90) -> str:
    """``text`` on one line, cut to ``n`` characters."""
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= n else one_line[:n - 1] + "…"


def choice_name(choice: str, lang: str) -> str:
    """A stored choice (``A``, ``B``, ``tie``, ``both_bad``) in the admin tables' words."""
    return {"tie": t(lang, "col_ties"), "both_bad": t(lang, "col_both_bad")}.get(choice, choice)


def category_name(category: str, lang: str) -> str:
    """A safety category in ``lang`` (a category the catalogue lacks shows its own name)."""
    key = f"category_{category}"
    return t(lang, key) if has(key) else category


def label_choice_name(label: dict[str, Any], lang: str) -> str:
    """A stored label's (or a reviewer's decision's) choice in the UI's words (A and B in stored order,
    with the strength)."""
    if label["choice"] in ("A", "B"):
        return t(lang, f"choice_{label['choice']}_{label['strength']}")
    return t(lang, f"choice_{label['choice']}")


def item_detail_html(row: dict[str, Any], lang: str) -> str:
    """One item as the annotators saw it (A and B in stored order, model text shown by
    :mod:`labeling_ui.render`) and every label in force on it."""
    def flags(names: list[str]) -> str | None:
        return ", ".join(category_name(c, lang) for c in names) or None
    labels = html_table(cols(lang, "annotator", "choice", "flags_a", "flags_b", "note", "when", "time_spent"),
                        [[lab["annotator"], label_choice_name(lab, lang), flags(lab["flags_a"]), flags(lab["flags_b"]),
                          lab["note"] or None, when(lab["created_at"]),
                          None if lab["time_ms"] is None else f"{lab['time_ms'] / 1000:.1f}"]
                         for lab in row["labels"]]) if row["labels"] else html.escape(t(lang, "no_labels"))
    heading = t(lang, "item_heading", item=row["ext_id"], status=t(lang, f"item_status_{row['status']}"),
                labels=row["n_labels"])
    return (f'<div class="item-detail"><h4>{html.escape(heading)}</h4>{labels}'
            f'<div class="section-label">{html.escape(t(lang, "prompt"))}</div>{prompt_html(row["prompt"])}'
            f'<div class="section-label">{html.escape(t(lang, "response_a"))}</div>{text_html(row["response_a"])}'
            f'<div class="section-label">{html.escape(t(lang, "response_b"))}</div>{text_html(row["response_b"])}'
            "</div>")


def choices_of(keys: tuple[str, ...] | list[str], prefix: str, *, any_first: bool = True) -> list[tuple[str, str]]:
    """A dropdown's ``(shown, value)`` choices: each key's ``<prefix>_<key>`` text, after "any" (value
    ``""``) when ``any_first``."""
    return ([(str(UI("any")), "")] if any_first else []) + [(str(UI(f"{prefix}_{key}")), key) for key in keys]


def project_rows(store: LabelStore, project: str | None, default: str) -> tuple[str, list[dict[str, Any]], int]:
    """The project a dropdown picked (``default`` for a name the store does not have: a client sends only
    what it was offered, but the check is here), its items' rows (:func:`labeling_ui.campaign.item_rows`)
    and its overlap."""
    name = project if project in store.project_names() else default
    overlap = store.project(name).overlap
    return name, item_rows(store.items(name), store.labels(name), overlap), overlap
