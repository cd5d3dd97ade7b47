"""Model text in the labeling app: what the annotator reads is exactly what the model wrote, and inert."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from labeling_ui.render import message_html, prompt_html, text_html

#: The only elements the renderer may emit, and the only attributes.
ALLOWED_TAGS = {"div", "code", "b", "span"}
ALLOWED_ATTRS = {"class", "data-key"}


class _Shown(HTMLParser):
    """The text a browser shows for an HTML fragment, and every tag and attribute in it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data) -> None:
        self.text.append(data)


def shown(fragment: str) -> tuple[str, list]:
    parser = _Shown()
    parser.feed(fragment)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag in ALLOWED_TAGS, (tag, fragment)
        assert {name for name, _ in attrs} <= ALLOWED_ATTRS, (tag, attrs)
    return "".join(parser.text), parser.tags


def test_an_unterminated_code_fence_shows_its_text_once_escaped() -> None:
    text = "Here is the fix:\n```python\nif a && b:\n    print('<b>bold</b>')  # x < y"
    out = text_html(text)
    assert "&amp;lt;" not in out and "&amp;amp;" not in out          # escaped once, never twice
    visible, tags = shown(out)
    assert visible == text
    assert ("code", [("class", "block")]) in tags                     # code is shown as code


def test_latex_and_markdown_escapes_stay_as_written() -> None:
    text = r"The roots are \(x = \frac{-b}{2a}\) and \[y\]; 2 \* 3, \_not italic\_, *stars*, # not a heading"
    visible, _ = shown(text_html(text))
    assert visible == text


def test_links_are_inert_and_show_their_target() -> None:
    text = "Log in at [your bank](https://evil.example/phish) or <https://x.example> or https://y.example"
    out = text_html(text)
    visible, tags = shown(out)
    assert visible == text                                            # the target is on screen
    assert all(tag != "a" for tag, _ in tags) and "href" not in out


def test_hostile_markup_is_text() -> None:
    hostile = ('<script>alert(1)</script><img src=x onerror="alert(2)"> ![t](http://127.0.0.1:9/t.png) '
               '<a href="javascript:alert(3)">x</a> " onmouseover="alert(4)" `<b>code</b>` </div><div>')
    for out in (text_html(hostile), prompt_html(hostile), text_html(hostile, key='1" onclick="x')):
        visible, tags = shown(out)
        assert hostile in visible
        assert [t for t, _ in tags if t not in ("div", "code", "b")] == []
        assert "<script" not in out and "<img" not in out and "<a " not in out


def test_whitespace_and_inline_code_are_kept() -> None:
    text = "Steps:\n  1. indent\n\n\tTab `x = 1` and ``a ` b`` end"
    out = text_html(text)
    visible, tags = shown(out)
    assert visible == text
    assert [dict(a).get("class") for t, a in tags if t == "code"] == ["inline", "inline"]


def test_a_closed_fence_ends_the_code_block() -> None:
    out = text_html("before\n~~~\n<code>\n~~~\nafter <i>")
    assert re.search(r'<code class="block">~~~\n&lt;code&gt;\n~~~\n</code>after &lt;i&gt;', out), out


def test_hh_transcript_keeps_every_character_and_bolds_the_speakers() -> None:
    prompt = "\n\nHuman: hi <b>\n\nAssistant: yes \\(x\\)\n\nHuman: and?\n\nAssistant:"
    out = prompt_html(prompt, key=7)
    visible, tags = shown(out)
    assert visible == prompt.strip("\n")
    assert [t for t, _ in tags].count("b") == 4 and ("div", [("class", "model-text"), ("data-key", "7")]) in tags


def test_empty_text_is_marked_and_messages_are_escaped() -> None:
    assert shown(text_html("\n \n"))[0] == "(empty)" and 'class="empty"' in text_html("")
    assert shown(message_html("<b>done</b>"))[0] == "<b>done</b>"
    assert html.unescape(text_html("&amp;")) .count("&amp;") == 1
