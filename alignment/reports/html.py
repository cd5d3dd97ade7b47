"""Self-contained HTML reports: plots embedded as PNG data URIs, every text escaped, no network.

Stages write ``report.html`` with :func:`write_report`; the whole-run report reuses the same pieces.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # no display: render to memory
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from alignment.io import write_text_atomic  # noqa: E402

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}img{max-width:100%}.fail{color:#b00020;font-weight:bold}.pass{color:#1b5e20;font-weight:bold}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def figure_html(fig: Figure, alt: str) -> str:
    """A matplotlib figure as an ``<img>`` with the PNG inline; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def table_html(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def kv_table(pairs: dict) -> str:
    return table_html(["metric", "value"], [(k, v) for k, v in pairs.items() if not isinstance(v, (dict, list))])


def render_report(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """A full page: ``sections`` are ``(heading, trusted HTML fragment)`` built with the helpers above."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>"]
    parts += [f"<section><h2>{esc(heading)}</h2>{body}</section>" for heading, body in sections]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path, title: str, sections: Sequence[tuple[str, str]]) -> None:
    write_text_atomic(path, render_report(title, sections))
