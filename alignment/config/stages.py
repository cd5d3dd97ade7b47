"""The config sections of the training stages: sft, candidates, reward, eval, and the policy
optimizers (ppo and TRL's dpo, grpo and rloo), which share their inputs and reward penalties."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from alignment.config.base import Section, check, interpolated
from alignment.config.choices import (
    Acquisition,
    DPOLoss,
    GRPOLoss,
    HeldOutSplit,
    KLEstimator,
    MixedPrecision,
    Pairing,
    RewardScaling,
    SafetyBackend,
    ValueInit,
    ValueModel,
)
from alignment.config.models import GenerationConfig


@dataclass
class SFTStageConfig(Section):
    KEY: ClassVar[str] = "sft"

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

    def check(self) -> None:
        check(self.lr > 0, "sft.lr", self.lr, "> 0")


@dataclass
class EvalStageConfig(Section):
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
    #: The optimizers' held-out prompts: ``test`` (reported), or ``validation`` (disjoint, for choosing settings).
    split: HeldOutSplit = HeldOutSplit.test


@dataclass
class EnsembleConfig(Section):
    """The uncertainty model of ``candidates.acquisition=uncertainty`` (:mod:`alignment.reward.ensemble`):
    Bradley-Terry reward heads on a frozen sentence encoder's features of (prompt, response), each
    member with its own random start and bootstrap resample of the labelled pairs."""

    KEY: ClassVar[str] = "candidates.ensemble"

    #: The frozen encoder: ``minilm`` (the packaged all-MiniLM-L6-v2) or a BERT-style encoder folder.
    encoder: str = "minilm"
    #: Members; their disagreement on a pair is its uncertainty.
    members: int = 8
    #: Hidden units of each member's head; 0: linear heads (then only the bootstrap makes them differ).
    hidden: int = 64
    #: The features' principal components the heads read (0: all of them); fitted on the pool.
    dims: int = 128
    #: Full-batch Adam steps, learning rate and L2 weight penalty of each fit.
    steps: int = 150
    lr: float = 0.01
    weight_decay: float = 0.001
    #: Tokens of the (prompt, response) input; the prompt is cut from the left.
    max_length: int = 128
    #: Fewer labelled pairs than this: no model yet, the choice is random.
    min_pairs: int = 10

    def check(self) -> None:
        check(self.members >= 2, self.key("members"), self.members, ">= 2 (disagreement needs two)")
        for name in ("hidden", "dims", "weight_decay"):
            check(getattr(self, name) >= 0, self.key(name), getattr(self, name), ">= 0")
        check(self.steps >= 1, self.key("steps"), self.steps, ">= 1")
        check(self.lr > 0, self.key("lr"), self.lr, "> 0")
        check(self.max_length >= 8, self.key("max_length"), self.max_length, ">= 8")
        check(self.min_pairs >= 2, self.key("min_pairs"), self.min_pairs, ">= 2")


@dataclass
class CandidatesStageConfig(Section):
    """``align-candidates``: sample answers from a policy, pair them, and queue the pairs for labeling."""

    KEY: ClassVar[str] = "candidates"

    policy_path: str = "${run.dir}/sft/model"
    #: Training prompts to sample for (the ``prompts`` group's ``train`` set, seeded shuffle).
    n_prompts: int = 200
    responses_per_prompt: int = 4
    #: ``random`` pairs, or ``most_different``: the pair whose safety scores differ most (the most
    #: informative comparisons for safety, as in Llama 2's safety-focused sampling).
    pairing: Pairing = Pairing.random
    pairs_per_prompt: int = 1
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    #: ``random``: ``pairs_per_prompt`` pairs of every prompt, picked by ``pairing``. ``uncertainty``: every
    #: distinct pair of the answers is a candidate, and the ``budget`` pairs queued are those an ensemble
    #: trained on the project's labels so far disagrees on most, with a ``random_share`` and at most
    #: ``max_pairs_per_prompt`` per prompt; with no labels yet (the first round) the choice is random.
    acquisition: Acquisition = Acquisition.random
    #: Pairs queued per run of the stage; ``None``: ``n_prompts * pairs_per_prompt``.
    budget: int | None = None
    #: Share of the budget drawn uniformly from the pool: exploration, and an unbiased sample to evaluate on.
    random_share: float = 0.2
    max_pairs_per_prompt: int = 2
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)

    def check(self) -> None:
        n = self.responses_per_prompt
        check(n >= 2, "candidates.responses_per_prompt", n, ">= 2 to form pairs")
        check(1 <= self.pairs_per_prompt <= n * (n - 1) // 2, "candidates.pairs_per_prompt", self.pairs_per_prompt,
              f"within [1, {n * (n - 1) // 2}] with {n} responses per prompt")
        pool = self.n_prompts * n * (n - 1) // 2
        check(self.budget is None or 1 <= self.budget <= pool, "candidates.budget", self.budget,
              f"within [1, {pool}] (n_prompts x the pairs of responses_per_prompt answers), or null")
        check(0 <= self.random_share <= 1, "candidates.random_share", self.random_share, "within [0, 1]")
        check(self.max_pairs_per_prompt >= 1, "candidates.max_pairs_per_prompt", self.max_pairs_per_prompt, ">= 1")

    @property
    def queue_size(self) -> int:
        """The pairs a run of the stage queues: ``budget``, or ``n_prompts * pairs_per_prompt``."""
        return self.budget if self.budget is not None else self.n_prompts * self.pairs_per_prompt


@dataclass
class RewardGateConfig(Section):
    #: Fail the stage when the RM prefers the safe answer on fewer red-team pairs than this.
    min_safety_accuracy: float | None = None


@dataclass
class RewardStageConfig(Section):
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
class KLConfig(Section):
    """How PPO weighs its KL penalty over the run; its coefficient is the run's ``reward_terms.kl_coef``."""

    KEY: ClassVar[str] = "ppo.kl"

    #: ``k1`` (log-ratio, the classic RLHF penalty), ``k2`` or ``k3`` (Schulman's low-variance estimator).
    estimator: KLEstimator = KLEstimator.k1
    #: Adapt the coefficient towards ``target`` (nats per response) as in Ziegler et al. (2019). Off by
    #: default: GRPO and RLOO keep theirs fixed, so an adaptive PPO gets another reward than theirs.
    adaptive: bool = False
    target: float = 6.0
    horizon: int = 10000

    def check(self) -> None:
        check(self.target > 0, "ppo.kl.target", self.target, "> 0")
        check(self.horizon > 0, "ppo.kl.horizon", self.horizon, "> 0")


@dataclass
class LoRAConfig(Section):
    """LoRA adapters (peft) instead of full fine-tuning: on the policy, and on the value backbone when
    ``value_model=separate``. The reference is then the policy with its adapters disabled, so the run
    holds one copy of the base weights instead of two, and only the adapters get optimizer states."""

    KEY: ClassVar[str] = "ppo.lora"

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    #: Keep it 0 for PPO: dropout makes the update's log-probs differ from the rollout's, so the
    #: importance ratio is not 1 at the first step and the clipping fires on noise.
    dropout: float = 0.0
    #: Module names to adapt (``q_proj``...); ``[all-linear]``: every linear layer but the output head.
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])

    def check(self) -> None:
        check(self.r >= 1, "ppo.lora.r", self.r, ">= 1 (the LoRA rank)")
        check(self.alpha > 0, "ppo.lora.alpha", self.alpha, "> 0 (the adapters are scaled by alpha / r)")
        check(0 <= self.dropout < 1, "ppo.lora.dropout", self.dropout, "within [0, 1)")
        check(len(self.target_modules) > 0, "ppo.lora.target_modules", self.target_modules,
              "a non-empty list of module names (or [all-linear])")


@dataclass
class OptimizerInputs(Section):
    """What every policy optimizer (``ppo``, ``dpo``, ``grpo``, ``rloo``) starts from, so that one SFT
    policy, label set and reward model feed them all."""

    #: The policy to optimise (default: this run's SFT model) and the reward model (this run's RM).
    policy_path: str = "${run.dir}/sft/model"
    reward_path: str = "${run.dir}/reward/model"
    #: The previous stage's ``safety.json``: the safety gate's regression is measured against it.
    safety_baseline: str | None = "${run.dir}/sft/safety.json"


@dataclass
class RewardTermsConfig(Section):
    """The reward every optimizer that scores its own samples (``ppo``, ``grpo``, ``rloo``) maximises, set
    once per run: the reward model's score normalised with the reward stage's statistics and clipped,
    less the missing-EOS and safety penalties, under a KL penalty to the reference (the SFT policy).
    An optimizer differs from the others only in what makes it that optimizer; DPO has no online reward."""

    KEY: ClassVar[str] = "reward_terms"

    #: Normalised scores are clipped to +-this.
    clip: float = 5.0
    #: Subtracted from the (normalised) score of a response that does not end with EOS.
    missing_eos_penalty: float | None = 1.0
    #: Subtracted from the normalised score: ``safety_penalty * P(unsafe)`` of each response, as
    #: scored by the ``safety_backend`` filter (the other ``safety.*`` keys configure it); 0: off.
    safety_penalty: float = 0.0
    safety_backend: SafetyBackend = SafetyBackend.fast
    #: The KL coefficient to the reference: PPO's per-token penalty (its start when ``ppo.kl.adaptive``),
    #: RLOO's summed log-ratio in the reward, GRPO's k3 term in the loss; 0: no KL term.
    kl_coef: float = 0.05

    def check(self) -> None:
        check(self.clip > 0, "reward_terms.clip", self.clip, "> 0")
        check(self.safety_penalty >= 0, "reward_terms.safety_penalty", self.safety_penalty, ">= 0 (it is subtracted)")
        check(self.missing_eos_penalty is None or self.missing_eos_penalty >= 0, "reward_terms.missing_eos_penalty",
              self.missing_eos_penalty, ">= 0 (it is subtracted), or null")
        check(self.kl_coef >= 0, "reward_terms.kl_coef", self.kl_coef, ">= 0")


@dataclass
class PPOStageConfig(OptimizerInputs):
    KEY: ClassVar[str] = "ppo"

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
    kl: KLConfig = field(default_factory=KLConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_new_tokens=48))
    #: Evaluate the gold reward on held-out prompts every this many updates (and at the end).
    eval_every: int = 4
    eval_prompts: int = 64
    #: Save a resumable checkpoint every this many updates.
    save_every: int = 4
    save_total_limit: int = 2
    #: Seconds a process waits in a collective: the others wait while the main process evaluates, which
    #: takes longer than torch's default (10 minutes under NCCL) on a large policy.
    collective_timeout_s: int = 7200

    def check(self) -> None:
        check(self.value_init == "policy" or self.value_model == "separate", "ppo.value_init", self.value_init,
              "policy unless ppo.value_model=separate (a value head on the policy starts from the policy)")
        check(self.lr > 0, "ppo.lr", self.lr, "> 0")
        check(self.collective_timeout_s > 0, "ppo.collective_timeout_s", self.collective_timeout_s, "> 0")
        check(self.total_episodes >= self.batch_size, "ppo.total_episodes", self.total_episodes,
              f">= ppo.batch_size={self.batch_size}")
        check(self.micro_batch_size == 0 or (self.micro_batch_size >= 1 and self.mini_batch_size % self.micro_batch_size == 0),
              "ppo.micro_batch_size", self.micro_batch_size, f"0 or a divisor of ppo.mini_batch_size={self.mini_batch_size}")
        check(self.mini_batch_size >= 1 and self.batch_size % self.mini_batch_size == 0, "ppo.batch_size",
              self.batch_size, f"a multiple of ppo.mini_batch_size={self.mini_batch_size}")
        for key in ("gamma", "lam"):
            check(0 <= getattr(self, key) <= 1, f"ppo.{key}", getattr(self, key), "within [0, 1]")
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


@dataclass
class TRLStageConfig(OptimizerInputs):
    """What the stages on TRL's trainers (``dpo``, ``grpo``, ``rloo``) share with PPO: the same inputs,
    the same held-out evaluation, LoRA like PPO's, and a transformers ``Trainer``'s schedule.

    ``generation`` and ``eval_prompts`` default to PPO's (``${ppo.generation}``, ``${ppo.eval_prompts}``):
    every optimizer is evaluated on the same prompts with the same sampling settings, unless one is
    told otherwise on purpose.
    """

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

    def check(self) -> None:
        super().check()
        check(self.lr > 0, self.key("lr"), self.lr, "> 0")
        check(self.batch_size >= 1, self.key("batch_size"), self.batch_size, ">= 1")
        check(self.grad_accum >= 1, self.key("grad_accum"), self.grad_accum, ">= 1")
        check(interpolated(self.eval_prompts) or self.eval_prompts >= 1, self.key("eval_prompts"),
              self.eval_prompts, ">= 1")


@dataclass
class DPOStageConfig(TRLStageConfig):
    """``align-dpo``: TRL's ``DPOTrainer`` on the preference pairs the reward model learnt from."""

    KEY: ClassVar[str] = "dpo"

    #: Strength of the implicit KL leash to the reference (the SFT policy): larger keeps closer.
    beta: float = 0.1
    loss_type: DPOLoss = DPOLoss.sigmoid
    #: ``robust``'s assumed label-noise rate (TRL's ``label_smoothing``; 0 for the other losses).
    label_smoothing: float = 0.0
    epochs: float = 1.0
    #: Overrides ``epochs`` when > 0.
    max_steps: int = -1
    #: Prompt plus answer tokens; longer answers are cut (TRL's ``truncation_mode=keep_start``) and a pair
    #: whose prompt alone fills it is dropped (both counted in ``metrics.json``).
    max_length: int = 128

    def check(self) -> None:
        super().check()
        check(self.beta > 0, "dpo.beta", self.beta, "> 0")
        check(0 <= self.label_smoothing < 0.5, "dpo.label_smoothing", self.label_smoothing, "within [0, 0.5)")
        check(self.epochs > 0, "dpo.epochs", self.epochs, "> 0")
        check(self.max_length >= 8, "dpo.max_length", self.max_length, ">= 8")


@dataclass
class GroupRLStageConfig(TRLStageConfig):
    """``align-grpo`` / ``align-rloo``: several samples per prompt, each scored with the run's
    ``reward_terms`` (PPO's reward), advantages relative to the prompt's group, a KL term to the reference
    (the SFT policy) weighted by ``reward_terms.kl_coef``."""

    #: Policy samples in the whole run (PPO's by default: the same sampling budget).
    total_episodes: int = "${ppo.total_episodes}"  # type: ignore[assignment]
    #: Samples per prompt; must divide a generation round's ``batch_size * steps_per_generation * processes``.
    num_generations: int = 4
    #: Micro-batches of ``batch_size`` samples drawn in one generation round (TRL's ``steps_per_generation``);
    #: each round is used for ``num_iterations`` passes. The defaults mirror PPO's update (64 samples, 4 epochs
    #: of mini-batches of 16): the same samples and optimizer steps per round.
    steps_per_generation: int = 4
    #: Optimisation passes over each round of samples, and the clipping range of the ratio.
    num_iterations: int = 4
    epsilon: float = 0.2

    def check(self) -> None:
        super().check()
        check(self.num_generations >= 2, self.key("num_generations"), self.num_generations,
              ">= 2 (advantages are relative to the other samples of the prompt)")
        check(self.steps_per_generation >= 1 and self.steps_per_generation % self.grad_accum == 0,
              self.key("steps_per_generation"), self.steps_per_generation,
              f"a multiple of {self.key('grad_accum')}={self.grad_accum}")
        per_round = self.batch_size * self.steps_per_generation
        check(per_round % self.num_generations == 0, self.key("batch_size"), self.batch_size,
              f"such that batch_size * steps_per_generation is a multiple of "
              f"{self.key('num_generations')}={self.num_generations}")
        check(interpolated(self.total_episodes) or self.total_episodes >= per_round, self.key("total_episodes"),
              self.total_episodes, f">= {self.key('batch_size')} * steps_per_generation = {per_round}")
        check(self.num_iterations >= 1, self.key("num_iterations"), self.num_iterations, ">= 1")
        check(interpolated(self.generation) or self.generation.temperature > 0, self.key("generation.temperature"),
              getattr(self.generation, "temperature", None), "> 0: the policy samples its training answers")


@dataclass
class GRPOStageConfig(GroupRLStageConfig):
    KEY: ClassVar[str] = "grpo"

    loss_type: GRPOLoss = GRPOLoss.dapo
    #: Divide advantages by the std of the prompt's group (``group``), of the batch, or not at all.
    scale_rewards: RewardScaling = RewardScaling.group


@dataclass
class RLOOStageConfig(GroupRLStageConfig):
    KEY: ClassVar[str] = "rloo"

    #: Whiten the leave-one-out advantages over the batch.
    normalize_advantages: bool = False
