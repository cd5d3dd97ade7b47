"""Tokenizer and tiny-model builds: deterministic, cached, and loaded through from_pretrained."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from alignment.config import PolicyConfig, TinyModelConfig
from alignment.data.world import DemoWorld
from alignment.errors import UserError
from alignment.modeling import (
    ensure_pad_token,
    load_policy,
    minilm_path,
    resolve_reward_backbone,
    tiny_model_dir,
    train_tokenizer,
)

SMALL = TinyModelConfig(vocab_size=400, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                        max_position_embeddings=128)


def small_policy(cache: Path) -> PolicyConfig:
    return PolicyConfig(cache_dir=str(cache), tiny=SMALL)


def test_tokenizer_training_is_deterministic_and_chat_ready():
    texts = DemoWorld(0).corpus_texts()[:800]
    a, b = train_tokenizer(texts, 400), train_tokenizer(texts, 400)
    assert a.get_vocab() == b.get_vocab()
    assert a.pad_token == "<|pad|>" and a.eos_token == "<|end|>" and a.pad_token_id != a.eos_token_id
    chat = [{"role": "user", "content": "How do I bake bread?"}, {"role": "assistant", "content": "Sure."}]
    ids = a.apply_chat_template(chat, tokenize=True, return_dict=False)
    assert ids[-1] == a.eos_token_id
    assert a.decode(ids) == "<|user|>How do I bake bread?<|end|><|assistant|>Sure.<|end|>"
    prompt = a.apply_chat_template(chat[:1], add_generation_prompt=True, tokenize=True, return_dict=False)
    assert ids[:len(prompt)] == prompt, "the prompt must be a prefix of the full chat"
    # Byte-level: any text round-trips, even characters never seen in training.
    assert a.decode(a("naïve 🙂 <b>x</b>").input_ids) == "naïve 🙂 <b>x</b>"


def test_tiny_model_is_deterministic_and_cached(tmp_path):
    first = tiny_model_dir(small_policy(tmp_path / "c1"), world_seed=0, seed=0)
    again = tiny_model_dir(small_policy(tmp_path / "c1"), world_seed=0, seed=0)
    other = tiny_model_dir(small_policy(tmp_path / "c2"), world_seed=0, seed=0)
    assert first == again
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    tiny_model_dir(small_policy(tmp_path / "c1"), world_seed=0, seed=0)
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp, "a cached model must not be rebuilt"
    w1, w2 = load_file(first / "model.safetensors"), load_file(other / "model.safetensors")
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert (AutoTokenizer.from_pretrained(first).get_vocab() == AutoTokenizer.from_pretrained(other).get_vocab())
    reseeded = tiny_model_dir(small_policy(tmp_path / "c1"), world_seed=0, seed=1)
    assert reseeded != first
    w3 = load_file(reseeded / "model.safetensors")
    assert not torch.equal(w1["model.layers.0.mlp.up_proj.weight"], w3["model.layers.0.mlp.up_proj.weight"])
    assert not list((tmp_path / "c1").glob(".tiny-*")), "no temporary build folder may be left behind"


def test_policy_loads_through_from_pretrained_by_path(tmp_path):
    cfg = small_policy(tmp_path)
    model, tok = load_policy(cfg)
    folder = tiny_model_dir(cfg, 0, 0)
    # The very same code path as a user's hub name: policy.name_or_path=<folder>.
    model2, tok2 = load_policy(PolicyConfig(name_or_path=str(folder)))
    assert type(model2) is type(model) and tok2.get_vocab() == tok.get_vocab()
    assert model.config.pad_token_id == tok.pad_token_id and model.config.eos_token_id == tok.eos_token_id


def test_missing_policy_path_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no_such_model"):
        load_policy(PolicyConfig(name_or_path=str(tmp_path / "no_such_model")))


def _tokenizer_with_specials(specials: list[str], unk: str | None = None) -> PreTrainedTokenizerFast:
    """A Llama-3-like tokenizer: EOS and the given special tokens, no pad token."""
    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["hello world"] * 10, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|end|>", *specials, *([unk] if unk else [])],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", unk_token=unk)


def test_tokenizer_without_pad_token_pads_with_a_reserved_token_or_eos(caplog):
    # Llama-3.2: no pad, no unk; a token reserved for padding, then 250 reserved ones
    tok = _tokenizer_with_specials(["<|reserved_special_token_0|>", "<|finetune_right_pad_id|>"])
    assert tok.pad_token is None
    ensure_pad_token(tok, "llama-like")
    assert tok.pad_token == "<|finetune_right_pad_id|>"
    tok = _tokenizer_with_specials(["<|reserved_special_token_1|>", "<|reserved_special_token_0|>"])
    ensure_pad_token(tok, "llama-like")
    assert tok.pad_token == "<|reserved_special_token_1|>"  # the first by id
    tok = _tokenizer_with_specials([], unk="<unk>")
    ensure_pad_token(tok, "unk-model")
    assert tok.pad_token == "<unk>"
    tok = _tokenizer_with_specials([])
    with caplog.at_level("WARNING"):
        ensure_pad_token(tok, "eos-only")
    assert tok.pad_token == tok.eos_token and tok.pad_token_id == tok.eos_token_id
    assert "eos-only has no pad token; padding with its EOS token" in caplog.text


def test_minilm_resolves_to_the_packaged_encoder():
    path = Path(minilm_path())
    assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
    assert resolve_reward_backbone("minilm") == str(path)
    assert resolve_reward_backbone("/some/folder") == "/some/folder"
