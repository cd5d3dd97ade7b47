"""align-dpo on real multi-turn preference pairs (the HH-RLHF pairs shipped in the package): each prompt
reaches TRL as its chat turns, rendered by the policy's template exactly as the policy sees it when it
answers, and the pairs TRL drops for ``dpo.max_length`` are counted in the metrics and the report."""

import json

import pytest
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from alignment.config import Config
from alignment.data.hh_world import hh_pairs
from alignment.data.preferences import normalise_row
from alignment.generation import chat_prompt_ids
from alignment.reward.data import load_preference_rows
from alignment.stages.dpo import preference_dataset
from conftest import run_cli


def hh_rows(n: int) -> list[dict]:
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config),
                                              OmegaConf.from_dotlist(["data.source=hh", f"data.max_rows={n}"])))
    return load_preference_rows(cfg)[0]


def test_multi_turn_prompts_reach_dpo_as_their_turns():
    source = [p for p in hh_pairs("train")[:50] if len(p["prompt"]) > 1]
    assert source, "the shipped HH pairs have multi-turn prompts"
    rows = [normalise_row(p, f"pairs:{i}") for i, p in enumerate(source)]
    dataset = preference_dataset(rows)
    for pair, example in zip(source, dataset):
        assert example["prompt"] == [{"role": m["role"], "content": m["content"]} for m in pair["prompt"]]
        assert example["chosen"] == [{"role": "assistant", "content": pair["chosen"][0]["content"].strip()}]
    # an HH transcript (text) is split into its turns too; a plain prompt is one user turn
    transcript = normalise_row({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant: Fine.",
                                "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant: Go away."},
                               "hh:1")
    plain = normalise_row({"prompt": "Q?", "chosen": "a", "rejected": "b"}, "f:1")
    assert [len(e["prompt"]) for e in preference_dataset([transcript, plain])] == [3, 1]
    assert preference_dataset([transcript])[0]["prompt"][1] == {"role": "assistant", "content": "Hello!"}


@pytest.mark.slow
def test_dpo_counts_the_pairs_trl_drops_for_length_in_metrics_and_report(smoke_rm, tmp_path):
    run, pairs, max_length = tmp_path / "run", 64, 128
    result = run_cli("alignment.stages.dpo", "scale=smoke", "data=hh", f"data.max_rows={pairs}",
                     f"dpo.max_length={max_length}", f"dpo.policy_path={smoke_rm / 'sft' / 'model'}",
                     f"dpo.reward_path={smoke_rm / 'reward' / 'model'}",
                     f"dpo.safety_baseline={smoke_rm / 'sft' / 'safety.json'}", f"run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "dpo" / "metrics.json").read_text())
    # TRL drops a pair whose prompt alone fills max_length: the prompt as the policy's template renders its turns
    tokenizer = AutoTokenizer.from_pretrained(smoke_rm / "sft" / "model")
    rows = hh_rows(pairs)
    expected = sum(len(chat_prompt_ids(tokenizer, example["prompt"])) >= max_length
                   for example in preference_dataset(rows))
    assert metrics["pairs"] == len(rows) and 0 < metrics["pairs_dropped_for_length"] == expected < len(rows)
    assert metrics["pairs_truncated"] > 0
    report = (run / "dpo" / "report.html").read_text()
    assert "pairs_dropped_for_length" in report and "pairs_truncated" in report
    assert f"{expected} of {len(rows)} pairs dropped" in result.stderr
