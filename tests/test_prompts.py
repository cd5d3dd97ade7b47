"""Prompt sets as data: every accepted format, the errors for bad files, length checks, the ``hh`` world."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from datasets import Dataset

from alignment.data.hh_world import HH_SETS, HH_SIZES, PAIR_SPLITS, hh_pairs, hh_prompt_path, hh_prompts
from alignment.data.preferences import normalise_row
from alignment.data.prompts import PromptRecord, check_prompt_lengths, hh_messages, load_prompts
from alignment.errors import UserError
from alignment.modeling import train_tokenizer
from conftest import shared_data

HH = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: How do I bake bread?\n\nAssistant:"


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------ formats
def test_every_prompt_format_loads_from_jsonl(tmp_path: Path) -> None:
    rows = [
        {"prompt": "How do I boil an egg?"},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}]},
        {"prompt": HH},
        {"chosen": HH + " Mix flour and water.", "rejected": HH + " No."},
    ]
    path = _jsonl(tmp_path / "prompts.jsonl", rows[:2] + [""] + rows[2:])  # a blank line keeps numbering
    records = load_prompts(path)
    assert [r.source for r in records] == [f"{path}:{n}" for n in (1, 2, 4, 5)]
    assert records[0].messages == [{"role": "user", "content": "How do I boil an egg?"}]
    assert records[1].messages[0]["role"] == "system" and records[1].text == "System: Be brief.\n\nUser: Why is the sky blue?"
    turns = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"},
             {"role": "user", "content": "How do I bake bread?"}]
    assert records[2].messages == turns, "an HH prompt keeps every turn before the last Assistant turn"
    assert records[3].messages == turns, "an HH pair's prompt is its chosen transcript up to the last answer"
    assert records[0].to_trl() == {"prompt": [{"role": "user", "content": "How do I boil an egg?"}]}
    assert load_prompts(path, limit=2) == records[:2]


def test_hh_transcripts_split_at_the_last_assistant_turn() -> None:
    assert hh_messages("Human: one\n\nAssistant: two\n\nHuman: three") == [
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"}]
    assert hh_messages("\r\n\r\nHuman: Why?\r\n\r\nAssistant: Because.") == [{"role": "user", "content": "Why?"}]
    with pytest.raises(ValueError, match="Human"):
        hh_messages("Assistant: hi")


def test_prompts_load_from_a_saved_folder_and_a_gz_file(tmp_path: Path) -> None:
    rows = [{"prompt": [{"role": "user", "content": f"question {i}?"}], "id": i} for i in range(3)]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    records = load_prompts(tmp_path / "saved")
    assert [r.text for r in records] == ["question 0?", "question 1?", "question 2?"]
    assert records[1].source == f"{tmp_path / 'saved'} row 1"
    with gzip.open(tmp_path / "p.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"prompt": "zipped?"}) + "\n")
    assert load_prompts(tmp_path / "p.jsonl.gz")[0].text == "zipped?"


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("rows, line, message", [
    ([{"prompt": "ok"}, {"question": "no prompt column"}], 2, "no 'prompt' column"),
    ([{"prompt": "ok"}, {"prompt": 42}], 2, "must be a string or a list of chat messages"),
    ([{"prompt": "   "}], 1, "'prompt' is empty"),
    ([{"prompt": "ok"}, {"prompt": "ok"}, {"prompt": [{"role": "user"}]}], 3, "must be an object with 'role' and 'content'"),
    ([{"prompt": [{"role": "robot", "content": "x"}]}], 1, "has role 'robot'"),
    ([{"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}], 1,
     "must end with a non-empty user message"),
    ([{"prompt": "ok"}, "{not json"], 2, "not valid JSON"),
    ([{"prompt": "Human: hi\n\nAssistant: hello\n\nHuman:   "}], 1, "last Human turn is empty"),
])
def test_bad_prompt_rows_name_file_and_line(tmp_path: Path, rows: list, line: int, message: str) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(UserError, match=re.escape(message)) as err:
        load_prompts(path)
    text = str(err.value)
    assert text.startswith(f"{path}:{line}: ") and "\n" not in text


def test_empty_or_missing_sets_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(UserError, match="no rows"):
        load_prompts(empty)
    with pytest.raises(UserError, match="no such file"):
        load_prompts(tmp_path / "missing.jsonl")
    Dataset.from_list([{"question": "x"}]).save_to_disk(str(tmp_path / "wrong"))
    with pytest.raises(UserError, match=r"wrong: no 'prompt' column .*columns: \['question'\]"):
        load_prompts(tmp_path / "wrong")
    Dataset.from_list([{"prompt": "x"}]).select([]).save_to_disk(str(tmp_path / "none"))
    with pytest.raises(UserError, match="none: the saved dataset is empty"):
        load_prompts(tmp_path / "none")


def test_prompt_lengths_are_checked_with_the_chat_template(tmp_path: Path) -> None:
    tok = train_tokenizer(["how do I bake bread", "a long question " * 20], vocab_size=300)
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "how do I bake bread"}, {"prompt": "a long question " * 40}])
    records = load_prompts(path)
    short = check_prompt_lengths(records[:1], tok, context=64)
    bare = len(tok("how do I bake bread")["input_ids"])
    assert short[0] > bare, "the chat template's role tokens are counted"
    with pytest.raises(UserError, match=re.escape(f"{path}:2: the prompt is")) as err:
        check_prompt_lengths(records, tok, context=128, reserve=32)
    assert "more than the 96 the context allows" in str(err.value)
    assert check_prompt_lengths([PromptRecord([{"role": "user", "content": "hi"}], "x:1")], tok, 64) == [
        len(tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                    tokenize=True, return_dict=False))]


# ------------------------------------------------------------------ the hh world
def test_hh_world_sets_have_their_documented_sizes() -> None:
    for name in HH_SETS:
        records = hh_prompts(name)
        assert len(records) == HH_SIZES[name], name
        assert all(r.messages[-1]["role"] == "user" and r.text.strip() for r in records)
    assert all(len(r.messages) == 1 for r in hh_prompts("redteam")), "red-team prompts are opening turns"
    for split in PAIR_SPLITS:
        pairs = hh_pairs(split)
        assert len(pairs) == HH_SIZES[f"pairs.{split}"]
        triple = normalise_row(pairs[0], f"{split}:1")
        assert triple["chosen"] != triple["rejected"]
    # held-out sets share no opening question with training, and training prompts are the train pairs'
    opening = {r.messages[0]["content"] for r in hh_prompts("train")}
    assert not opening & {r.messages[0]["content"] for r in hh_prompts("eval")}
    assert not opening & {r.text for r in hh_prompts("redteam")}
    assert {json.dumps(p["prompt"], sort_keys=True) for p in hh_pairs("train")} == \
        {json.dumps(r.messages, sort_keys=True) for r in hh_prompts("train")}


def test_benign_set_is_large_varied_and_includes_alarming_wording() -> None:
    rows = [json.loads(line) for line in hh_prompt_path("benign").read_text(encoding="utf-8").splitlines()]
    texts = [r["prompt"][0]["content"] for r in rows]
    assert len(set(t.lower() for t in texts)) == len(texts) >= 150
    alarming = [t for r, t in zip(rows, texts) if r["kind"] == "sounds_dangerous"]
    assert len(alarming) >= 40
    assert any("kill a Python process" in t for t in alarming)


def test_hh_world_files_are_what_the_script_derives(tmp_path: Path) -> None:
    """The shipped files are reproducible from the shared HH sample with the documented script."""
    import subprocess
    import sys

    source = shared_data("hh-rlhf-harmless/harmless-base-test.dev.jsonl")
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "scripts/derive_hh_world.py", "--source", str(source), "--out",
                             str(tmp_path)], cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    shipped = hh_prompt_path("train").parent
    for path in sorted(tmp_path.iterdir()):
        assert path.read_bytes() == (shipped / path.name).read_bytes(), path.name
