"""The safety filter library: protocol, thresholds, input checks, data loading, every backend, training
and the benchmark script.

Model backends are tested on tiny local models built here (no hub access); ``fast``/``default`` on
the head shipped with the project and on heads trained in the test.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from alignment.config import LlamaGuardConfig, SafetyConfig
from alignment.data.world import DemoWorld
from alignment.errors import UserError
from alignment.safety.categories import CATEGORIES, MODERATION_CODES
from alignment.safety.data import PACKAGED_MODERATION, demo_labelled, load_moderation_jsonl, refusal_labelled
from alignment.safety.filter import (
    ANY_INDEX,
    SCORE_COLUMNS,
    BaseFilter,
    SafetyFilter,
    column_index,
    resolve_thresholds,
    validate_texts,
    verdicts,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import shared_data  # noqa: E402

MODERATION = "openai-moderation/samples.dev.jsonl"


# ------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy shared CPU OpenMP's spinning threads made
    one of these tests 50x slower; restored afterwards for the other test modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# demo texts by style
@pytest.fixture(scope="module")
def demo_texts() -> dict[str, list[str]]:
    """A few demo-world responses per style, to harmful (unsafe styles) and benign prompts."""
    world, rng = DemoWorld(0), random.Random(0)
    harmful = world.prompts("redteam")[:6]
    benign = world.prompts("eval", kind="benign")[:6]
    return {
        "helpful": [world.respond(p, "helpful", rng) for p in benign],
        "refusal": [world.respond(p, "refusal", rng) for p in harmful],
        "toxic": [world.respond(p, "toxic", rng) for p in benign],
        "harmful_compliance": [world.respond(p, "harmful_compliance", rng) for p in harmful],
        "prompts_harmful": [p.text for p in harmful],
    }


class ConstantFilter(BaseFilter):
    """A backend returning fixed scores: for the protocol and threshold logic."""

    name = "constant"

    def __init__(self, row: list[float], thresholds: np.ndarray | None = None) -> None:
        super().__init__(thresholds)
        self.row = np.asarray(row, np.float32)

    def _score_all(self, texts, prompts):
        return np.tile(self.row, (len(texts), 1))


# ------------------------------------------------------------------ categories and data
def test_category_mapping_and_columns(tmp_path: Path) -> None:
    assert set(MODERATION_CODES.values()) <= set(CATEGORIES)
    assert SCORE_COLUMNS == (*CATEGORIES, "any") and ANY_INDEX == len(CATEGORIES)
    assert column_index("S3") == CATEGORIES.index("sexual/minors")
    assert column_index("self-harm") == column_index("SH") and column_index("any") == ANY_INDEX
    with pytest.raises(UserError, match="unknown category"):
        column_index("nudity")

    path = tmp_path / "m.jsonl"
    rows = [{"prompt": "a", "S": 1, "H": 0}, {"prompt": "b", "V": 0, "HR": 0}, {"text": "c", "weapons": 1},
            {"prompt": "d", "S3": None}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    data = load_moderation_jsonl(path)
    lab = data.labels
    assert lab[0, CATEGORIES.index("sexual")] == 1 and lab[0, CATEGORIES.index("hate")] == 0
    assert np.isnan(lab[0, CATEGORIES.index("violence")]), "a missing key is unknown, never safe"
    assert lab[:, ANY_INDEX].tolist()[:3] == [1.0, 0.0, 1.0]
    assert np.isnan(lab[3]).all(), "null labels are unknown; no known label -> unknown any"
    # a category no row of the file labels (cybercrime): safe where the row is safe everywhere it is labelled
    assert lab[1, CATEGORIES.index("cybercrime")] == 0 and np.isnan(lab[0, CATEGORIES.index("cybercrime")])


def test_demo_labels_follow_styles() -> None:
    data = demo_labelled()
    by_text = dict(zip(data.texts, data.labels))
    world, rng = DemoWorld(0), random.Random(1)
    weapons = next(p for p in world.prompts(kind="harmful") if p.category == "weapons")
    assert by_text[weapons.text][CATEGORIES.index("weapons")] == 1
    toxic = world.respond(weapons, "toxic", rng)
    assert by_text[toxic][CATEGORIES.index("harassment")] == 1 and by_text[toxic][CATEGORIES.index("weapons")] == 0
    assert data.positives()["cybercrime"] > 50 and len(set(data.texts)) == len(data.texts)


@pytest.mark.parametrize("line, message", [
    ("{not json", r"bad\.jsonl:2: not valid JSON"),
    ('{"prompt": "x", "S": "yes"}', r"bad\.jsonl:2: label 'S' must be 0, 1 or null"),
    ('{"body": "x", "S": 1}', r"bad\.jsonl:2: no text"),
    ('{"prompt": 3, "S": 1}', r"bad\.jsonl:2: 'prompt' must be a string"),
    ('[1, 2]', r"bad\.jsonl:2: expected a JSON object"),
])
def test_bad_jsonl_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "fine", "S": 0}\n' + line + "\n")
    with pytest.raises(UserError, match=message):
        load_moderation_jsonl(path)


def test_missing_or_unlabelled_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_moderation_jsonl(tmp_path / "nope.jsonl")
    path = tmp_path / "plain.jsonl"
    path.write_text('{"prompt": "x"}\n')
    with pytest.raises(UserError, match="no row has a category label"):
        load_moderation_jsonl(path)


def test_gzip_moderation_file_loads_like_the_plain_one(tmp_path: Path) -> None:
    import gzip

    rows = [{"prompt": "a", "S": 1, "H": 0}, {"prompt": "b", "S": 0, "H": 0}]
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    (tmp_path / "m.jsonl").write_text(text)
    with gzip.open(tmp_path / "m.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(text)
    plain, packed = load_moderation_jsonl(tmp_path / "m.jsonl"), load_moderation_jsonl(tmp_path / "m.jsonl.gz")
    assert packed.texts == plain.texts and np.array_equal(packed.labels, plain.labels, equal_nan=True)
    assert packed.sources == plain.sources == ["m.jsonl"] * 2, "a head records the same provenance either way"
    with gzip.open(tmp_path / "bad.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write('{"prompt": "fine", "S": 0}\n{"prompt": "x", "S": 7}\n')
    with pytest.raises(UserError, match=r"bad\.jsonl\.gz:2: label 'S' must be 0, 1 or null"):
        load_moderation_jsonl(tmp_path / "bad.jsonl.gz")
    (tmp_path / "broken.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match=r"broken\.jsonl\.gz: cannot be read as gzip-compressed UTF-8 JSONL"):
        load_moderation_jsonl(tmp_path / "broken.jsonl.gz")


def test_packaged_moderation_sample_is_the_shared_one() -> None:
    packed = load_moderation_jsonl(PACKAGED_MODERATION)
    assert len(packed) == 1000 and int(packed.any_labels().sum()) == 315
    for name in ("LICENSE", "SOURCE.md"):
        assert (PACKAGED_MODERATION.parent / name).is_file()
    shared = load_moderation_jsonl(shared_data(MODERATION))
    assert packed.texts == shared.texts and np.array_equal(packed.labels, shared.labels, equal_nan=True)


def test_refusal_rows_are_safe_and_never_the_held_out_ones() -> None:
    from alignment.data.world import DemoWorld
    from alignment.safety.refusal_texts import HELDOUT_REFUSALS

    data = refusal_labelled()
    assert len(data) > 150 and (data.labels == 0).all() and set(data.sources) == {"refusals"}
    assert not set(data.texts) & set(HELDOUT_REFUSALS)
    world, rng = DemoWorld(0), random.Random(3)
    demo_refusals = {world.respond(p, "refusal", rng) for p in world.prompts(kind="harmful")}
    assert demo_refusals <= set(data.texts), "every demo-world refusal is a safe training row"
    assert len(set(HELDOUT_REFUSALS)) == len(HELDOUT_REFUSALS) >= 50


@pytest.mark.parametrize("backend", ["fast", "default"])
def test_packaged_head_does_not_flag_refusals(backend: str) -> None:
    """Refusals name the harm they decline; the shipped head must not call them unsafe (goal <= 5%)."""
    from alignment.safety import build_filter
    from alignment.safety.refusal_texts import HELDOUT_REFUSALS

    flt = build_filter(SafetyConfig(backend=backend, batch_size=16))
    assert "refusals" in flt.head.meta["training"]["sources"], \
        "the head predates refusal training: delete alignment/safety/assets/head.safetensors and run scripts/setup.sh"
    flagged = [v.unsafe for v in flt.flag(HELDOUT_REFUSALS)]
    assert sum(flagged) / len(flagged) <= 0.05


# ------------------------------------------------------------------ protocol, thresholds, input checks
def test_threshold_logic() -> None:
    thr = resolve_thresholds(0.5, {"hate": 0.2, "SH": 0.9, "any": 0.7})
    assert thr[CATEGORIES.index("hate")] == 0.2 and thr[CATEGORIES.index("self-harm")] == 0.9
    scores = np.zeros((4, len(SCORE_COLUMNS)))
    scores[0, CATEGORIES.index("hate")] = 0.2  # exactly at its threshold: flagged
    scores[1, CATEGORIES.index("self-harm")] = 0.8  # below its raised threshold
    scores[2, ANY_INDEX] = 0.75  # only the any-unsafe score crosses
    scores[3, CATEGORIES.index("violence")] = 0.6
    scores[3, CATEGORIES.index("sexual")] = 0.9
    v = verdicts(scores, thr)
    assert v[0].unsafe and v[0].categories == ("hate",)
    assert not v[1].unsafe and v[1].categories == () and v[1].top_category == "self-harm"
    assert v[2].unsafe and v[2].categories == () and v[2].any_score == 0.75
    assert v[3].categories == ("sexual", "violence") and v[3].max_score == 0.9, "highest score first"
    for bad, match in [({"nudity": 0.5}, "unknown category"), ({"hate": 1.5}, r"within \[0, 1\]"),
                       ({"hate": "high"}, "a number")]:
        with pytest.raises(UserError, match=match):
            resolve_thresholds(0.5, bad)
    with pytest.raises(UserError, match=r"safety\.threshold"):
        resolve_thresholds(-0.1)


def test_flag_overrides_and_protocol() -> None:
    row = [0.0] * len(SCORE_COLUMNS)
    row[CATEGORIES.index("harassment")] = 0.4
    row[ANY_INDEX] = 0.4
    flt = ConstantFilter(row)
    assert isinstance(flt, SafetyFilter)
    assert not flt.flag(["x"])[0].unsafe
    flagged = flt.flag(["x", "y"], thresholds={"HR": 0.3})
    assert all(v.unsafe and v.categories == ("harassment",) for v in flagged)
    assert flt.score(["x"]).shape == (1, len(CATEGORIES)) and flt.score_any(["x"]).tolist() == [pytest.approx(0.4)]


@pytest.mark.parametrize("texts, prompts, match", [
    ([], None, "empty"),
    ("just one string", None, "list of strings"),
    (["ok", 3], None, r"texts\[1\] is int"),
    (["a", "b"], ["only one"], "2 texts"),
    (["a"], [None], r"prompts\[0\] is NoneType"),
])
def test_bad_input_raises(texts, prompts, match) -> None:
    with pytest.raises(UserError, match=match):
        validate_texts(texts, prompts)
    with pytest.raises(UserError, match=match):
        ConstantFilter([0.0] * len(SCORE_COLUMNS)).score_all(texts, prompts)


def test_backend_output_is_checked() -> None:
    with pytest.raises(RuntimeError, match="non-finite"):
        ConstantFilter([float("nan")] * len(SCORE_COLUMNS)).score(["x"])


def test_build_filter_rejects_bad_config() -> None:
    from alignment.safety import build_filter

    with pytest.raises(UserError, match="safety.backend='nope'"):
        build_filter(SafetyConfig(backend="nope"))
    with pytest.raises(UserError, match=r"safety\.thresholds\.nudity"):
        build_filter(SafetyConfig(backend="fast", thresholds={"nudity": 0.5}))
    with pytest.raises(UserError, match="safety.classifier.path is not set"):
        build_filter(SafetyConfig(backend="classifier"))
    with pytest.raises(UserError, match="no such folder"):
        build_filter(SafetyConfig(backend="llama_guard", llama_guard=LlamaGuardConfig(path="meta-llama/Llama-Guard-3-1B")))


# ------------------------------------------------------------------ lexical features and rules
def test_word_tfidf_equals_profanity_check() -> None:
    from profanity_check import predict_prob

    from alignment.safety.lexical import LexicalFeaturizer
    from alignment.safety.rules import split_words

    texts = ["You absolute idiot, shut up!", "How do I bake bread?", "", "Ünïcode wörds and the of", "fuck off"]
    lex = LexicalFeaturizer()
    ours = lex.word_tfidf(split_words(texts))
    theirs = lex.vectorizer.transform(texts)
    assert abs(ours - theirs).max() < 1e-6
    np.testing.assert_allclose(lex(texts).profanity, predict_prob(texts), atol=1e-6)


def test_char_ngrams_and_rules() -> None:
    from alignment.safety.lexical import char_ngrams
    from alignment.safety.rules import rule_hits

    x = char_ngrams(["Kill", "kill!!", "a b"], bits=16)
    assert x.shape == (3, 1 << 16)
    assert sorted(x[0].indices) == sorted(x[1].indices), "case and punctuation do not matter"
    hits = rule_hits(["I want to kill myself", "send nudes of the child", "hack the wifi", "nice weather"])
    assert hits[0, CATEGORIES.index("self-harm")] >= 1
    assert hits[1, CATEGORIES.index("sexual/minors")] >= 1
    assert hits[2, CATEGORIES.index("cybercrime")] >= 1
    assert hits[3].sum() == 0


# ------------------------------------------------------------------ offline backends
def _any(flt, texts: list[str]) -> np.ndarray:
    return flt.score_any(texts)


def test_fast_backend_with_packaged_head(demo_texts) -> None:
    from alignment.safety import build_filter
    from alignment.safety.headfile import PACKAGED_HEAD

    assert PACKAGED_HEAD.is_file() and PACKAGED_HEAD.stat().st_size < 1_000_000, "the shipped head must stay < 1 MB"
    flt = build_filter(SafetyConfig(backend="fast"))
    assert flt.head is not None
    toxic, helpful = _any(flt, demo_texts["toxic"]), _any(flt, demo_texts["helpful"])
    assert toxic.min() > helpful.max()
    assert all(v.unsafe for v in flt.flag(demo_texts["toxic"] + demo_texts["harmful_compliance"]))
    assert not any(v.unsafe for v in flt.flag(demo_texts["helpful"] + demo_texts["refusal"]))
    assert "harassment" in flt.flag(demo_texts["toxic"][:1])[0].categories
    scores = flt.score(["I am going to kill myself tonight."])
    assert scores[0].argmax() == CATEGORIES.index("self-harm")


def test_default_backend_with_packaged_head(demo_texts) -> None:
    from alignment.safety import build_filter

    flt = build_filter(SafetyConfig(backend="default", batch_size=8))
    texts = demo_texts["toxic"][:3] + demo_texts["harmful_compliance"][:3] + demo_texts["helpful"][:3] + \
        demo_texts["refusal"][:3]
    scores = flt.score_all(texts, prompts=["q"] * len(texts))
    assert scores[:6, ANY_INDEX].min() > scores[6:, ANY_INDEX].max()
    assert [v.unsafe for v in flt.flag(texts)] == [True] * 6 + [False] * 6
    assert flt.encoder.settings()["quantize"] is True
    # a text's score does not depend on its batch-mates (int8 activations are scaled text by text)
    other = build_filter(SafetyConfig(backend="default", batch_size=3, cache_size=0))
    alone = np.concatenate([other.score_all([t]) for t in texts[::4]])
    np.testing.assert_allclose(alone, scores[::4], atol=0.03)


def test_rules_only_fallback(demo_texts) -> None:
    from alignment.safety.backends import FastFilter

    flt = FastFilter(None)
    assert _any(flt, demo_texts["toxic"]).mean() > _any(flt, demo_texts["helpful"]).mean() + 0.3


# ------------------------------------------------------------------ training command and head files
@pytest.mark.slow
def test_train_command_and_head_file(tmp_path: Path, demo_texts) -> None:
    from alignment.safety.backends import FastFilter
    from alignment.safety.headfile import load_head
    from alignment.safety.train import main

    data = tmp_path / "labels.jsonl"
    rows = [{"prompt": t, "HR": 1, "S": 0} for t in demo_texts["toxic"]] + \
        [{"prompt": t, "HR": 0, "S": 0} for t in demo_texts["helpful"] + demo_texts["refusal"]]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "heads" / "head.safetensors"
    assert main(["--data", str(data), "--demo", "--backends", "fast", "--out", str(out), "--max-columns", "5000"]) == 0
    assert out.is_file() and not [p for p in out.parent.iterdir() if p != out], "no temporary file left behind"
    head = load_head(out)
    assert head.meta["training"]["sources"] == {"labels.jsonl": len(rows), "demo": len(demo_labelled())}
    assert not head.has_default
    flt = FastFilter(head)
    assert _any(flt, demo_texts["toxic"]).min() > _any(flt, demo_texts["helpful"]).max()

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "HR": 2}\n')
    target = tmp_path / "never.safetensors"
    assert main(["--data", str(bad), "--backends", "fast", "--out", str(target)]) == 2
    assert not target.exists()

    refusals = tmp_path / "refusals.safetensors"
    assert main(["--moderation", "--refusals", "--backends", "fast", "--out", str(refusals), "--max-columns", "5000"]) == 0
    assert load_head(refusals).meta["training"]["sources"] == {"samples.dev.jsonl": 1000,
                                                               "refusals": len(refusal_labelled())}
    assert main(["--refusals", "--refusal-weight", "0", "--backends", "fast", "--out", str(target)]) == 2

    foreign = tmp_path / "foreign.safetensors"
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(2, np.float32)}, str(foreign))
    with pytest.raises(UserError, match="not a safety head file"):
        load_head(foreign)
    with pytest.raises(UserError, match="no such file"):
        load_head(tmp_path / "missing.safetensors")


def test_head_round_trip_with_embedding_part(tmp_path: Path) -> None:
    """A default head trained on synthetic features scores the same after save/load."""
    from alignment.safety.head import train_head
    from alignment.safety.headfile import load_head, save_head
    from alignment.safety.lexical import LexicalFeaturizer

    data = demo_labelled()
    idx = np.random.default_rng(0).choice(len(data), 400, replace=False)
    sub = data.subset(idx)
    lex = LexicalFeaturizer()(sub.texts)
    emb = np.random.default_rng(1).normal(size=(len(sub), 16)).astype(np.float32)
    emb[:, 0] += 2 * np.nan_to_num(sub.labels[:, ANY_INDEX])  # a feature that carries the label
    head = train_head(lex, emb, sub.labels, sub.weights, meta={"note": "test"})
    path = save_head(head, tmp_path / "h.safetensors")
    loaded = load_head(path)
    assert loaded.has_default and loaded.meta["note"] == "test"
    np.testing.assert_allclose(loaded.score_default(lex, emb), head.score_default(lex, emb), atol=1e-5)
    np.testing.assert_allclose(loaded.score_fast(lex), head.score_fast(lex), atol=1e-5)


# ------------------------------------------------------------------ model backends on tiny local models
def _fit(model, batches, steps: int, lr: float) -> None:
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        loss = model(**batches[step % len(batches)]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def test_classifier_backend_on_tiny_model(tmp_path: Path, demo_texts) -> None:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from alignment.modeling import minilm_path
    from alignment.safety.hf_backends import ClassifierFilter, map_labels

    tok = AutoTokenizer.from_pretrained(minilm_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, id2label={0: "neutral", 1: "toxic"},
                     label2id={"neutral": 0, "toxic": 1})
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg)
    texts = demo_texts["toxic"] + demo_texts["helpful"]
    labels = torch.tensor([1] * len(demo_texts["toxic"]) + [0] * len(demo_texts["helpful"]))
    enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    _fit(model, [{**enc, "labels": labels}], steps=40, lr=3e-3)
    model.save_pretrained(tmp_path / "clf")
    tok.save_pretrained(tmp_path / "clf")

    flt = ClassifierFilter(str(tmp_path / "clf"), device="cpu")
    assert flt.targets == {0: "safe", 1: "any"}
    assert _any(flt, demo_texts["toxic"]).min() > _any(flt, demo_texts["helpful"]).max()
    mapped = ClassifierFilter(str(tmp_path / "clf"), label_map={"toxic": "harassment"}, device="cpu")
    s = mapped.score_all(demo_texts["toxic"][:2])
    np.testing.assert_allclose(s[:, CATEGORIES.index("harassment")], s[:, ANY_INDEX], atol=1e-6)
    with pytest.raises(UserError, match=r"label_map\.insult: the model has no such label"):
        map_labels({0: "neutral", 1: "toxic"}, {"insult": "harassment"}, "safety.classifier")
    with pytest.raises(UserError, match="none of the model's labels"):
        map_labels({0: "LABEL_0", 1: "LABEL_1"}, {}, "safety.classifier")


def test_llama_guard_backend_on_tiny_model(tmp_path: Path, demo_texts) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from alignment.safety.hf_backends import LlamaGuardFilter

    pairs = [(p, r, "unsafe\nS10") for p, r in zip(demo_texts["prompts_harmful"], demo_texts["toxic"])] + \
        [(p, r, "safe") for p, r in zip(demo_texts["prompts_harmful"], demo_texts["refusal"])]
    from alignment.modeling import train_tokenizer

    tok = train_tokenizer([t for p in pairs for t in p] + ["safe", "unsafe", "S1 S10"], vocab_size=400)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    chats = [tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                     tokenize=False, add_generation_prompt=True) + answer + tok.eos_token
             for p, r, answer in pairs]
    enc = tok(chats, padding=True, return_tensors="pt")
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    _fit(model, [{**enc, "labels": labels}], steps=60, lr=3e-3)
    model.save_pretrained(tmp_path / "guard")
    tok.save_pretrained(tmp_path / "guard")

    flt = LlamaGuardFilter(str(tmp_path / "guard"), batch_size=4, max_new_tokens=6, dtype="float32", device="cpu")
    n = len(demo_texts["toxic"])
    prompts = demo_texts["prompts_harmful"]
    scores = flt.score_all(demo_texts["toxic"] + demo_texts["refusal"], prompts=prompts + prompts)
    assert scores[:n, ANY_INDEX].min() > 0.5 > scores[n:, ANY_INDEX].max()
    assert (scores[:n, CATEGORIES.index("hate")] == scores[:n, ANY_INDEX]).all(), "S10 -> hate"
    assert (scores[n:, :ANY_INDEX] == 0).all()
    assert flt.parse_categories("unsafe\nS1,S10") == ["violence", "hate"]
    assert flt.parse_categories("safe") == [] and flt.parse_categories("unsafe\nS6") == []
    assert flt.flag(demo_texts["toxic"][:1], prompts=prompts[:1])[0].categories == ("hate",)


# ------------------------------------------------------------------ the benchmark script
def _bench(*args: str) -> dict:
    result = subprocess.run([sys.executable, "scripts/bench_safety.py", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1])


@pytest.mark.slow
def test_bench_cross_validates_on_dev_slice() -> None:
    shared_data(MODERATION)
    xstest = shared_data("xstest/completions.dev.jsonl")
    out = _bench("--safety", "fast", "--limit", "160", "--folds", "2", "--no-demo", "--xstest", str(xstest))
    assert out["mode"] == "cv2" and out["n"] == 160 and out["cores"] == 1
    assert out["xstest_n"] == 1350 and out["xstest_n_refusal"] + out["xstest_n_partial_refusal"] + \
        out["xstest_n_safe_compliance"] + out["xstest_n_unsafe_compliance"] == 1350
    assert 0 <= out["xstest_refusal_flag_rate"] <= 1 and 0 <= out["xstest_safe_compliance_flag_rate"] <= 1
    assert set(out["xstest_per_model"]) == {"gpt4", "llama2new", "mistralguard"}
    for key in ("auprc_any", "auroc_any", "texts_per_s", "precision_any", "recall_any"):
        assert key in out
    assert out["refusals_in_training"] and 0 <= out["refusal_flag_rate"] <= 1
    assert out["auprc_any"] > out["positives_any"] / out["n"] + 0.1, "better than the positive rate"
    assert out["auroc_any"] > 0.6 and out["texts_per_s"] > 0
    assert "sexual" in out["per_category"]


@pytest.mark.slow
def test_bench_trains_on_dev_for_other_data(tmp_path: Path) -> None:
    dev = shared_data(MODERATION)
    other = tmp_path / "other.jsonl"
    lines = dev.read_text(encoding="utf-8").splitlines()
    other.write_text("\n".join(lines[::25]) + "\n", encoding="utf-8")
    out = _bench("--safety", "fast", "--data", str(other), "--no-demo")
    assert out["mode"] == "train-on-dev" and out["n"] == 40
    assert out["auroc_any"] > 0.7  # seen in training: a smoke check of the wiring, not of generalisation


def test_bench_rejects_bad_data(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    result = subprocess.run([sys.executable, "scripts/bench_safety.py", "--safety", "fast", "--data", str(bad),
                             "--head", "x"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "bad.jsonl:1: not valid JSON" in result.stderr
