"""The reward model itself: a scalar head on a backbone, the mean-pooling head, loading, freezing.

Kept apart from :mod:`alignment.reward.trainer` (which pulls in TRL's RewardTrainer and
``datasets``) so that scoring with a trained reward model (:mod:`alignment.reward.scorer`) imports
only torch, transformers and light project modules. ``align-reward`` writes what this module reads:
``model/`` with ``config.json``, weights, tokenizer and :data:`REWARD_CONFIG_FILE`.

A :class:`MeanPoolingRewardModel` is recognised by ``reward_pooling="mean"`` in its ``config.json``,
not by a class path: its ``architectures`` entry is the bare class name and there is no ``auto_map``,
so models saved while this code lived elsewhere (``alignment.stages.reward``, ``alignment.reward_model``)
load unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from alignment.config import Config, require
from alignment.errors import UserError
from alignment.modeling import load_tokenizer, resolve_policy_path, resolve_reward_backbone

log = logging.getLogger(__name__)

#: The file next to a trained reward model recording how it reads its input (format, max length,
#: separator) and the reward normalisation statistics PPO needs; written by ``align-reward``.
REWARD_CONFIG_FILE = "reward_config.json"


class MeanPoolingRewardModel(PreTrainedModel):
    """A scalar reward read off the attention-masked mean of any ``AutoModel`` backbone's last hidden states.

    Why: all-MiniLM-L6-v2 (like most sentence encoders) was trained to summarise a text by mean
    pooling, while BERT's sequence-classification head reads [CLS] through a pooler (dense + tanh)
    that its sentence-embedding training never used.
    The config is the backbone's own plus ``reward_pooling="mean"`` (and ``architectures`` naming
    this class), so a saved model is a normal folder (``config.json``, safetensors, tokenizer) that
    :func:`load_reward_model` and :meth:`~alignment.reward.scorer.RewardScorer.from_pretrained` load, as does
    ``MeanPoolingRewardModel.from_pretrained(folder)``. Plain ``AutoModelForSequenceClassification``
    cannot: it would build the backbone's own head and report every weight as missing.
    """

    config_class = PreTrainedConfig
    base_model_prefix = "backbone"

    def __init__(self, config: PreTrainedConfig) -> None:
        super().__init__(config)
        self.backbone = AutoModel.from_config(config)
        self.score = torch.nn.Linear(config.hidden_size, 1)
        self.post_init()

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.backbone.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs: object) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return SequenceClassifierOutput(logits=self.score(pooled))


def load_reward_model(path: str, pooling: str | None = None,
                      freeze_layers: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model with a scalar head, and its tokenizer; a head of another size is an error.

    ``pooling`` (``default`` or ``mean``, see :class:`MeanPoolingRewardModel`) applies when ``path``
    is a backbone; a trained reward model is read with the pooling it was saved with (``None``), and
    asking it for another one is an error rather than a silently fresh head.
    """
    try:
        tokenizer = load_tokenizer(path, require_chat_template=False)
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load a reward model from {path!r}: {err}") from err
    saved = getattr(config, "reward_pooling", None)
    if saved is not None and pooling is not None and pooling != saved:
        raise UserError(f"{path} is a reward model trained with reward_model.pooling={saved}, "
                        f"not {pooling}: drop the override or start from its backbone")
    pooling = saved or pooling or "default"
    # A base model gets a fresh scalar head; an existing classification head must already be scalar.
    if any(a.endswith("ForSequenceClassification") for a in config.architectures or []) and config.num_labels != 1:
        raise UserError(f"{path}: the reward model's head has {config.num_labels} outputs, not one scalar")
    try:
        if pooling == "mean":
            config.reward_pooling, config.num_labels = "mean", 1
            model = MeanPoolingRewardModel.from_pretrained(path, config=config, dtype=torch.float32)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load a reward model from {path!r}: {err}") from err
    model.config.pad_token_id = tokenizer.pad_token_id
    if freeze_layers:
        freeze_lower_layers(model, freeze_layers)
    return model, tokenizer


def freeze_lower_layers(model: PreTrainedModel, n_layers: int) -> None:
    """Stop training the input embeddings and the lowest ``n_layers`` transformer blocks.

    Why: on a thousand-odd pairs the pretrained lower layers need little change, and their backward
    pass is a large part of a CPU step. The blocks are the backbone's one ``ModuleList`` holding
    ``config.num_hidden_layers`` modules (BERT's ``encoder.layer``, Llama's ``layers``, GPT-2's ``h``).
    """
    base = model.base_model
    n_total = model.config.num_hidden_layers
    blocks = next((m for m in base.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n_total), None)
    if blocks is None or not 0 <= n_layers <= n_total:
        raise UserError(f"reward_model.freeze_layers={n_layers}: the model has "
                        f"{n_total if blocks is not None else 'no recognisable'} transformer blocks")
    frozen = [base.get_input_embeddings(), getattr(base, "embeddings", None), *blocks[:n_layers]]
    for module in frozen:
        if module is not None:
            module.requires_grad_(False)


def reward_model_path(cfg: Config) -> str:
    """Where the reward model starts: ``reward_model.name_or_path``, or for ``tiny`` the run's SFT policy
    (an untrained tiny backbone when there is none)."""
    name = require(cfg.reward_model.name_or_path, "reward_model.name_or_path",
                   "reward_model=hf needs reward_model.name_or_path=HUB_NAME_OR_FOLDER")
    if name == "tiny":
        sft_model = Path(cfg.reward.sft_path)
        if cfg.reward.init_from_sft and (sft_model / "config.json").exists():
            return str(sft_model)
        log.warning("no SFT policy at %s: the tiny reward model starts from an untrained backbone", sft_model)
        return resolve_policy_path(cfg.policy, cfg.data.world_seed, cfg.seed)
    return resolve_reward_backbone(name)
