"""Model and user text as HTML that shows exactly the characters written, and runs or loads nothing.

Why not Markdown: an annotator judges what the model wrote, and a Markdown renderer rewrites it.
It drops backslashes (``\\(x\\)`` shows as ``(x)``), turns ``[text](url)`` into a clickable link that
hides its target, and, once our own HTML escaping is added for safety, escapes a second time inside an
unterminated code fence (truncated model output), so ``<b>`` shows as ``&lt;b&gt;``. Here every
character is escaped exactly once with :func:`html.escape` and shown in a ``white-space: pre-wrap``
block (see ``.model-text`` in :mod:`labeling_ui.app`'s CSS): line breaks and indentation stay, links
stay inert text with their target visible, images are never fetched, and nothing in the text can
become markup. The only tags in the output are our own: ``<code>`` around code (fences and backticks
stay visible, the code is shown in a monospace font), ``<b>`` around the speakers of an HH-RLHF
transcript, and the wrapping ``<div>``.
"""

from __future__ import annotations

import html
import re

#: A fenced code block opens with a line of 3+ backticks or tildes (up to 3 spaces of indent) and
#: closes with a line of at least as many of the same character; an unclosed one runs to the end.
_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
#: An inline code span on one line: a run of backticks, then text, then the same run.
_CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_TURN = re.compile(r"\n\n(?=(?:Human|Assistant):)")
_SPEAKER = re.compile(r"(?:Human|Assistant):")


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _inline(text: str) -> str:
    """Escaped text with inline code spans wrapped in ``<code>`` (backticks kept)."""
    out, pos = [], 0
    for m in _CODE_SPAN.finditer(text):
        out.append(_escape(text[pos:m.start()]))
        out.append(f'<code class="inline">{_escape(m.group(0))}</code>')
        pos = m.end()
    out.append(_escape(text[pos:]))
    return "".join(out)


def _body(text: str) -> str:
    """Escaped text with fenced code blocks (terminated or not) wrapped in ``<code class="block">``."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        opened = _FENCE_OPEN.match(lines[i])
        if not opened:
            prose.append(lines[i])
            i += 1
            continue
        out.append(_inline("".join(prose)))
        prose = []
        fence = opened.group(1)
        j = i + 1
        while j < len(lines) and not re.match(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]):
            j += 1
        block = "".join(lines[i:j + 1])
        out.append(f'<code class="block">{_escape(block)}</code>')
        i = j + 1
    out.append(_inline("".join(prose)))
    return "".join(out)


def text_html(text: str, *, key: str | int | None = None) -> str:
    """``text`` (model or user text) as one ``<div class="model-text">`` showing exactly its characters.

    Blank lines at the start and end are not shown (they only push the text down); an empty text is
    shown as a marked "(empty)" so that it cannot be mistaken for a loading page. ``key`` (the
    assignment) goes into ``data-key`` so that the page can tell a new item from a re-render.
    """
    data = f' data-key="{_escape(str(key))}"' if key is not None else ""
    shown = text.strip("\r\n")
    inner = _body(shown) if shown.strip() else '<span class="empty">(empty)</span>'
    return f'<div class="model-text"{data}>{inner}</div>'


def prompt_html(prompt: str, *, key: str | int | None = None) -> str:
    """The prompt as :func:`text_html`; in an HH-RLHF transcript each turn's speaker is shown in bold."""
    shown = prompt.strip("\r\n")
    if not shown.strip():
        return text_html(prompt, key=key)
    data = f' data-key="{_escape(str(key))}"' if key is not None else ""
    turns = []
    for turn in _TURN.split(shown):
        speaker = _SPEAKER.match(turn)
        if speaker:
            turns.append(f'<b class="speaker">{_escape(speaker.group(0))}</b>{_body(turn[speaker.end():])}')
        else:
            turns.append(_body(turn))
    return f'<div class="model-text"{data}>' + "\n\n".join(turns) + "</div>"


def message_html(message: str) -> str:
    """A message of the app's own (plain text) in place of the prompt, e.g. when nothing is left."""
    return f'<div class="model-text app-message">{_escape(message)}</div>'
