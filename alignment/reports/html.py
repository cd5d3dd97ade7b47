"""Self-contained HTML reports: plots embedded as PNG data URIs, every text escaped, no network.

Stages write ``report.html`` with :func:`write_report`; the whole-run report reuses the same pieces.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable, Iterable, Sequence

from matplotlib.figure import Figure

from alignment.io import write_text_atomic

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}img{max-width:100%}.fail{color:#b00020;font-weight:bold}.pass{color:#1b5e20;font-weight:bold}
.warn{color:#8a4b00;font-weight:bold}.about{color:#444}nav a{margin-right:.8em}
pre,td.text{white-space:pre-wrap;overflow-wrap:anywhere}pre{background:#f7f7f7;padding:.6em;font-size:.85em}
details{margin:.3em 0}summary{cursor:pointer}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def esc_text(value: object) -> str:
    """Model-written text, escaped: a small model emits control characters and broken UTF-8, which are
    shown as U+FFFD instead of being passed to the browser (or failing the UTF-8 write)."""
    text = _CONTROL.sub("\ufffd", str(value)).encode("utf-8", "replace").decode("utf-8")
    return esc(text)


def fmt(value: object) -> str:
    """A stage report's figure: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def rate_text(v: dict) -> str:
    """A rate as the safety evaluation records it (``{"rate", "ci95"}``), with its bootstrap interval."""
    lo, hi = v.get("ci95") or (None, None)
    return f"{v['rate']:.3f} (95% CI {lo:.3f}-{hi:.3f})" if lo is not None else f"{v['rate']:.3f}"


def fmt_figure(v: object) -> str:
    """A figure of the run report: rates with their interval, floats to 3 decimals, unknown as "–"."""
    if v is None:
        return "–"
    if isinstance(v, dict) and "rate" in v:
        return "–" if v["rate"] is None else rate_text(v)
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1e4 else fmt(v)
    return str(v)


def with_ci(value: float | None, ci: Sequence[float | None] | None) -> str:
    """A figure with its 95% interval, ``0.915 [0.862, 0.958]``; the figure alone where the interval is unknown."""
    if value is None:
        return fmt_figure(None)
    if not ci or any(v is None or v != v for v in ci):
        return fmt_figure(value)
    return f"{fmt_figure(value)} [{fmt_figure(ci[0])}, {fmt_figure(ci[1])}]"


class Html(str):
    """A table cell that is already HTML (built from escaped parts); any other cell is escaped."""


def about(text: str) -> str:
    """A section's opening paragraph: what it shows and how to read it."""
    return f'<p class="about">{esc(text)}</p>'


def status_html(status: str) -> Html:
    """A stage's status, coloured: passed, failed (or crashed), anything else as a warning."""
    cls = {"passed": "pass", "failed": "fail", "crashed": "fail"}.get(status, "warn")
    return Html(f'<span class="{cls}">{esc(status)}</span>')


def figure_html(fig: Figure, alt: str) -> str:
    """A figure of :mod:`alignment.reports.plots` as an ``<img>`` with the PNG inline."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def table_html(header: Sequence[str], rows: Iterable[Sequence[object]], text_cols: Sequence[int] = (),
               fmt: Callable[[object], str] = fmt) -> str:
    """A table whose cells are escaped: an :class:`Html` cell goes in as it is, ``text_cols`` hold
    model or user text (wrapped, cleaned by :func:`esc_text`), any other cell is a figure written by ``fmt``."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            if isinstance(c, Html):
                cells.append(f"<td>{c}</td>")
            elif i in text_cols:
                cells.append(f'<td class="text">{esc_text("" if c is None else c)}</td>')
            else:
                cells.append(f"<td>{esc_text(fmt(c))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def kv_table(pairs: dict) -> str:
    return table_html(["metric", "value"], [(k, v) for k, v in pairs.items() if not isinstance(v, (dict, list))])


def render_report(title: str, sections: Sequence[tuple[str, str] | tuple[str, str, str]]) -> str:
    """A full page: ``sections`` are ``(heading, trusted HTML fragment)`` built with the helpers above,
    or ``(heading, fragment, id)``: such a section gets that stable ``id`` (for links and tests) and an
    entry in a table of contents at the top."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>"]
    linked = [(sec[0], sec[2]) for sec in sections if len(sec) == 3]
    if linked:
        parts.append("<nav>" + "".join(f'<a href="#{esc(sid)}">{esc(h)}</a>' for h, sid in linked) + "</nav>")
    for heading, body, *sid in sections:
        attr = f' id="{esc(sid[0])}"' if sid else ""
        parts.append(f"<section{attr}><h2>{esc(heading)}</h2>{body}</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path, title: str, sections: Sequence[tuple[str, str]]) -> None:
    write_text_atomic(path, render_report(title, sections))
