"""The campaign's annotation guidelines (Markdown), one click away on the Label tab, in each UI language."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import gradio as gr

from alignment.errors import UserError
from labeling_ui.i18n import DEFAULT, LANGUAGES, frontend_catalogue, t


def guidelines_by_language(guidelines: str | Mapping[str, str]) -> dict[str, str]:
    """The guidelines (Markdown) for each UI language. One text serves every language; a map gives each
    language its own (keys from :data:`labeling_ui.i18n.LANGUAGES`), and a language it leaves out is
    shown the English text (or, without one, the first given). No text at all: a note saying so."""
    if isinstance(guidelines, str):
        given = {lang: guidelines for lang in LANGUAGES} if guidelines.strip() else {}
    else:
        unknown = sorted(set(guidelines) - set(LANGUAGES))
        if unknown:
            raise UserError(f"label.guidelines: unknown language(s) {unknown}; expected some of {list(LANGUAGES)}")
        bad = sorted(lang for lang, text in guidelines.items() if not isinstance(text, str))
        if bad:
            raise UserError(f"label.guidelines.{bad[0]}: expected Markdown text, got {type(guidelines[bad[0]]).__name__}")
        given = {lang: text for lang, text in guidelines.items() if text.strip()}
    if not given:
        return {lang: t(lang, "no_guidelines") for lang in LANGUAGES}
    fallback = given.get(DEFAULT) or next(iter(given.values()))
    return {lang: given.get(lang, fallback) for lang in LANGUAGES}


def app_i18n(guidelines: str | Mapping[str, str]) -> gr.I18n:
    """The ``gr.I18n`` for ``launch()``: the UI catalogue plus this campaign's guidelines."""
    texts = guidelines_by_language(guidelines)
    return gr.I18n(**frontend_catalogue({lang: {"guidelines_text": text} for lang, text in texts.items()}))


def read_guidelines(text: str | Mapping[str, str], path: str | None) -> str | dict[str, str]:
    """The guidelines to serve: ``label.guidelines`` (a text, or a map language -> text), or the file
    ``label.guidelines_file`` when set. A file name with ``{lang}`` in it names one file per language
    (``guidelines.{lang}.md``: ``guidelines.en.md``, ``guidelines.zh-CN.md``), and each must exist."""
    if not path:
        return text if isinstance(text, str) else dict(text)
    if "{lang}" not in path:
        return _read_text(Path(path))
    return {lang: _read_text(Path(path.replace("{lang}", lang))) for lang in LANGUAGES}


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"label.guidelines_file: {path} does not exist")
    return path.read_text(encoding="utf-8")
