"""Typed config schemas, registered in Hydra's ConfigStore.

Every stage's entry config (``conf/<stage>.yaml``) composes onto :class:`Config`, so a typo in a key
(``align-sft no_such_key=1``), a value of the wrong type (``align-sft sft.lr=abc``) or a value outside
a closed set of choices (``align-ppo ppo.kl.estimator=k9``: each such field is a
:class:`~alignment.config.base.Choice`) fails while the config is composed, before any work starts,
with an error naming the key and the valid values. Ranges are checked by each section's
:meth:`~alignment.config.base.Section.check`, which runs when the entry point turns the composed config
into these dataclasses (``OmegaConf.to_object``; OmegaConf does not run it on merges), and when code
builds one in Python. One root schema for all stages lets ``scale=smoke|demo|full`` size every stage
from a single file.

The sections live in :mod:`~alignment.config.models` (what every stage reads: policy, reward model,
data, prompts, safety, sampling), :mod:`~alignment.config.stages` (the training stages and the policy
optimizers), :mod:`~alignment.config.label` (the labeling app and the labels stage) and
:mod:`~alignment.config.choices` (the closed sets of values); they are all importable from here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

from hydra.core.config_store import ConfigStore

from alignment.config.base import Choice, Section, check, interpolated, require
from alignment.config.choices import (
    Acquisition,
    Annotators,
    DPOLoss,
    DType,
    GRPOLoss,
    HeadInit,
    HeldOutSplit,
    KLEstimator,
    LabelCommand,
    MixedPrecision,
    Optimizer,
    Pairing,
    Pooling,
    PromptSource,
    RefusalJudgeKind,
    ReportsFor,
    RewardInputFormat,
    RewardScaling,
    SafetyBackend,
    Stage,
    Synchronous,
    ValueInit,
    ValueModel,
    XSTestMode,
)
from alignment.config.label import (
    LabelBotsConfig,
    LabelConfig,
    LabelExportConfig,
    LabelsGateConfig,
    LabelsStageConfig,
)
from alignment.config.models import (
    DataConfig,
    GateConfig,
    GenerationConfig,
    LlamaGuardConfig,
    PolicyConfig,
    PromptsConfig,
    RewardModelConfig,
    RunConfig,
    SafetyClassifierConfig,
    SafetyConfig,
    SafetyEvalConfig,
    TinyModelConfig,
)
from alignment.config.stages import (
    CandidatesStageConfig,
    DPOStageConfig,
    EnsembleConfig,
    EvalStageConfig,
    GroupRLStageConfig,
    GRPOStageConfig,
    KLConfig,
    LoRAConfig,
    OptimizerInputs,
    PPOStageConfig,
    RewardGateConfig,
    RewardStageConfig,
    RewardTermsConfig,
    RLOOStageConfig,
    SFTStageConfig,
    TRLStageConfig,
)
from alignment.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class Config(Section):
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
    #: The reward ppo, grpo and rloo maximise, one for the run (see :class:`RewardTermsConfig`).
    reward_terms: RewardTermsConfig = field(default_factory=RewardTermsConfig)
    ppo: PPOStageConfig = field(default_factory=PPOStageConfig)
    dpo: DPOStageConfig = field(default_factory=DPOStageConfig)
    grpo: GRPOStageConfig = field(default_factory=GRPOStageConfig)
    rloo: RLOOStageConfig = field(default_factory=RLOOStageConfig)
    candidates: CandidatesStageConfig = field(default_factory=CandidatesStageConfig)
    eval: EvalStageConfig = field(default_factory=EvalStageConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    labels: LabelsStageConfig = field(default_factory=LabelsStageConfig)


@dataclass
class PipelineOptions(Section):
    KEY: ClassVar[str] = "pipeline"

    #: Stages of a round, in order (the first round also runs ``sft``).
    stages: list[Stage] = field(default_factory=lambda: list(Stage))
    #: Rerun every stage even when its outputs exist and match its config.
    force: bool = False
    #: Write the whole-run report (``<run.dir>/report.html`` and ``report.json``) at the end.
    report: bool = True


@dataclass
class PipelineConfig(Config):
    """``align-pipeline``: every stage's config, plus how many rounds and which stages to run."""

    #: Rounds of candidates -> labels -> reward -> ppo; round ``r > 1`` starts from round ``r - 1``'s
    #: PPO policy and writes into ``<run.dir>/round-<r>/``.
    rounds: int = 1
    pipeline: PipelineOptions = field(default_factory=PipelineOptions)
    #: The optimizers the ``ppo`` stage of a round runs, each from the same SFT policy, labels and reward
    #: model into ``<run.dir>/<name>/``; the first one's policy starts the next round.
    optimizers: list[Optimizer] = field(default_factory=lambda: [Optimizer.ppo])

    def check(self) -> None:
        check(self.rounds >= 1, "rounds", self.rounds, ">= 1")
        check(len(self.optimizers) > 0 and len(set(self.optimizers)) == len(self.optimizers), "optimizers",
              [str(o) for o in self.optimizers], "a non-empty list without repeats, e.g. [ppo,dpo,grpo,rloo]")


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


__all__ = [
    "Acquisition", "Annotators", "CandidatesStageConfig", "Choice", "Config", "DPOLoss", "DPOStageConfig", "DType", "DataConfig",
    "EnsembleConfig", "EvalStageConfig", "GRPOLoss", "GRPOStageConfig", "GateConfig", "GenerationConfig", "GroupRLStageConfig",
    "HeadInit", "HeldOutSplit", "KLConfig", "KLEstimator", "LabelBotsConfig", "LabelCommand", "LabelConfig", "LabelExportConfig",
    "LabelsGateConfig", "LabelsStageConfig", "LlamaGuardConfig", "LoRAConfig", "MixedPrecision", "Optimizer",
    "OptimizerInputs", "PPOStageConfig", "Pairing", "PipelineConfig", "PipelineOptions", "PolicyConfig", "Pooling",
    "PromptSource", "PromptsConfig", "RLOOStageConfig", "RefusalJudgeKind", "ReportsFor", "RewardGateConfig", "RewardInputFormat",
    "RewardModelConfig", "RewardScaling", "RewardStageConfig", "RewardTermsConfig", "RunConfig", "SFTStageConfig",
    "SafetyBackend", "SafetyClassifierConfig", "SafetyConfig", "SafetyEvalConfig", "Section", "Stage", "Synchronous",
    "TRLStageConfig", "TinyModelConfig", "ValueInit", "ValueModel", "XSTestMode", "check", "check_annotators", "interpolated",
    "register_configs", "require", "reward_epochs",
]
