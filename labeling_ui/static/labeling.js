// The labeling page's script: the UI language, the language switch and the keyboard shortcuts.
// labeling_ui.app loads it into the page's <head> after window.labelingConfig ({strings, cookie}: the
// texts this script shows in every UI language, and the language cookie's name).
(() => {
  // The UI language: the one picked with the switch (cookie), else the first of the browser's languages
  // that the UI has (any zh-* reads the Simplified Chinese UI), else English; the server applies the same
  // rule to Accept-Language (labeling_ui.i18n.choose). Gradio's front end picked a locale from
  // navigator.language alone before this script ran: set it to ours when they differ.
  const STRINGS = window.labelingConfig.strings;
  const LANGS = Object.keys(STRINGS), COOKIE = window.labelingConfig.cookie;
  const langOfTag = (tag) => ({zh: "zh-CN", en: "en"})[(tag || "").split(/[-_]/)[0].toLowerCase()] || null;
  const picked = () => {
    const m = document.cookie.match(new RegExp("(?:^|;\\s*)" + COOKIE + "=([^;]*)"));
    return m && LANGS.includes(decodeURIComponent(m[1])) ? decodeURIComponent(m[1]) : null;
  };
  const wanted = picked() || (navigator.languages || [navigator.language]).map(langOfTag).find(Boolean) || "en";
  const lang = () => langOfTag(document.documentElement.lang) || "en";
  const tr = (key, fields = {}) => (STRINGS[lang()] || STRINGS.en)[key].replace(/\{(\w+)\}/g, (m, k) => fields[k]);
  const setLocale = async (target) => {
    // Gradio's changeLocale lives in its core module; importing the loaded module again returns it.
    const url = performance.getEntriesByType("resource").map((e) => e.name)
      .find((name) => /\/assets\/core-[\w-]+\.js$/.test(name));
    if (!url) { console.warn("labeling: Gradio's core module not found; the page keeps its language"); return; }
    const core = await import(url);
    if (typeof core.changeLocale === "function") core.changeLocale(target);
  };
  if (document.documentElement.lang !== wanted) setLocale(wanted);
  const showLanguage = () => {
    document.title = tr("title");
    document.querySelectorAll("#lang-switch [data-lang]").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.lang === lang()));
    });
  };
  new MutationObserver(showLanguage).observe(document.documentElement, {attributes: true, attributeFilter: ["lang"]});
  // The switch: remember the choice (the server reads it too) and reload, so that every text the server
  // wrote comes back in the new language.
  document.addEventListener("click", (ev) => {
    const el = ev.target.closest ? ev.target.closest("#lang-switch [data-lang]") : null;
    if (!el || !LANGS.includes(el.dataset.lang)) return;
    ev.preventDefault();
    document.cookie = `${COOKIE}=${encodeURIComponent(el.dataset.lang)}; path=/; max-age=31536000; samesite=lax`;
    location.reload();
  });

  // Keyboard shortcuts, on the Label tab only and never while typing (the note, a dropdown):
  //   1 / 2 pick A / B and q w e r the strength 1-4, in either order: the second key labels;
  //   3 tie, 4 both bad, s skip, u undo, Escape forgets a half-typed choice.
  // The pending half is highlighted on the choice bar and named in #key-hint, beside the buttons.
  const direct = {"3": "btn-tie", "4": "btn-both-bad", "s": "btn-skip", "u": "btn-undo"};
  const sides = {"1": "a", "2": "b"};
  const strengths = {"q": 1, "w": 2, "e": 3, "r": 4};
  let side = null, strength = null;
  const typing = (el) => el && (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
    (el.tagName === "INPUT" && !["checkbox", "radio", "button", "submit"].includes((el.type || "").toLowerCase())));
  const shown = (el) => el && el.offsetParent !== null && !el.disabled;
  const hint = (text) => { const el = document.getElementById("key-hint"); if (el) el.textContent = text; };
  const mark = () => {
    document.querySelectorAll(".choice-bar button").forEach((b) => {
      const m = /^btn-([ab])-([1-4])$/.exec(b.id || "");
      b.classList.toggle("pending", !!m && (side !== null || strength !== null) &&
        (side === null || m[1] === side) && (strength === null || Number(m[2]) === strength));
    });
  };
  const forget = () => { side = null; strength = null; mark(); hint(""); };
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat || typing(ev.target)) return;
    if (!shown(document.getElementById("choice-bar"))) return;          // another tab is showing
    const key = (ev.key || "").toLowerCase();
    if (key === "escape") { forget(); return; }
    if (key in direct) {
      const el = document.getElementById(direct[key]);
      if (shown(el)) { ev.preventDefault(); forget(); el.click(); }
      return;
    }
    if (key in sides) side = sides[key];
    else if (key in strengths) strength = strengths[key];
    else return;
    ev.preventDefault();
    if (side !== null && strength !== null) {
      const el = document.getElementById(`btn-${side}-${strength}`);
      forget();
      if (shown(el)) el.click();
      return;
    }
    mark();
    hint(side !== null ? tr("hint_side", {side: side.toUpperCase()})
                       : tr("hint_strength", {strength: tr(`strength_${strength}`)}));
  });
  // A new item: forget a half-typed choice, show its first lines and bring it into view. (Also marks the
  // language switch whenever it is drawn.)
  let lastKey = null;
  new MutationObserver(() => {
    if (document.querySelector("#lang-switch [data-lang]:not([aria-pressed])")) showLanguage();
    // Gradio gives each checkbox its value as a tooltip: show the category's name in the page's language.
    document.querySelectorAll(".flags-group input[type=checkbox]").forEach((box) => {
      const shownName = box.nextElementSibling ? box.nextElementSibling.textContent.trim() : "";
      if (shownName && box.title !== shownName) box.title = shownName;
    });
    const text = document.querySelector("#prompt .model-text");
    const key = text ? (text.dataset.key || text.textContent) : null;
    if (key === lastKey) return;
    lastKey = key;
    forget();
    document.querySelectorAll("#response-a, #response-b, #prompt").forEach((el) => { el.scrollTop = 0; });
    const top = document.getElementById("prompt-label") || document.getElementById("prompt");
    if (top && top.getBoundingClientRect().top < 0) top.scrollIntoView({block: "start"});
  }).observe(document.documentElement, {childList: true, subtree: true});
  showLanguage();
})();
