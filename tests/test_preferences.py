"""Preference data: HH-RLHF transcripts, TRL formats, validation, and pair truncation."""

import json

import pytest

from alignment.data.preferences import demo_preferences, hh_pair, normalise_row, split_hh_transcript
from alignment.data.world import DemoWorld
from alignment.errors import UserError
from alignment.modeling import load_tokenizer, minilm_path
from alignment.reward.encoding import encode_reward_row
from conftest import shared_data


def test_hh_single_turn():
    pair = hh_pair("\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help with that.",
                   "\n\nHuman: How do I pick a lock?\n\nAssistant: Use a tension wrench.")
    assert pair == {"prompt": "Human: How do I pick a lock?\n\nAssistant:",
                    "chosen": "I can't help with that.", "rejected": "Use a tension wrench."}


def test_hh_multi_turn_splits_at_the_last_assistant_turn():
    shared = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a secret.\n\nAssistant:"
    prompt, answer = split_hh_transcript(shared + " Sure, here it is.")
    assert prompt == shared.lstrip() and answer == "Sure, here it is."
    assert "Hello!" in prompt and prompt.endswith("Assistant:")


def test_hh_odd_whitespace():
    chosen = "\r\n\r\nHuman: Why?  \r\n\r\nAssistant:   Because.  \n"
    rejected = "\n\nHuman: Why?\n\nAssistant: No idea"
    pair = hh_pair(chosen, rejected)
    assert pair["chosen"] == "Because." and pair["rejected"] == "No idea"
    with pytest.raises(ValueError, match="differ"):
        hh_pair("\n\nHuman: A\n\nAssistant: x", "\n\nHuman: B\n\nAssistant: y")
    with pytest.raises(ValueError, match="Assistant"):
        split_hh_transcript("\n\nHuman: no answer turn")


def test_trl_formats_normalise_to_text_triples():
    explicit = normalise_row({"prompt": "Q?", "chosen": "good", "rejected": "bad", "margin": 0.5}, "f:1")
    assert explicit == {"prompt": "Q?", "chosen": "good", "rejected": "bad", "margin": 0.5}
    conv = normalise_row({"prompt": [{"role": "user", "content": "Q?"}],
                          "chosen": [{"role": "assistant", "content": "good"}],
                          "rejected": [{"role": "assistant", "content": "bad"}]}, "f:2")
    assert conv["prompt"] == "Q?" and conv["chosen"] == "good" and conv["margin"] == 0.0
    implicit = normalise_row({"chosen": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "good"}],
                              "rejected": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "bad"}]},
                             "f:3")
    assert (implicit["prompt"], implicit["chosen"], implicit["rejected"]) == ("Q?", "good", "bad")


@pytest.mark.parametrize("row, message", [
    ({"prompt": "Q", "chosen": "same", "rejected": "same"}, "equals the rejected"),
    ({"prompt": "Q", "chosen": "  ", "rejected": "x"}, "empty"),
    ({"prompt": "Q", "chosen": "x"}, "missing column 'rejected'"),
    ({"chosen": "plain", "rejected": "text"}, "no 'prompt' column"),
])
def test_bad_rows_name_their_location(row, message):
    with pytest.raises(UserError, match=message) as err:
        normalise_row(row, "data.jsonl:7")
    assert "data.jsonl:7" in str(err.value)


def test_real_hh_sample_converts():
    path = shared_data("hh-rlhf-harmless/harmless-base-test.dev.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()[:200]]
    converted = []
    for i, row in enumerate(rows):
        try:
            converted.append(normalise_row(row, f"{path}:{i + 1}"))
        except UserError:
            continue
    assert len(converted) >= 195
    assert all(r["prompt"].startswith("Human:") and r["prompt"].endswith("Assistant:") for r in converted)


def test_long_pairs_are_cut_from_the_left_of_the_prompt():
    tok = load_tokenizer(minilm_path(), require_chat_template=False)
    prompt = " ".join(f"word{i}" for i in range(400)) + " final question?"
    encoded, cut = encode_reward_row(prompt, "the whole answer stays", tok, 64, "pair")
    assert cut and len(encoded["input_ids"]) <= 64
    text = tok.decode(encoded["input_ids"])
    assert "final question" in text and "the whole answer stays" in text and "word0 " not in text
    short, cut = encode_reward_row("short?", "answer", tok, 64, "pair")
    assert not cut


def test_demo_preferences_follow_the_annotator():
    world = DemoWorld(0)
    clean = demo_preferences(world, "eval", 1, noise=0.0, position_bias=0.0, seed=0)
    assert clean and all(r["gold_chosen_better"] for r in clean)
    noisy = demo_preferences(world, "train", 2, noise=0.3, position_bias=0.0, seed=0)
    wrong = sum(not r["gold_chosen_better"] for r in noisy) / len(noisy)
    assert 0.25 < wrong < 0.35
    assert {r["prompt_id"] for r in noisy} <= {p.id for p in world.prompts("train")}
