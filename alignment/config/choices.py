"""The closed sets of values config fields take: each a :class:`~alignment.config.base.Choice`, so a value
outside the set fails while the config is composed, naming the key and the valid values."""

from __future__ import annotations

from alignment.config.base import Choice


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


class Acquisition(Choice):
    """How ``align-candidates`` chooses the pairs to queue from its pool (:mod:`alignment.acquisition`)."""

    random = "random"
    uncertainty = "uncertainty"


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


class ReportsFor(Choice):
    """Who sees the labeling app's Reports tab."""

    admins = "admins"
    everyone = "everyone"


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
    """The policy optimizers the pipeline can run from one SFT policy, label set and reward model."""

    ppo = "ppo"
    dpo = "dpo"
    grpo = "grpo"
    rloo = "rloo"


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


class HeldOutSplit(Choice):
    """Which held-out prompts the optimizers are evaluated on: ``test``, the first ``eval_prompts`` of each
    held-out set's seeded order (what the comparison reports), or ``validation``, the ones after them (for
    choosing a setting, such as a learning rate, without looking at the test prompts)."""

    test = "test"
    validation = "validation"
