"""The labeling app in a real browser (Playwright + Debian's Chromium): login, mouse and keyboard
labeling, undo, skip, progress, the admin tab, and hostile model text that must stay inert."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from alignment.data.world import DemoWorld
from labeling_ui.demo import demo_items
from labeling_ui.testing import RunningApp, start_app

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PASSWORD = "browser-pass-1"
HOSTILE = {
    "id": "hostile",
    "prompt": "Say <b>hi</b> <script>window.__pwned = 'prompt'</script>",
    "response_a": '<img src=x onerror="window.__pwned = \'img\'"> and ![tracker](http://127.0.0.1:9/t.png)',
    "response_b": "**bold** with `<code>`\n\n<script>window.__pwned = 'script'</script>"
                  "<a href=\"javascript:window.__pwned='link'\">click</a>",
}


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


def _browser_available() -> None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        reason = "the playwright Python package is not installed (pip install playwright)"
    else:
        if Path(CHROMIUM).exists() or shutil.which("chromium"):
            return
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot be skipped under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> RunningApp:
    _browser_available()
    tmp = tmp_path_factory.mktemp("label-browser")
    running = start_app(tmp / "labels.db", overlap=2, export_dir=tmp / "export")
    running.store.add_items("p", [HOSTILE, *demo_items(DemoWorld(0), 12)], overlap=2)
    running.store.add_annotator("carol", PASSWORD, "annotator")
    running.store.add_annotator("root", PASSWORD, "admin")
    yield running
    running.close()


@pytest.fixture(scope="module")
def browser(app: RunningApp):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def login(browser, app: RunningApp, name: str):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.on("dialog", lambda d: d.dismiss())          # an alert() would be a script that ran
    page.goto(app.url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#whoami")).to_contain_text(f"Signed in as {name}", timeout=30_000)
    expect(page.locator("#prompt .md")).not_to_be_empty(timeout=30_000)
    return page


def my_labels(app: RunningApp, name: str) -> list[dict]:
    return [lab for lab in app.store.labels("p") if lab["annotator"] == name]


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

    # mouse: strength, a safety flag, then "A is better"
    page.get_by_label("3 · better", exact=True).check()
    page.locator("#flags-a").get_by_label("violence", exact=True).check()
    page.locator("#btn-a").click()
    expect(progress).to_contain_text("your labels: 1")
    expect(status).to_contain_text("Saved label")
    [first] = my_labels(app, "carol")
    assert first["strength"] == 3 and first["choice"] == first["shown_first"]
    assert (first["flags_a"] if first["shown_first"] == "A" else first["flags_b"]) == ["violence"]
    assert page.evaluate("() => window.__pwned") is None

    # the form was reset for the next item
    expect(page.get_by_label("3 · better", exact=True)).not_to_be_checked()

    # keyboard: A/B need a strength first
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("1")
    expect(status).to_contain_text("strength")
    assert len(my_labels(app, "carol")) == 1
    page.keyboard.press("w")
    expect(page.get_by_label("2 · slightly better")).to_be_checked()
    page.keyboard.press("2")
    expect(progress).to_contain_text("your labels: 2")
    page.keyboard.press("3")                                  # tie
    expect(progress).to_contain_text("your labels: 3")
    labels = my_labels(app, "carol")
    assert [lab["choice"] for lab in labels][2] == "tie" and labels[1]["strength"] == 2

    # typing a note does not trigger shortcuts
    page.locator("#note textarea").fill("u s 1 2")
    page.locator("#note textarea").press("u")
    assert len(my_labels(app, "carol")) == 3
    page.locator("#note textarea").fill("")

    # undo (key u): the tie is gone and its item is back
    tie_prompt = app.store.item(labels[2]["item_id"])["prompt"]
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("u")
    expect(progress).to_contain_text("your labels: 2")
    expect(status).to_contain_text("Undid")
    expect(page.locator("#prompt")).to_contain_text(tie_prompt[:40])
    assert len(my_labels(app, "carol")) == 2

    # skip (button, then key s)
    page.locator("#btn-skip").click()
    expect(status).to_contain_text("Skipped")
    expect(progress).to_contain_text("skipped: 1")
    page.keyboard.press("s")
    expect(progress).to_contain_text("skipped: 2")

    # guidelines are one click away
    page.get_by_text("Guidelines").click()
    expect(page.get_by_text("Be kind.")).to_be_visible()

    # no admin tab for an annotator, and forging the export event from her session is refused
    assert page.get_by_role("tab", name="Admin").count() == 0
    export_fn = next(i for i, fn in app.demo.fns.items() if fn.name == "on_export")
    answer = page.evaluate(FORGE_EVENT, [export_fn, "forged-session"])
    assert "Admins only" in answer and "Exported" not in answer
    assert not (Path(app.store.path).parent / "export").exists()
    assert page.evaluate("() => window.__pwned") is None
    assert app.store.check_invariants("p") == []
    page.close()


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
    page.close()
