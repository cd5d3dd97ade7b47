"""The labeling app in English and Simplified Chinese: one catalogue with the same keys in both
languages, the language chosen by the browser (or the page's switch) for the text Gradio shows and the
text the server writes alike, per-language guidelines, and real Chromium pages in ``zh-CN`` and ``en``
that label with the keyboard and show no string of the other language."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from alignment.data.world import DemoWorld
from alignment.errors import UserError
from alignment.safety.categories import CATEGORIES
from conftest import browser_available
from label_app import RunningApp, start_app_with_a_run
from labeling_ui.demo import demo_items
from labeling_ui.i18n import EN, LANGUAGES, MESSAGES, ZH_CN, choose, t
from labeling_ui.review import REVIEW_STATES

#: The app's Python sources, whose UI("key") and t(lang, "key") calls the catalogue must cover.
APP_SOURCES = sorted((Path(__file__).resolve().parent.parent / "labeling_ui").rglob("*.py"))
CJK = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]")
#: Texts that are the same in every language: symbols, and names (of a statistic, a model, a config key).
SAME_IN_EVERY_LANGUAGE = {"col_kappa"}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


# ---------------------------------------------------------------------------- the catalogue
def test_both_languages_have_the_same_keys_and_fields() -> None:
    assert set(MESSAGES) == set(LANGUAGES) == {"en", "zh-CN"}
    assert sorted(EN) == sorted(ZH_CN), (set(EN) ^ set(ZH_CN))
    for key in EN:
        assert EN[key].strip() and ZH_CN[key].strip(), key
        assert _fields(EN[key]) == _fields(ZH_CN[key]), key
        if key not in SAME_IN_EVERY_LANGUAGE:
            assert CJK.search(ZH_CN[key]), f"{key}: {ZH_CN[key]!r} is not translated"
            assert not CJK.search(EN[key]), key
    # what the keyboard hint shows comes with its shortcut, the same in both languages
    for key in (k for k in EN if k.startswith("button_")):
        assert EN[key].split("\n")[1] == ZH_CN[key].split("\n")[1], key


def test_every_key_the_app_uses_is_in_the_catalogue() -> None:
    source = "\n".join(path.read_text(encoding="utf-8") for path in APP_SOURCES)
    used = set(re.findall(r'\bUI\("([\w/-]+)"\)', source)) | set(re.findall(r'\bt\((?:lang|me\.lang|DEFAULT), "(\w+)"', source))
    used |= {f"category_{c}" for c in CATEGORIES}
    used |= {f"{kind}_{key}" for kind in ("button", "choice")
             for key in ["tie", "both_bad", *[f"{side}_{s}" for side in "AB" for s in range(1, 5)]]}
    used |= {"role_admin", "role_annotator", "role_reviewer", "guidelines"}
    used |= {f"review_state_{s}" for s in REVIEW_STATES} | {f"state_paused_{r}" for r in ("gold", "admin")}
    assert used - {"guidelines_text"} <= set(EN), sorted(used - set(EN) - {"guidelines_text"})
    assert len(used) > 60        # the scan found the app's keys


@pytest.mark.parametrize("cookie, header, lang", [
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
    (None, "zh-TW", "zh-CN"),                   # any Chinese reads the Simplified Chinese UI
    (None, "zh", "zh-CN"),
    (None, "en-US,en;q=0.9", "en"),
    (None, "fr-FR, zh-CN;q=0.5", "zh-CN"),      # the first language the UI has
    (None, "fr-FR, en;q=0.2, zh;q=0.7", "zh-CN"),   # by weight, not by position
    (None, "zh;q=0, en", "en"),                 # q=0: not acceptable
    (None, "fr", "en"),
    (None, None, "en"),                         # the bot API sends no header
    ("en", "zh-CN", "en"),                      # the page's switch wins
    ("zh-CN", "en-US", "zh-CN"),
    ("klingon", "zh-CN", "zh-CN"),              # a cookie that names no UI language is ignored
])
def test_language_choice(cookie: str | None, header: str | None, lang: str) -> None:
    assert choose(cookie, header) == lang


def test_server_text_is_formatted_in_the_callers_language() -> None:
    from labeling_ui.tabs.admin import notes_markdown, stats_markdown

    assert t("zh-CN", "saved", label_id=3, choice=t("zh-CN", "choice_A_2")) == "已保存标注 #3：A 稍好。"
    assert t("fr", "skipped") == "Skipped."                   # a language the UI lacks reads English
    notes = [{"label_id": 1, "item": "x", "annotator": "ann", "choice": "tie", "note": "<b>hm</b>",
              "withdrawn": True, "created_at": 0.0}]
    zh = notes_markdown(notes, "zh-CN")
    assert "备注" in zh and "已撤回" in zh and "一样好" in zh and "&lt;b&gt;hm" in zh and "withdrawn" not in zh
    stats = {"project": "p", "overlap": 2, "items": dict(total=1, complete=0, in_progress=1, untouched=0, gold=0,
                                                         active_leases=1, skips=0),
             "labels": {"total": 1, "regular": 1, "gold": 0, "choices": {"both_bad": 1}},
             "per_annotator": {"ann": dict(labels=1, last_hour=1, median_time_s=2.0, gold_accuracy=None,
                                           gold_labels=0, picked_first_shown=0, ties=0, both_bad=1)},
             "per_hour": {"10:00": 1},
             "agreement": dict(pairs=0, with_ties=None, pairs_without_ties=0, without_ties=None,
                               krippendorff_alpha_ordinal=None, cohen_kappa=[]),
             "safety_flags": {"a_or_b_flagged_labels": 1, "by_category": {"violence": 1}}}
    zh = stats_markdown(stats, "zh-CN")
    for word in ("各标注员", "一致性", "都不好: 1", "| 暴力 | 1 |", "每条需 2 人标注"):
        assert word in zh, word
    assert not re.search(r"\b(labels|items|Agreement|Per annotator|violence)\b", zh), zh
    assert "Per annotator" in stats_markdown(stats)                # English by default


# ---------------------------------------------------------------------------- guidelines per language
def test_guidelines_per_language(tmp_path: Path) -> None:
    from labeling_ui.guidelines import guidelines_by_language, read_guidelines

    assert guidelines_by_language("Be kind.") == {"en": "Be kind.", "zh-CN": "Be kind."}
    assert guidelines_by_language({"en": "Be kind.", "zh-CN": "友善。"}) == {"en": "Be kind.", "zh-CN": "友善。"}
    assert guidelines_by_language({"zh-CN": "友善。"}) == {"en": "友善。", "zh-CN": "友善。"}
    assert guidelines_by_language({"en": "Be kind."})["zh-CN"] == "Be kind."
    assert guidelines_by_language("")["zh-CN"] == ZH_CN["no_guidelines"]
    with pytest.raises(UserError, match=r"label.guidelines: unknown language\(s\) \['fr'\]"):
        guidelines_by_language({"fr": "Soyez gentil."})

    (tmp_path / "g.en.md").write_text("Be kind.", encoding="utf-8")
    (tmp_path / "g.zh-CN.md").write_text("友善。", encoding="utf-8")
    assert read_guidelines("", str(tmp_path / "g.{lang}.md")) == {"en": "Be kind.", "zh-CN": "友善。"}
    assert read_guidelines("", str(tmp_path / "g.en.md")) == "Be kind."
    assert read_guidelines({"en": "a", "zh-CN": "甲"}, None) == {"en": "a", "zh-CN": "甲"}
    (tmp_path / "g.zh-CN.md").unlink()
    with pytest.raises(UserError, match=r"label.guidelines_file: .*g.zh-CN.md does not exist"):
        read_guidelines("", str(tmp_path / "g.{lang}.md"))


def test_the_default_config_has_guidelines_in_both_languages() -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from alignment.config import register_configs

    register_configs()
    conf = Path(__file__).resolve().parent.parent / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        guidelines = OmegaConf.to_object(compose(config_name="label")).label.guidelines
        assert set(guidelines) == set(LANGUAGES)
        assert "How to label" in guidelines["en"] and "如何标注" in guidelines["zh-CN"]
        one = OmegaConf.to_object(compose(config_name="label", overrides=["label.guidelines=Be kind."]))
        assert one.label.guidelines == "Be kind."
        with pytest.raises(UserError, match="label.guidelines: expected Markdown text"):
            OmegaConf.to_object(compose(config_name="label", overrides=["label.guidelines.en=5"]))


# ---------------------------------------------------------------------------- in the browser
PASSWORD = "i18n-pass-123"
GUIDELINES = {"en": "Prefer the **kinder** answer.", "zh-CN": "选择**更友善**的回答。"}
#: Words the Chinese pages may show in Latin letters: names (people, statistics, models), config keys and
#: commands, key names. Everything else in Latin letters would be English the catalogue missed.
LATIN_ALLOWED = {"carol", "root", "dora", "Esc", "Krippendorff", "Cohen", "PPO", "SFT", "KL", "html", "report",
                 "align", "RUN_DIR", "label", "runs_dir", "guidelines", "reports_for", "mini"}

#: The visible text of the page (attributes a reader sees and the fields' values included) without the model's text, the run
#: report, the language switch (each language named in itself) and code spans (commands, paths).
VISIBLE_UI_TEXT = """() => {
  const skip = (el) => el.closest(".model-text, .model-excerpt, #lang-switch, code, iframe, script, style");
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const p = n.parentElement;
    if (p && !skip(p) && p.checkVisibility() && n.data.trim()) out.push(n.data.trim());
  }
  document.querySelectorAll("[placeholder], [title], [aria-label]").forEach((el) => {
    if (skip(el) || !el.checkVisibility()) return;
    for (const a of ["placeholder", "title"]) if (el.getAttribute(a)) out.push(el.getAttribute(a));
  });
  document.querySelectorAll("input:not([type=password]):not([type=checkbox]), textarea").forEach((el) => {
    if (!skip(el) && el.checkVisibility() && el.value) out.push(el.value);     // e.g. a dropdown's choice
  });
  out.push(document.title);
  return out.join("\\n");
}"""


def _latin_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[A-Za-z][A-Za-z_']*[A-Za-z]", text) if w not in LATIN_ALLOWED}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> RunningApp:
    browser_available()
    running = start_app_with_a_run(tmp_path_factory.mktemp("label-i18n"), overlap=2, guidelines=GUIDELINES)
    running.store.add_items("p", demo_items(DemoWorld(0), 12), overlap=2)
    for name, role in (("carol", "annotator"), ("dora", "annotator"), ("root", "admin")):
        running.store.add_annotator(name, PASSWORD, role)
    yield running
    running.close()


def _login(browser, app: RunningApp, name: str, locale: str, login_text: str):
    from playwright.sync_api import expect

    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.goto(app.url)
    expect(page.get_by_text(login_text)).to_be_visible(timeout=30_000)      # the login page's message
    login_ui = page.evaluate(VISIBLE_UI_TEXT)
    page.locator("input[type=password]").fill(PASSWORD)
    page.locator("input:not([type=password])").first.fill(name)
    page.keyboard.press("Enter")
    expect(page.locator("#prompt .model-text")).not_to_be_empty(timeout=30_000)
    expect(page.locator("#progress")).not_to_be_empty(timeout=30_000)
    return context, page, login_ui


def _my_labels(app: RunningApp, name: str) -> list[dict]:
    return [lab for lab in app.store.labels("p") if lab["annotator"] == name]


def _walk_label_tab(page, app: RunningApp, name: str, lang: str) -> list[str]:
    """Label one item with the keyboard (A, slightly better), open every fold; the UI's text each step."""
    from playwright.sync_api import expect

    texts = [page.evaluate(VISIBLE_UI_TEXT)]
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("1")
    hint = page.locator("#key-hint")
    expect(hint).to_have_text(t(lang, "hint_side", side="A"))
    texts.append(page.evaluate(VISIBLE_UI_TEXT))
    page.keyboard.press("Escape")
    page.keyboard.press("e")
    expect(hint).to_have_text(t(lang, "hint_strength", strength=t(lang, "strength_3")))
    texts.append(page.evaluate(VISIBLE_UI_TEXT))
    page.keyboard.press("Escape")
    page.keyboard.press("w")
    page.keyboard.press("1")
    status = page.locator("#status")
    expect(status).to_contain_text(t(lang, "saved", label_id=999, choice=t(lang, "choice_A_2")).split("#")[0])
    expect(status).to_contain_text(t(lang, "choice_A_2"))
    [label] = _my_labels(app, name)
    assert label["strength"] == 2 and label["choice"] == label["shown_first"]
    page.get_by_text(t(lang, "flags_and_note")).click()
    expect(page.locator("#flags-a").get_by_label(t(lang, "category_violence"), exact=True)).to_be_visible()
    page.get_by_text(t(lang, "guidelines"), exact=True).click()
    expect(page.locator("#guidelines-text")).to_contain_text(GUIDELINES[lang].replace("**", ""))
    page.keyboard.press("s")
    expect(status).to_have_text(t(lang, "skipped"))
    texts.append(page.evaluate(VISIBLE_UI_TEXT))
    return texts


@pytest.mark.slow
@pytest.mark.browser
def test_chinese_page_labels_with_the_keyboard_and_shows_no_english(app: RunningApp, browser) -> None:
    context, page, login_ui = _login(browser, app, "carol", "zh-CN", ZH_CN["login_message"])
    assert not _latin_words(login_ui), login_ui                   # the login page is Chinese too
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    texts = _walk_label_tab(page, app, "carol", "zh-CN")
    for text in texts:
        assert not _latin_words(text), (_latin_words(text), text)
    assert page.title() == ZH_CN["title"]
    for word in ("当前账号：carol（标注员）", "你的标注", "回答 A", "A 好得多", "跳过 (s)", "快捷键", "暴力", "备注（选填）"):
        assert word in texts[-1].replace("\n", ""), word
    page.screenshot(path=str(Path(__file__).resolve().parent.parent / "test-artifacts" / "label-zh-CN.png"),
                    full_page=True)
    context.close()


@pytest.mark.slow
@pytest.mark.browser
def test_english_page_labels_with_the_keyboard_and_shows_no_chinese(app: RunningApp, browser) -> None:
    context, page, login_ui = _login(browser, app, "dora", "en-US", EN["login_message"])
    assert not CJK.search(login_ui), login_ui
    texts = _walk_label_tab(page, app, "dora", "en")
    for text in texts:
        assert not CJK.search(text), text
    assert page.title() == EN["title"]
    for word in ("Signed in as dora (annotator)", "your labels", "Response A", "A much better", "Skip (s)",
                 "violence", "Note (optional)"):
        assert word in texts[-1].replace("\n", " ").replace("  ", " "), word
    context.close()


@pytest.mark.slow
@pytest.mark.browser
def test_the_language_switch_turns_the_whole_page(app: RunningApp, browser) -> None:
    """An English browser switched to Chinese: Gradio's text and the server's, kept after a reload."""
    from playwright.sync_api import expect

    context, page, _ = _login(browser, app, "root", "en-US", EN["login_message"])
    expect(page.locator("#progress")).to_contain_text("your labels")
    page.locator("#lang-switch [data-lang='zh-CN']").click()
    expect(page.locator("#progress")).to_contain_text("你的标注", timeout=30_000)
    expect(page.locator("#btn-skip")).to_have_text(ZH_CN["skip"], timeout=30_000)
    assert page.locator("#lang-switch [data-lang='zh-CN']").get_attribute("aria-pressed") == "true"
    assert {c["name"]: c["value"] for c in context.cookies()}["label_lang"] == "zh-CN"

    # an admin's tabs in Chinese: the statistics, the accounts, the reports
    page.get_by_role("tab", name=ZH_CN["tab_admin"]).click()
    expect(page.locator("#admin-stats")).to_contain_text(ZH_CN["stats_per_annotator"], timeout=30_000)
    expect(page.locator("#admin-notes")).to_contain_text(ZH_CN["recent_notes"])
    expect(page.locator("#account-role input")).to_have_value(ZH_CN["role_annotator"])
    page.locator("#account-name textarea, #account-name input").first.fill("nobody")
    page.locator("#btn-deactivate").click()
    expect(page.locator("#account-result")).to_contain_text("没有名为")
    expect(page.locator("#admin-quality")).to_contain_text(ZH_CN["quality"])
    page.get_by_text(ZH_CN["item_browser"], exact=True).click()          # the item browser
    page.locator("#btn-items-search").click()
    expect(page.locator("#items-list")).to_contain_text("共 12 条符合", timeout=30_000)
    page.locator("#items-pick input").click()
    page.get_by_role("option", name="demo-0", exact=True).click()
    expect(page.locator("#item-detail")).to_contain_text("条目 demo-0", timeout=30_000)
    admin_text = page.evaluate(VISIBLE_UI_TEXT)
    latin = _latin_words(admin_text.replace("nobody", "")) - {"demo"}
    assert not latin, (latin, admin_text)
    page.get_by_role("tab", name=ZH_CN["tab_reports"]).click()
    expect(page.locator("#runs-list")).to_contain_text("mini", timeout=30_000)
    expect(page.locator("#runs-list")).to_contain_text(ZH_CN["col_gold_win_rate"])
    page.locator("#run-pick input").click()
    page.get_by_role("option", name="mini", exact=True).click()
    expect(page.locator("#report-note")).to_contain_text("运行 mini")
    reports_text = page.evaluate(VISIBLE_UI_TEXT)
    assert not _latin_words(reports_text), (_latin_words(reports_text), reports_text)

    page.reload()                                         # the choice stays
    expect(page.locator("#btn-skip")).to_have_text(ZH_CN["skip"], timeout=30_000)
    page.locator("#lang-switch [data-lang='en']").click()
    expect(page.locator("#btn-skip")).to_have_text(EN["skip"], timeout=30_000)
    expect(page.locator("#progress")).to_contain_text("your labels", timeout=30_000)
    page.get_by_role("tab", name=EN["tab_admin"]).click()                 # and the admin tab in English
    expect(page.locator("#admin-stats")).to_contain_text(EN["stats_per_annotator"], timeout=30_000)
    expect(page.locator("#admin-quality")).to_contain_text(EN["quality"])
    page.get_by_text(EN["item_browser"], exact=True).click()
    page.locator("#btn-items-search").click()
    expect(page.locator("#items-list")).to_contain_text("Matching items: 12", timeout=30_000)
    admin_text = page.evaluate(VISIBLE_UI_TEXT)
    assert not CJK.search(admin_text), admin_text
    context.close()


def _before_field(text: str) -> str:
    """A message's words before its first field (filled with ``\\0``): what a page shows whatever the field."""
    return text.split("\0")[0].strip()


def _dispute(app: RunningApp, ext_id: str) -> int:
    """A new item on which two annotators disagree (one says A, the other B, in stored order)."""
    from labeling_ui.queue import LabelQueue

    [item_id] = app.store.add_items("p", [{"id": ext_id, "prompt": f"{ext_id}?", "response_a": "one",
                                           "response_b": "two"}], overlap=2)
    q = LabelQueue(app.store, "p", gold_rate=0.0)
    for name, stored in ((f"{ext_id}-x", "A"), (f"{ext_id}-y", "B")):
        app.store.add_annotator(name, PASSWORD)
        while (shown := q.next_item(name)).item_id != item_id:
            q.skip(name, shown.assignment_id)
        with app.store.read() as c:
            first = c.execute("SELECT shown_first FROM assignments WHERE id = ?", (shown.assignment_id,)).fetchone()[0]
        q.submit(name, shown.assignment_id, stored if first == "A" else {"A": "B", "B": "A"}[stored], 3)
    return item_id


# (Last in this file: the disputed items it adds would change the item counts the tests above expect.)
@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("locale, lang, ext_id", [("zh-CN", "zh-CN", "争议"), ("en-US", "en", "dispute")])
def test_the_review_tab_and_pausing_in_each_language(app: RunningApp, browser, locale: str, lang: str,
                                                     ext_id: str) -> None:
    """A reviewer lists the disagreements, reads both labels and records a decision; an admin pauses
    and un-pauses an account: every string on the way in the page's language."""
    from playwright.sync_api import expect

    from labeling_ui.review import adjudications, is_paused

    item_id = _dispute(app, ext_id)
    if app.store.annotator("rita") is None:
        app.store.add_annotator("rita", PASSWORD, "reviewer")
    context, page, _ = _login(browser, app, "rita", locale, t(lang, "login_message"))
    expect(page.get_by_role("tab", name=t(lang, "tab_admin"))).to_be_hidden()
    page.get_by_role("tab", name=t(lang, "tab_review")).click()
    listed = page.locator("#review-list")       # (the tests above may have disagreed on an item too)
    expect(listed).to_contain_text(_before_field(t(lang, "disagreements_found", total="\0", shown=0)), timeout=30_000)
    expect(listed).to_contain_text(ext_id)
    page.locator("#review-pick input").click()
    page.get_by_role("option", name=ext_id, exact=True).click()
    detail = page.locator("#review-detail")
    expect(detail).to_contain_text(t(lang, "no_decision"), timeout=30_000)
    expect(detail).to_contain_text(f"{ext_id}-x")
    expect(detail).to_contain_text(t(lang, "choice_B_3"))
    page.locator("#decision input").click()
    page.get_by_role("option", name=t(lang, "choice_B_2"), exact=True).click()
    page.locator("#decision-flags-a").get_by_label(t(lang, "category_violence"), exact=True).check()
    page.locator("#btn-adjudicate").click()
    expect(page.locator("#decision-result")).to_contain_text(t(lang, "choice_B_2"), timeout=30_000)
    expect(detail).to_contain_text(_before_field(t(lang, "current_decision", reviewer="\0", when="", choice="")))
    [decision] = [d for d in adjudications(app.store, "p") if d["item_id"] == item_id]
    assert (decision["reviewer"], decision["choice"], decision["strength"], decision["flags_a"]) == \
        ("rita", "B", 2, ["violence"])
    review_text = page.evaluate(VISIBLE_UI_TEXT)
    if lang == "zh-CN":
        latin = _latin_words(review_text) - {"rita", "x", "y", "demo"}      # names and item ids
        assert not latin, (latin, review_text)
    else:
        assert not CJK.search(review_text.replace(ext_id, "")), review_text
    context.close()

    context, page, _ = _login(browser, app, "root", locale, t(lang, "login_message"))
    page.get_by_role("tab", name=t(lang, "tab_admin")).click()
    expect(page.locator("#pause-states")).to_contain_text(t(lang, "pause_states"), timeout=30_000)
    page.locator("#account-name textarea, #account-name input").first.fill(f"{ext_id}-x")
    with app.store.read() as c:          # the lease the account took after its label
        leases = c.execute("""SELECT COUNT(*) FROM assignments a JOIN annotators n ON n.id = a.annotator_id
                              WHERE n.name = ? AND a.status = 'active'""", (f"{ext_id}-x",)).fetchone()[0]
    page.locator("#btn-pause").click()
    expect(page.locator("#account-result")).to_contain_text(t(lang, "paused_account", name=f"{ext_id}-x",
                                                             leases=leases).replace("**", ""), timeout=30_000)
    expect(page.locator("#pause-states")).to_contain_text(_before_field(t(lang, "state_paused_admin", when="\0")))
    assert is_paused(app.store, f"{ext_id}-x")
    # Gradio's own progress text of an event still running when the tab opened is no text of ours
    expect(page.locator("text=processing >> visible=true")).to_have_count(0, timeout=30_000)
    admin_text = page.evaluate(VISIBLE_UI_TEXT)
    if lang == "zh-CN":
        latin = _latin_words(admin_text) - {"rita", "x", "y", "demo"}
        assert not latin, (latin, admin_text)
    else:
        names = {a.name for a in app.store.annotators()}    # the accounts the Chinese run made are names
        assert not CJK.search("\n".join(line for line in admin_text.splitlines() if line not in names)), admin_text
    page.locator("#btn-unpause").click()
    expect(page.locator("#account-result")).to_contain_text(
        t(lang, "unpaused_account", name=f"{ext_id}-x").replace("**", ""), timeout=30_000)
    assert not is_paused(app.store, f"{ext_id}-x")
    context.close()
