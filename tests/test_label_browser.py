"""The labeling app in a real browser (Playwright + Debian's Chromium): login, mouse and keyboard
labeling, undo, skip, progress, the admin tab, and hostile model text that must stay inert."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alignment.data.world import DemoWorld
from conftest import browser_available
from label_app import RunningApp, start_app, start_app_with_a_run
from labeling_ui.demo import demo_items

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PASSWORD = "browser-pass-1"
HOSTILE = {
    "id": "hostile",
    "prompt": "Say <b>hi</b> <script>window.__pwned = 'prompt'</script>",
    "response_a": '<img src=x onerror="window.__pwned = \'img\'"> and ![tracker](http://127.0.0.1:9/t.png)',
    "response_b": "**bold** with `<code>`\n\n<script>window.__pwned = 'script'</script>"
                  "<a href=\"javascript:window.__pwned='link'\">click</a>",
}

#: Records what the Content-Security-Policy blocked on the page (it must block nothing the app needs).
CSP_WATCH = ("window.__csp = []; document.addEventListener('securitypolicyviolation', "
             "(e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")


#: Send an event the way Gradio's front end does (queue/join, then read the event stream) from the page.
FORGE_EVENT = """async ([fnIndex, session]) => {
  const join = await fetch("/gradio_api/queue/join", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({data: [], fn_index: fnIndex, session_hash: session, event_data: null, trigger_id: null})});
  if (!join.ok) return "join refused " + join.status;
  const stream = await fetch("/gradio_api/queue/data?session_hash=" + session);
  const reader = stream.body.getReader(), decoder = new TextDecoder();
  let text = "";
  while (!text.includes("process_completed")) {
    const {value, done} = await reader.read();
    if (done) break;
    text += decoder.decode(value);
  }
  reader.cancel();
  return text;
}"""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> RunningApp:
    browser_available()
    tmp = tmp_path_factory.mktemp("label-browser")
    running = start_app_with_a_run(tmp, overlap=2, export_dir=tmp / "export")
    running.store.add_items("p", [HOSTILE, *demo_items(DemoWorld(0), 12)], overlap=2)
    running.store.add_annotator("carol", PASSWORD, "annotator")
    running.store.add_annotator("root", PASSWORD, "admin")
    yield running
    running.close()


def login(browser, app: RunningApp, name: str, viewport: tuple[int, int] = (1280, 1000)):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.on("dialog", lambda d: d.dismiss())          # an alert() would be a script that ran
    page.add_init_script(CSP_WATCH)
    page.goto(app.url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#whoami")).to_contain_text(f"Signed in as {name}", timeout=30_000)
    expect(page.locator("#prompt .model-text")).not_to_be_empty(timeout=30_000)
    return page


def my_labels(app: RunningApp, name: str) -> list[dict]:
    return [lab for lab in app.store.labels("p") if lab["annotator"] == name]


@pytest.mark.slow
def test_annotator_labels_with_mouse_and_keyboard(app: RunningApp, browser) -> None:
    from playwright.sync_api import expect

    page = login(browser, app, "carol")
    progress, status = page.locator("#progress"), page.locator("#status")
    expect(progress).to_contain_text("your labels: 0")

    # hostile text is shown as text and runs nothing
    expect(page.locator("#prompt")).to_contain_text("<script>window.__pwned = 'prompt'</script>")
    expect(page.locator("#response-a, #response-b").first).to_be_visible()
    both = page.locator("#response-a").inner_text() + page.locator("#response-b").inner_text()
    assert '<img src=x onerror="window.__pwned' in both and "<script>" in both
    assert page.locator("#response-a img, #response-b img, #prompt img").count() == 0
    assert page.locator("#response-a script, #response-b script, #prompt script").count() == 0
    assert page.locator("#response-b a[href^='javascript']").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "label-ui.png"), full_page=True)

    # mouse: a safety flag (folded until opened), then one click on "A better" (strength 3)
    flags = page.locator("#flags-a")
    expect(flags).to_be_hidden()
    page.get_by_text("Safety flags and note").click()
    flags.get_by_label("violence", exact=True).check()
    page.locator("#btn-a-3").click()
    expect(progress).to_contain_text("your labels: 1")
    expect(status).to_contain_text("Saved label")
    [first] = my_labels(app, "carol")
    assert first["strength"] == 3 and first["choice"] == first["shown_first"]
    assert (first["flags_a"] if first["shown_first"] == "A" else first["flags_b"]) == ["violence"]
    assert page.evaluate("() => window.__pwned") is None

    # the form was reset for the next item
    expect(flags.get_by_label("violence", exact=True)).not_to_be_checked()

    # keyboard: side and strength in either order; the first key alone labels nothing and says what is missing
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("1")
    expect(page.locator("#key-hint")).to_contain_text("by how much")
    expect(page.locator("#btn-a-1")).to_have_class(re.compile("pending"))
    assert len(my_labels(app, "carol")) == 1
    page.keyboard.press("w")                                  # A, slightly better
    expect(progress).to_contain_text("your labels: 2")
    expect(page.locator("#key-hint")).to_be_empty()
    page.keyboard.press("r")
    expect(page.locator("#key-hint")).to_contain_text("which one")
    page.keyboard.press("Escape")                             # changed her mind
    expect(page.locator("#key-hint")).to_be_empty()
    page.keyboard.press("e")
    page.keyboard.press("2")                                  # B, better
    expect(progress).to_contain_text("your labels: 3")
    page.keyboard.press("3")                                  # tie
    expect(progress).to_contain_text("your labels: 4")
    labels = my_labels(app, "carol")
    assert [(lab["choice"] == lab["shown_first"], lab["strength"]) for lab in labels[1:3]] == [(True, 2), (False, 3)]
    assert labels[3]["choice"] == "tie"

    # typing a note does not trigger shortcuts
    page.locator("#note textarea").fill("u s 1 2")
    page.locator("#note textarea").press("u")
    assert len(my_labels(app, "carol")) == 4
    page.locator("#note textarea").fill("")

    # undo (key u): the tie is gone and its item is back
    tie_prompt = app.store.item(labels[3]["item_id"])["prompt"]
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("u")
    expect(progress).to_contain_text("your labels: 3")
    expect(status).to_contain_text("Undid")
    expect(page.locator("#prompt")).to_contain_text(tie_prompt[:40])
    assert len(my_labels(app, "carol")) == 3

    # skip (button, then key s)
    page.locator("#btn-skip").click()
    expect(status).to_contain_text("Skipped")
    expect(progress).to_contain_text("skipped: 1")
    page.keyboard.press("s")
    expect(progress).to_contain_text("skipped: 2")

    # guidelines are one click away
    page.get_by_text("Guidelines").click()
    expect(page.get_by_text("Be kind.")).to_be_visible()

    # no admin or reports tab for an annotator, and forging the export event from her session is refused
    assert page.get_by_role("tab", name="Admin").count() == 0
    assert page.get_by_role("tab", name="Reports").count() == 0
    export_fn = next(i for i, fn in app.demo.fns.items() if fn.name == "on_export")
    answer = page.evaluate(FORGE_EVENT, [export_fn, "forged-session"])
    assert "Admins only" in answer and "Exported" not in answer
    assert not (Path(app.store.path).parent / "export").exists()
    assert page.evaluate("() => window.__pwned") is None
    assert app.store.check_invariants("p") == []
    page.close()


@pytest.mark.slow
def test_admin_sees_stats_and_exports(app: RunningApp, browser) -> None:
    from playwright.sync_api import expect

    page = login(browser, app, "root")
    page.get_by_role("tab", name="Admin").click()
    stats = page.locator("#admin-stats")
    expect(stats).to_contain_text("Per annotator", timeout=30_000)
    expect(stats).to_contain_text("carol")
    expect(stats).to_contain_text("Krippendorff")
    page.locator("#btn-export").click()
    expect(page.locator("#export-result")).to_contain_text("Exported", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "label-admin.png"), full_page=True)

    # the labeling keys act on the Label tab only: not while the Admin or Reports tab shows
    progress = page.locator("#progress")
    expect(progress).to_contain_text("your labels: 0")
    for tab in ("Admin", "Reports"):
        page.get_by_role("tab", name=tab).click()
        page.locator("body").click(position={"x": 5, "y": 5})
        for key in ("q", "1", "w", "2", "e", "r", "3", "4", "s", "u"):
            page.keyboard.press(key)
        page.wait_for_timeout(500)
        assert [lab for lab in app.store.labels("p") if lab["annotator"] == "root"] == []
        expect(progress).to_contain_text("skipped: 0")

    # the Reports tab's sandboxed report renders under the Content-Security-Policy: its style and image load
    page.get_by_role("tab", name="Reports").click()
    expect(page.locator("#runs-list")).to_contain_text("mini", timeout=30_000)
    page.locator("#run-pick input").click()
    page.get_by_role("option", name="mini", exact=True).click()
    frame = page.frame_locator("#run-report iframe")
    expect(frame.locator("#run-status")).to_have_css("color", "rgb(1, 2, 3)", timeout=30_000)
    assert frame.locator("#dot").evaluate("img => img.naturalWidth") == 1
    assert page.evaluate("() => window.__csp") == []

    page.get_by_role("tab", name="Label").click()
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("1")                   # no strength was picked on the other tabs: this alone labels nothing
    expect(page.locator("#key-hint")).to_contain_text("by how much")
    page.wait_for_timeout(500)
    assert [lab for lab in app.store.labels("p") if lab["annotator"] == "root"] == []
    page.keyboard.press("Escape")
    page.keyboard.press("3")
    expect(progress).to_contain_text("your labels: 1")
    page.close()


# ---------------------------------------------------------------------------- the annotator's page
PROSE = ("To bake a simple loaf, mix five hundred grams of bread flour with ten grams of salt and seven grams "
         "of dried yeast, then add about three hundred and fifty millilitres of warm water and stir until no "
         "dry flour is left. Knead the dough on a lightly floured surface for ten minutes, until it feels smooth "
         "and springs back when you press it. Cover the bowl and leave it somewhere warm for an hour, or until "
         "it has doubled in size. Knock it back, shape it into a loaf, put it in a greased tin and let it rise "
         "again for thirty minutes. Bake at two hundred and twenty degrees for thirty minutes, until the loaf "
         "sounds hollow when you tap the base.")
#: Truncated model output: a link, LaTeX-like escapes and an unterminated code fence with markup in it.
TRAILER = "\n\nSee [the guide](https://evil.example/login) and \\(x\\).\n```js\nif (a && b) { el.textContent = '<b>'; }"


def test_prose_is_about_120_words() -> None:
    assert 110 <= len(PROSE.split()) <= 130


@pytest.fixture(scope="module")
def layout_app(tmp_path_factory: pytest.TempPathFactory) -> RunningApp:
    browser_available()
    tmp = tmp_path_factory.mktemp("label-layout")
    running = start_app(tmp / "labels.db", overlap=2)
    items = [{"id": f"long-{i}", "prompt": f"How do I bake bread at home? (variant {i})",
              "response_a": PROSE + TRAILER, "response_b": PROSE.replace("loaf", "bread") + " Enjoy!"}
             for i in range(6)]
    running.store.add_items("p", items, overlap=2)
    for name in ("dora", "phil"):
        running.store.add_annotator(name, PASSWORD, "annotator")
    yield running
    running.close()


def _box(page, selector: str) -> dict:
    return page.locator(selector).evaluate("el => { const b = el.getBoundingClientRect(); "
                                           "return {top: b.top, bottom: b.bottom, left: b.left, right: b.right}; }")


def _first_line(page, selector: str) -> dict:
    """The box of the first few characters of the text in ``selector``."""
    return page.locator(selector).evaluate("""el => {
      const t = document.createTreeWalker(el, NodeFilter.SHOW_TEXT, {acceptNode: n => n.data.trim() ?
        NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_SKIP}).nextNode();
      const r = document.createRange(); r.setStart(t, 0); r.setEnd(t, Math.min(t.length, 12));
      const b = r.getBoundingClientRect(); return {top: b.top, bottom: b.bottom, left: b.left, right: b.right}; }""")


def _inside(box: dict, width: int, height: int) -> bool:
    return box["top"] >= 0 and box["left"] >= 0 and box["bottom"] <= height and box["right"] <= width \
        and box["bottom"] > box["top"]


CHOICE_BUTTONS = [f"#btn-a-{s}" for s in (4, 3, 2, 1)] + ["#btn-tie", "#btn-both-bad"] + \
                 [f"#btn-b-{s}" for s in (1, 2, 3, 4)]


@pytest.mark.slow
def test_desktop_page_fits_the_work(layout_app: RunningApp, browser) -> None:
    from playwright.sync_api import expect

    width, height = 1366, 768
    page = login(browser, layout_app, "dora", (width, height))
    expect(page.locator("#response-a .model-text")).to_contain_text("bread flour")
    assert page.evaluate("() => [window.scrollX, window.scrollY]") == [0, 0]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "label-1366x768.png"))

    # prompt, both answers' first lines, every choice button and the status line on screen together
    for name, box in [("prompt", _first_line(page, "#prompt .model-text")), ("answer A", _first_line(page, "#response-a .model-text")),
                      ("answer B", _first_line(page, "#response-b .model-text")), ("status", _box(page, "#status")),
                      *[(b, _box(page, b)) for b in CHOICE_BUTTONS]]:
        assert _inside(box, width, height), (name, box)
    # side by side, each in its own scroll box of the same height; the status next to the buttons
    a, b = _box(page, "#response-a"), _box(page, "#response-b")
    assert a["right"] <= b["left"] and abs(a["top"] - b["top"]) < 2 and abs(a["bottom"] - a["top"] - (b["bottom"] - b["top"])) < 2
    for box in ("#response-a", "#response-b"):
        assert page.locator(box).evaluate("el => getComputedStyle(el).overflowY") == "auto"
    bar, status = _box(page, "#choice-bar"), _box(page, "#status")
    assert 0 <= status["top"] - bar["bottom"] < 60
    # flags folded until opened
    expect(page.locator("#flags-a")).to_be_hidden()

    # the exact text the model wrote (defect 5): no double escaping, no Markdown, inert links
    text = page.locator("#response-a").inner_text()
    assert "if (a && b) { el.textContent = '<b>'; }" in text and "&lt;" not in text and "&amp;" not in text
    assert "[the guide](https://evil.example/login)" in text and "\\(x\\)" in text
    assert page.locator("#response-a a, #response-b a, #prompt a").count() == 0
    assert page.locator("#response-a code.block").inner_text().startswith("```js")

    # a font that has every glyph: the system's, not Gradio's bundled subset; nothing from the network
    for sel in ("#btn-a-4", "#response-a .model-text", "#prompt-label"):
        family = page.locator(sel).evaluate("el => getComputedStyle(el).fontFamily")
        assert family.startswith("system-ui") and "Source Sans" not in family and "IBM Plex" not in family, family
    assert page.evaluate("() => [...document.fonts].filter(f => f.status === 'loaded').map(f => f.family)") == []
    assert page.evaluate("() => window.__csp") == []
    page.evaluate("() => { const i = new Image(); i.src = 'http://127.0.0.1:9/t.png'; document.body.append(i); }")
    page.wait_for_function("() => window.__csp.length > 0")   # ... while the policy does block what is foreign
    assert page.evaluate("() => window.__csp") == ["img-src http://127.0.0.1:9/t.png"]

    # one click labels, and the next item starts at its first line
    page.locator("#response-a").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    before = page.locator("#prompt").inner_text()
    page.locator("#btn-b-4").click()
    expect(page.locator("#status")).to_contain_text("Saved label")
    expect(page.locator("#prompt")).not_to_have_text(before)
    assert page.locator("#response-a").evaluate("el => el.scrollTop") == 0
    page.keyboard.press("1")                                  # half a choice: the hint sits beside the status
    expect(page.locator("#key-hint")).to_contain_text("by how much")
    page.screenshot(path=str(ARTIFACTS / "label-1366x768-next.png"))
    page.keyboard.press("Escape")
    [label] = [lab for lab in layout_app.store.labels("p") if lab["annotator"] == "dora"]
    assert label["strength"] == 4 and label["choice"] != label["shown_first"]
    page.close()


@pytest.mark.slow
def test_phone_reaches_the_choice_before_the_flags(layout_app: RunningApp, browser) -> None:
    from playwright.sync_api import expect

    width, height = 390, 844
    page = login(browser, layout_app, "phil", (width, height))
    expect(page.locator("#response-b .model-text")).to_contain_text("bread flour")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "label-390x844.png"))
    page.screenshot(path=str(ARTIFACTS / "label-390x844-full.png"), full_page=True)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width    # no sideways scrolling

    flags = _box(page, "#flags")
    for button in CHOICE_BUTTONS:
        box = _box(page, button)
        assert box["bottom"] <= flags["top"], (button, box, flags)        # before the flags in scroll order
        assert 0 <= box["left"] and box["right"] <= width
    # both answers start on the first screen, and the choice is at most a short scroll away
    for sel in ("#prompt", "#response-a", "#response-b"):
        assert _inside(_first_line(page, sel + " .model-text"), width, height), sel
    assert max(_box(page, b)["bottom"] for b in CHOICE_BUTTONS) <= 1.5 * height

    # after a label at the bottom of the page the next item is scrolled into view
    page.locator("#btn-both-bad").scroll_into_view_if_needed()
    page.locator("#btn-both-bad").click()
    expect(page.locator("#status")).to_contain_text("Saved label")
    page.wait_for_timeout(300)
    assert _inside(_first_line(page, "#prompt .model-text"), width, height)
    page.close()
